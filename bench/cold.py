"""Full build, cold: 5,000 entries, all feeds plus one digest, no state.

    python bench/cold.py [--entries 5000] [--repeat 5]

Target: ≤ 2 s wall. Compared in the same run with reading every entry on one core
(`taskset -c 0`: the run sees one core and reads without its process pool), the comparison
that decides whether the pool pays.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from generate import make_site
from measure import describe, run_cli, timed


def reset(site: Path) -> None:
    for name in (".newsletter", "public", "outbox"):
        shutil.rmtree(site / name, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        site = make_site(Path(tmp), args.entries)
        run_cli("run", "--site", str(site), "--quiet")  # warm the OS file cache and bytecode
        cold = timed(lambda: run_cli("run", "--site", str(site), "--quiet"), args.repeat,
                     before=lambda: reset(site))
        one_core = timed(lambda: run_cli("run", "--site", str(site), "--quiet", on_core=0),
                         args.repeat, before=lambda: reset(site))
    print(describe(f"cold build, {args.entries} entries (both cores)", cold))
    print(describe(f"cold build, {args.entries} entries (one core)", one_core))
    print(f"one core / both cores: {statistics.median(one_core) / statistics.median(cold):.2f}x; "
          f"target 2 s: {'meets' if statistics.median(cold) <= 2 else 'MISSES'}")


if __name__ == "__main__":
    main()
