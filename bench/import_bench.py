"""Importing a large subscribers CSV (`newsletter subscribers import FILE`), issue 19:
1,000,000 rows in ≤ 15 s with peak memory ≤ 150 MB, in batches that each hold the write lock
≤ 200 ms.

    .venv/bin/python bench/import_bench.py                 # 1,000,000 rows, 3 runs
    .venv/bin/python bench/import_bench.py --rows 200000 --runs 1

The file: numbered addresses, a name, categories, 1 % unsubscribed and 0.2 % bounced, and 0.1 %
of the addresses listed twice (once active, once unsubscribed further down: the opt-out must
win). Each run imports it into a fresh site (in a temp folder) in a child process: what the command
does (`import_file`), without click; the child's wall time, CPU time and peak RSS (getrusage of
the children) are reported, with the longest time one batch held the write lock (measured by
the import, BEGIN to after COMMIT). Meanwhile a probe in another process takes the ledger's
write lock (BEGIN IMMEDIATE; COMMIT on its own connection, polling every millisecond as the
ledger's writers do) every 20 ms and records how long it waited: what a concurrent unsubscribe
would wait (a batch, or two when it misses the pause between them on a busy machine).
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import CONFIG
from measure import ENV, NEWSLETTER, wait_for_quiet_disk

# What `newsletter subscribers import FILE` does, without click, printing its report and the
# longest time one batch held the write lock (measured inside, from BEGIN to after COMMIT).
IMPORT = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from pipeline.core.config import load_config
from pipeline.state.ledger import open_ledger
from pipeline.subscribers.manage import import_file
config = load_config(Path(sys.argv[1]))
with open_ledger(config.state_dir) as ledger:
    report, problems = import_file(config, ledger, Path(sys.argv[2]), datetime.now(UTC))
added = report.added if isinstance(report.added, int) else len(report.added)  # older versions
print(getattr(report, "longest_batch", 0.0), f"{added} added, {report.status_changed} taken "
      f"off, {report.unchanged} unchanged, {len(problems)} problems")
"""


def write_csv(path: Path, rows: int) -> None:
    with path.open("w") as out:
        out.write("email,name,categories,status\n")
        for n in range(rows):
            status = "unsubscribed" if n % 100 == 7 else "bounced" if n % 500 == 3 else "active"
            out.write(f"Reader{n:07d}@Example.org,Reader {n},heart;sleep,{status}\n")
        for n in range(0, rows, 1000):  # listed again further down, now opted out
            out.write(f"reader{n:07d}@example.org,,,unsubscribed\n")


def child_usage(before: resource.struct_rusage) -> tuple[float, float]:
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, after.ru_maxrss / 1024  # MB (peak of any child so far)


class LockProbe(threading.Thread):
    def __init__(self, ledger: Path) -> None:
        super().__init__(daemon=True)
        self.ledger, self.waits, self.stop = ledger, [], threading.Event()

    def run(self) -> None:
        while not self.ledger.exists() and not self.stop.is_set():
            time.sleep(0.01)
        # No busy handler: SQLite's backs off to 100 ms sleeps and keeps missing the short gap
        # between two batches; polling every millisecond (as the ledger's writers do) does not.
        db = sqlite3.connect(self.ledger, timeout=0, isolation_level=None)
        while not self.stop.is_set():
            started = time.perf_counter()
            while not self.stop.is_set():
                try:
                    db.execute("BEGIN IMMEDIATE")
                    db.execute("COMMIT")
                    break
                except sqlite3.OperationalError:
                    time.sleep(0.001)
            self.waits.append(time.perf_counter() - started)
            time.sleep(0.02)
        db.close()


def one_import(root: Path, big: Path, run: int
               ) -> tuple[float, float, float, float, float, str]:
    """Fresh site; (wall, cpu, peak MB, longest lock wait, longest batch, summary line)."""
    site = root / f"site{run}"
    (site / "articles").mkdir(parents=True)
    (site / "newsletter.toml").write_text(CONFIG.format(max_articles=10))
    subprocess.run([*NEWSLETTER, "status", "--site", str(site)], env=ENV, capture_output=True)
    probe = LockProbe(site / ".newsletter" / "state.sqlite3")
    wait_for_quiet_disk()
    probe.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", IMPORT, str(site), str(big)], env=ENV,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    probe.stop.set()
    probe.join()
    cpu, peak = child_usage(before)
    if done.returncode:
        raise SystemExit(f"import failed:\n{done.stderr}")
    batch, summary = done.stdout.split(None, 1)
    return wall, cpu, peak, max(probe.waits, default=0.0), float(batch), summary.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
        root = Path(tmp)
        big = root / "big.csv"
        write_csv(big, args.rows)
        print(f"file: {args.rows:,} rows (+{len(range(0, args.rows, 1000)):,} repeated), "
              f"{big.stat().st_size / 1e6:.0f} MB")
        results = []
        for run in range(args.runs):
            # Peak RSS of children is a running maximum: measure each run in a fresh child.
            out = subprocess.run([sys.executable, __file__, "--one", str(root), str(big),
                                  str(run)], env=ENV, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(out.stderr)
            wall, cpu, peak, lock, batch = (float(x) for x in out.stdout.split()[:5])
            summary = out.stdout.split(None, 5)[5].strip()
            results.append((wall, cpu, peak, lock, batch))
            print(f"run {run + 1}: {wall:.1f} s wall, {cpu:.1f} s CPU, peak {peak:.0f} MB, "
                  f"longest batch {batch * 1000:.0f} ms, longest wait of a writer beside it "
                  f"{lock * 1000:.0f} ms; {summary}")
        for i, (label, unit, scale) in enumerate((("wall", "s", 1), ("CPU", "s", 1),
                                                  ("peak RSS", "MB", 1),
                                                  ("longest writer wait", "ms", 1000),
                                                  ("longest batch", "ms", 1000))):
            values = [r[i] * scale for r in results]
            print(f"{label}: median {statistics.median(values):.1f} {unit} "
                  f"(min {min(values):.1f}, max {max(values):.1f}, n={len(values)})")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--one":
        print(*one_import(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])))
    else:
        main()
