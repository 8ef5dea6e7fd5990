"""Where a cold build spends its time: stage by stage, in a fresh interpreter each time.

    python bench/cold_stages.py [--entries 5000] [--repeat 5]

Builds a site, then `repeat` times: removes all state and runs `newsletter run` in a child
interpreter whose pipeline functions are wrapped with clocks. Prints the median of each stage
in ms of wall time and of this process's CPU (time.process_time: the fork that reads half the
entries is not in it, so the two differ for reading). Stages nest.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from cold import reset
from generate import make_site
from measure import child_stages, run_cli, wait_for_quiet_disk

CHILD = r"""
import functools, json, sys, time
wall0, cpu0 = time.perf_counter(), time.process_time()
times = {}

def clocked(module, name):
    real = getattr(module, name)
    @functools.wraps(real)
    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return real(*args, **kwargs)
        finally:
            key = f"{module.__name__.rsplit('.', 1)[-1]}.{name}"
            w, c = times.get(key, (0.0, 0.0))
            times[key] = (w + time.perf_counter() - wall, c + time.process_time() - cpu)
    setattr(module, name, wrapper)

import pipeline.__main__  # the command's own start: its GC thresholds, then the CLI
from pipeline.cli.main import cli  # not main(): it leaves by os._exit once done
import pipeline.run as run
times["imports: interpreter to the CLI and run.py"] = (time.perf_counter() - wall0,
                                                      time.process_time() - cpu0)
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
sys.argv = ["newsletter", "run", "--site", sys.argv[1], "--quiet"]
try:
    cli(standalone_mode=True)
except SystemExit:
    pass
times["total"] = (time.perf_counter() - wall0, time.process_time() - cpu0)
print(json.dumps(times))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runs: list[dict[str, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-cold-stages-") as tmp:
        site = make_site(Path(tmp), args.entries)
        run_cli("run", "--site", str(site), "--quiet")  # warm the OS file cache and bytecode
        for _ in range(args.repeat):
            reset(site)
            wait_for_quiet_disk()
            runs.append(child_stages(CHILD, site))  # type: ignore[arg-type]
    print(f"{'stage':48s} {'wall ms':>8s} {'CPU ms':>8s}")
    for stage in runs[0]:
        wall = statistics.median(r.get(stage, (0, 0))[0] * 1000 for r in runs)
        cpu = statistics.median(r.get(stage, (0, 0))[1] * 1000 for r in runs)
        print(f"{stage:48s} {wall:8.1f} {cpu:8.1f}")


if __name__ == "__main__":
    main()
