"""Where one new entry's run spends its CPU: stage by stage, in a fresh interpreter each time.

    python bench/incremental_stages.py [--entries 5000] [--repeat 5]

Builds a site, then `repeat` times: adds one entry and runs `newsletter run` in a child
interpreter whose pipeline functions are wrapped with CPU clocks (time.process_time, which
other work on the machine moves far less than wall time). Prints the median of each stage.
Stages nest (`_publish` holds feeds, digest, web copy, archive and outbox). The interpreter's
start (~10 ms) is not in the total; its teardown, which the command skips, is not either.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from datetime import date
from pathlib import Path

from generate import add_entry, make_site
from measure import child_stages, run_cli

CHILD = r"""
import functools, json, sys, time
start = time.process_time()
times = {}

def clocked(module, name):
    real = getattr(module, name)
    @functools.wraps(real)
    def wrapper(*args, **kwargs):
        began = time.process_time()
        try:
            return real(*args, **kwargs)
        finally:
            key = f"{module.__name__.rsplit('.', 1)[-1]}.{name}"
            times[key] = times.get(key, 0.0) + time.process_time() - began
    setattr(module, name, wrapper)

import pipeline.__main__  # the command's own start: its GC thresholds, then the CLI
from pipeline.cli.main import cli  # not main(): it leaves by os._exit once done
import pipeline.run as run
times["imports: interpreter to the CLI and run.py"] = time.process_time() - start
for name in ("scan", "collect_articles", "_publish", "_refresh_feeds", "_write_web_copy",
             "_refresh_archive"):
    clocked(run, name)
import pipeline.entries.collect as collect
clocked(collect, "_read_all")  # inside collect_articles: the entries not recalled (one here)
import pipeline.publishing.digest as digest
import pipeline.mail.outbox as outbox
times["imports: jinja2 and the mail package (for the stages below)"] = (
    time.process_time() - start - sum(times.values()))
clocked(digest, "render_digest")
clocked(digest, "inline_css")
clocked(outbox, "write_outbox")
sys.argv = ["newsletter", "run", "--site", sys.argv[1], "--quiet"]
try:
    cli(standalone_mode=True)
except SystemExit:
    pass
times["total (CPU, without the interpreter's own start)"] = time.process_time() - start
print(json.dumps(times))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        site = make_site(Path(tmp), args.entries)
        run_cli("run", "--site", str(site), "--quiet")
        for n in range(args.repeat):
            add_entry(site, 90000 + n, date(2026, 11, 2))
            runs.append(child_stages(CHILD, site))  # type: ignore[arg-type]
    for stage in runs[0]:
        values = [r.get(stage, 0.0) * 1000 for r in runs]
        print(f"{stage:60s} {statistics.median(values):7.1f} ms CPU "
              f"(min {min(values):.1f}, max {max(values):.1f})")


if __name__ == "__main__":
    main()
