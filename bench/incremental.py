"""Incremental: add one entry to a 5,000-entry site that is up to date, and run again.

    python bench/incremental.py [--entries 5000] [--repeat 5]

The run must read one file, rewrite the feeds and build one digest. Compared in the same run
with a no-op run of the same site (nothing added), so the ratio is the cost of one new entry.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from datetime import date
from pathlib import Path

from generate import add_entry, make_site
from measure import describe, run_cli, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-incremental-") as tmp:
        site = make_site(Path(tmp), args.entries)
        run_cli("run", "--site", str(site), "--quiet")
        counter = iter(range(10**6))

        def add() -> None:
            add_entry(site, 90000 + next(counter), date(2026, 11, 2))

        one_more = timed(lambda: run_cli("run", "--site", str(site), "--quiet"), args.repeat,
                         before=add)
        noop = timed(lambda: run_cli("run", "--site", str(site), "--quiet"), args.repeat)
    print(describe(f"one new entry, {args.entries} entries: feeds + one digest", one_more))
    print(describe("no-op run of the same site", noop))
    print(f"one new entry / no-op: {statistics.median(one_more) / statistics.median(noop):.1f}x")


if __name__ == "__main__":
    main()
