"""Full build, cold: 5,000 entries, all feeds plus one digest, no state.

    python bench/cold.py [--entries 5000] [--repeat 5] [--pelican-repeat 3]

Target: ≤ 0.6 s wall, and ≥ 25× faster than Pelican writing the feeds alone from the same
entries (bench/pelican_site.py; needs `pip install -e '.[bench]'`), measured in the same run.
Also compared with reading every entry on one core (`taskset -c 0`: the run sees one core
and reads without its process pool), the comparison that decides whether the pool pays.
Runs alternate (ours, ours on one core, Pelican, ours, …) so that a change in the machine's
load lands on all of them; wall time and CPU time (user + system of the child) are reported.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from generate import make_site
from measure import ENV, describe, run_cli, wait_for_quiet_disk


def reset(site: Path) -> None:
    for name in (".newsletter", "public", "outbox"):
        shutil.rmtree(site / name, ignore_errors=True)


def measured(action: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU of the child processes) of one action, after a quiet disk."""
    wait_for_quiet_disk()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    action()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def pelican(root: Path) -> None:
    shutil.rmtree(root / "output", ignore_errors=True)
    done = subprocess.run([sys.executable, "-m", "pelican", str(root / "content"), "-s",
                           str(root / "pelicanconf.py"), "-o", str(root / "output"), "-q"],
                          cwd=root, env=ENV, capture_output=True, text=True)
    if done.returncode != 0 or not (root / "output" / "feed.xml").exists():
        raise SystemExit(f"pelican failed:\n{done.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pelican-repeat", type=int, default=3)
    args = parser.parse_args()
    with_pelican = args.pelican_repeat > 0 and importlib.util.find_spec("pelican") is not None
    runs: dict[str, list[tuple[float, float]]] = {"ours": [], "one core": [], "pelican": []}
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        site = make_site(Path(tmp) / "site", args.entries)
        run_cli("run", "--site", str(site), "--quiet")  # warm the OS file cache and bytecode
        if with_pelican:
            from pelican_site import make_pelican_site

            peer = make_pelican_site(Path(tmp) / "pelican", args.entries)
            pelican(peer)  # warm it the same way
        for n in range(max(args.repeat, args.pelican_repeat if with_pelican else 0)):
            if n < args.repeat:
                reset(site)
                runs["ours"].append(measured(
                    lambda: run_cli("run", "--site", str(site), "--quiet")))
                reset(site)
                runs["one core"].append(measured(
                    lambda: run_cli("run", "--site", str(site), "--quiet", on_core=0)))
            if with_pelican and n < args.pelican_repeat:
                runs["pelican"].append(measured(lambda: pelican(peer)))
    label = f"cold build, {args.entries} entries"
    for name, title in (("ours", f"{label} (both cores)"), ("one core", f"{label} (one core)"),
                        ("pelican", f"Pelican, feeds only, same {args.entries} entries")):
        if runs[name]:
            print(describe(title, [w for w, _ in runs[name]]) + "; CPU median "
                  f"{statistics.median(c for _, c in runs[name]):.3f} s")
    ours = statistics.median(w for w, _ in runs["ours"])
    print(f"one core / both cores: "
          f"{statistics.median(w for w, _ in runs['one core']) / ours:.2f}x; "
          f"target 0.6 s: {'meets' if ours <= 0.6 else 'MISSES'}")
    if runs["pelican"]:
        ratio = statistics.median(w for w, _ in runs["pelican"]) / ours
        cpu = (statistics.median(c for _, c in runs["pelican"])
               / statistics.median(c for _, c in runs["ours"]))
        print(f"Pelican / ours: {ratio:.1f}x wall, {cpu:.1f}x CPU; target 25x: "
              f"{'meets' if ratio >= 25 else 'MISSES'}")
    else:
        print("Pelican not installed (pip install -e '.[bench]'): no comparison")


if __name__ == "__main__":
    main()
