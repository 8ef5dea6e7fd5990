"""Where a cold build spends its time: stage by stage, in a fresh interpreter each time.

    python bench/cold_stages.py [--entries 5000] [--repeat 5]

Builds a site, then `repeat` times: removes all state and runs `newsletter run` in a child
interpreter whose pipeline functions are wrapped with clocks. Prints the median of each stage
in ms of wall time and of this process's CPU (time.process_time: the fork that reads half the
entries is not in it, so the two differ for reading). Stages nest.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from cold import reset
from measure import stage_runs, wait_for_quiet_disk

CLOCKS = r"""
import pipeline.entries.collect as collect
import pipeline.state.ledger as ledger
import pipeline.subscribers.manage as manage
for name in ("scan", "collect_articles", "_publish", "_refresh_feeds", "_write_web_copy",
             "_refresh_archive"):
    clocked(run, name)
clocked(manage, "sync_site_csv")
for name in ("_read_all", "_found"):
    clocked(collect, name)
clocked(ledger.Ledger, "store_entries")
import pipeline.publishing.feeds as feeds
import pipeline.publishing.digest as digest
import pipeline.mail.outbox as outbox
clocked(feeds, "render_feeds")
clocked(digest, "render_digest")
clocked(outbox, "write_outbox")
"""


def main() -> None:
    def fresh(site: Path, _: int) -> None:
        reset(site)
        wait_for_quiet_disk()

    runs = stage_runs(__doc__, CLOCKS, fresh)
    print(f"{'stage':48s} {'wall ms':>8s} {'CPU ms':>8s}")
    for stage in runs[0]:
        wall = statistics.median(r.get(stage, (0, 0))[0] * 1000 for r in runs)
        cpu = statistics.median(r.get(stage, (0, 0))[1] * 1000 for r in runs)
        print(f"{stage:48s} {wall:8.1f} {cpu:8.1f}")


if __name__ == "__main__":
    main()
