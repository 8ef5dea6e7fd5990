"""Where one new entry's run spends its CPU: stage by stage, in a fresh interpreter each time.

    python bench/incremental_stages.py [--entries 5000] [--repeat 5]

Builds a site, then `repeat` times: adds one entry and runs `newsletter run` in a child
interpreter whose pipeline functions are wrapped with CPU clocks (time.process_time, which
other work on the machine moves far less than wall time). Prints the median of each stage.
Stages nest (`_publish` holds feeds, digest, web copy, archive and outbox). The interpreter's
start (~10 ms) is not in the total; its teardown, which the command skips, is not either.
"""

from __future__ import annotations

import statistics
from datetime import date

from generate import add_entry
from measure import stage_runs

CLOCKS = r"""
for name in ("scan", "collect_articles", "_publish", "_refresh_feeds", "_write_web_copy",
             "_refresh_archive"):
    clocked(run, name)
import pipeline.entries.collect as collect
clocked(collect, "_read_all")  # inside collect_articles: the entries not recalled (one here)
import pipeline.publishing.digest as digest
import pipeline.mail.outbox as outbox
wall, cpu = since_start()
times["imports: jinja2 and the mail package (for the stages below)"] = (
    wall - sum(w for w, _ in times.values()), cpu - sum(c for _, c in times.values()))
clocked(digest, "render_digest")
clocked(digest, "inline_css")
clocked(outbox, "write_outbox")
"""


def main() -> None:
    runs = stage_runs(__doc__, CLOCKS, lambda site, n: add_entry(site, 90000 + n,
                                                                   date(2026, 11, 2)))
    for stage in runs[0]:
        values = [r.get(stage, (0.0, 0.0))[1] * 1000 for r in runs]  # CPU
        print(f"{stage:60s} {statistics.median(values):7.1f} ms CPU "
              f"(min {min(values):.1f}, max {max(values):.1f})")


if __name__ == "__main__":
    main()
