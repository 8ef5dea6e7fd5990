"""Before/after on a loaded machine: alternate runs of two checkouts on the same sites.

    git archive main | tar -x -C /tmp/before          # the code to compare against
    python bench/before_after.py /tmp/before [--entries 5000] [--repeat 5]

Each round runs, for each checkout in turn: a cold build (no state), then one new entry on
the built site. Alternating spreads the other load on the machine over both; CPU time (user +
system of the run) is reported beside wall time, since it moves far less with that load.
The sites are separate copies, so neither checkout reads the other's ledger.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from cold import measured, reset
from generate import add_entry, make_site
from measure import ENV, REPO


def run_with(checkout: Path, site: Path) -> None:
    env = dict(ENV, PYTHONPATH=str(checkout))
    done = subprocess.run([sys.executable, "-m", "pipeline", "run", "--site", str(site),
                           "--quiet"], cwd=checkout, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{checkout}: {done.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("before", type=Path)
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    checkouts = {"before": args.before.resolve(), "after": REPO}
    results: dict[str, dict[str, list[tuple[float, float]]]] = {
        name: {"cold": [], "one new entry": []} for name in checkouts}
    with tempfile.TemporaryDirectory(prefix="bench-before-after-") as tmp:
        source = make_site(Path(tmp) / "source", args.entries)
        sites = {}
        for name in checkouts:
            sites[name] = Path(tmp) / name
            shutil.copytree(source, sites[name])
            run_with(checkouts[name], sites[name])  # warm caches and bytecode
        for n in range(args.repeat):
            for name, checkout in checkouts.items():
                site = sites[name]
                reset(site)
                results[name]["cold"].append(measured(lambda: run_with(checkout, site)))  # noqa: B023
                add_entry(site, 90000 + n, date(2026, 11, 2))
                results[name]["one new entry"].append(
                    measured(lambda: run_with(checkout, site)))  # noqa: B023
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    for case in ("cold", "one new entry"):
        walls = {name: statistics.median(w for w, _ in results[name][case]) for name in checkouts}
        cpus = {name: statistics.median(c for _, c in results[name][case]) for name in checkouts}
        print(f"{case}, {args.entries} entries (median of {args.repeat}): "
              f"before {walls['before']:.3f} s wall / {cpus['before']:.3f} s CPU; "
              f"after {walls['after']:.3f} s wall / {cpus['after']:.3f} s CPU; "
              f"after/before {walls['after'] / walls['before']:.2f}x wall, "
              f"{cpus['after'] / cpus['before']:.2f}x CPU")


if __name__ == "__main__":
    main()
