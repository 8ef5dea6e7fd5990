"""No-op cron run: `newsletter run` on a 1,000-entry site where nothing changed.

    python bench/noop.py [--entries 1000] [--repeat 15]

Target: ≤ 0.15 s wall. Compared in the same run with a bare interpreter start and with an
interpreter that only imports click (the CLI library the command is built on), which bounds
what the pipeline itself can reach.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from generate import make_site
from measure import ENV, describe, run_cli, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-noop-") as tmp:
        site = make_site(Path(tmp), args.entries)
        run_cli("run", "--site", str(site), "--quiet")  # the first run does the real work
        bare = timed(lambda: subprocess.run([sys.executable, "-c", "pass"], env=ENV),
                     args.repeat, quiet_disk=False)
        click = timed(lambda: subprocess.run([sys.executable, "-c", "import click"], env=ENV),
                      args.repeat, quiet_disk=False)
        noop = timed(lambda: run_cli("run", "--site", str(site), "--quiet"), args.repeat,
                     quiet_disk=False)
    print(describe("bare interpreter start", bare))
    print(describe("interpreter start + import click", click))
    print(describe(f"no-op run, {args.entries} entries", noop))
    ratio = statistics.median(noop) / statistics.median(bare)
    verdict = "meets" if statistics.median(noop) <= 0.15 else "MISSES"
    print(f"no-op run / bare start: {ratio:.1f}x; target 0.15 s: {verdict}")
    own = statistics.median(noop) - statistics.median(click)
    print(f"the pipeline's own share (no-op run - click import): {own:.3f} s")


if __name__ == "__main__":
    main()
