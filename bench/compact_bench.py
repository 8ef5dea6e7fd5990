"""The compact outbox (`[outbox] mode = "compact"`): writing it for a large list, and sending
from it against sending the same messages from .eml files.

    .venv/bin/python bench/compact_bench.py                      # both parts
    .venv/bin/python bench/compact_bench.py --subscribers 1000000 --runs 3 --skip-send
    .venv/bin/python bench/compact_bench.py --skip-write --messages 10000 --runs 5
    .venv/bin/python bench/compact_bench.py --send-all 1000000   # one whole send of 1,000,000

1. Writing: one 10-entry digest to N subscribers (default 1,000,000) through write_outbox in
   compact mode, as `newsletter run` does (the list streamed from the ledger, renditions by
   segment, the ledger's message rows), each run in a fresh process from the same ledger
   snapshot: wall time of the fan-out, its peak memory (VmHWM), the store's size on disk and
   what the ledger grew by. Targets: ≤ 30 s, ≤ 1 GB, ≤ 150 MB.
2. Sending: the same site's messages (M subscribers, default 10,000) sent to send_bench.py's
   loopback sink from .eml files (Maildir) and from the compact store, runs alternated so that
   both share the machine's noise. Target: compact ≥ 0.9× Maildir.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))
os.environ.setdefault("NEWSLETTER_SECRET", "bench-secret-0123456789-0123456789")

COMPACT = '\n[outbox]\nmode = "compact"\n'


def disk_use(folder: Path) -> int:
    """Bytes allocated on disk under a folder (what du counts)."""
    return sum(os.lstat(os.path.join(d, f)).st_blocks * 512
               for d, _, files in os.walk(folder) for f in files)


def write_part(subscribers: int, runs: int, where: str | None) -> None:
    from fanout import build_site, restore

    with tempfile.TemporaryDirectory(prefix="bench-compact-", dir=where) as tmp:
        began = time.perf_counter()
        site = build_site(Path(tmp), subscribers)
        print(f"site with {subscribers:,} subscribers built in "
              f"{time.perf_counter() - began:.0f} s", flush=True)
        with (site / "newsletter.toml").open("a") as f:
            f.write(COMPACT)
        ledger = site / ".newsletter" / "state.sqlite3"
        code = ("import sys, time; sys.path.insert(0, 'bench'); from fanout import fan_out; "
                "from pathlib import Path; t = time.perf_counter(); "
                "n = fan_out(Path(sys.argv[1])); "
                "t = time.perf_counter() - t; "
                "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM')); "
                "print(n, t, int(hwm.split()[1]))")
        walls, peaks, sizes, grown = [], [], [], []
        for _ in range(runs):
            restore(site, "listed")
            shutil.rmtree(site / "outbox", ignore_errors=True)
            before = ledger.stat().st_size
            os.sync()
            done = subprocess.run([sys.executable, "-c", code, str(site)], cwd=BENCH.parent,
                                  check=True, capture_output=True, text=True)
            written, wall, peak = done.stdout.split()
            assert int(written) == subscribers, done.stdout
            walls.append(float(wall))
            peaks.append(int(peak) / 1024)
            sizes.append(disk_use(site / "outbox"))
            wal = ledger.with_name("state.sqlite3-wal")
            grown.append(ledger.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
                         - before)
            print(f"  run: {float(wall):.1f} s, peak {int(peak) / 1024:.0f} MB, store "
                  f"{sizes[-1] / 1e6:.0f} MB, ledger +{grown[-1] / 1e6:.0f} MB", flush=True)
    print(f"1. compact outbox, {subscribers:,} subscribers: written in median "
          f"{statistics.median(walls):.1f} s (min {min(walls):.1f}, max {max(walls):.1f}); "
          "target ≤ 30 s")
    print(f"   store on disk {statistics.median(sizes) / 1e6:,.0f} MB (+ ledger rows "
          f"{statistics.median(grown) / 1e6:,.0f} MB, which the Maildir mode writes too); "
          "target ≤ 1 GB")
    print(f"   peak memory {statistics.median(peaks):.0f} MB (max {max(peaks):.0f}); "
          "target ≤ 150 MB", flush=True)


def build_send_site(root: Path, name: str, count: int, port: int, mode: str) -> Path:
    from send_bench import REPO

    from pipeline.run import run

    site = root / name
    shutil.copytree(REPO / "articles", site / "articles")
    toml = (REPO / "newsletter.toml").read_text()
    toml += f'\n[smtp]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\n'
    if mode == "compact":
        toml += COMPACT
    (site / "newsletter.toml").write_text(toml)
    rows = [f"reader{n:05d}@example.org,Reader {n},,active" for n in range(count)]
    (site / "subscribers.csv").write_text("email,name,categories,status\n" + "\n".join(rows))
    run(site)
    state = site / ".newsletter"
    shutil.copy(state / "state.sqlite3", state / "pristine.sqlite3")
    return site


def reset_compact(site: Path) -> None:
    from send_bench import reset

    for journal in (site / "outbox" / "compact").glob("*/journal"):
        journal.unlink()
    reset(site)


def send_part(messages: int, runs: int, tmpfs: bool) -> None:
    from send_bench import figures, ours, quiet_disk, reset, start_server

    root = Path(tempfile.mkdtemp(prefix="bench-compact-send-",
                                 dir="/dev/shm" if tmpfs else None))
    sink, port = start_server("sink")
    try:
        eml = build_send_site(root, "maildir", messages, port, "maildir")
        store = build_send_site(root, "compact", messages, port, "compact")
        print(f"{messages:,} messages each way; .eml files "
              f"{disk_use(eml / 'outbox') / 1e6:.0f} MB, compact store "
              f"{disk_use(store / 'outbox') / 1e6:.1f} MB", flush=True)
        times: dict[str, list[float]] = {"maildir": [], "compact": []}
        for _ in range(runs):
            reset(eml)
            quiet_disk()
            times["maildir"].append(ours(eml))
            reset_compact(store)
            quiet_disk()
            times["compact"].append(ours(store))
        a = figures("send from .eml files (sink)", messages, times["maildir"])
        b = figures("send from the compact store (sink)", messages, times["compact"])
        print(f"2. compact / Maildir: {b / a:.2f}x; target ≥ 0.9x", flush=True)
    finally:
        sink.kill()
        shutil.rmtree(root, ignore_errors=True)


SEND_CHILD = """
import os, resource, sys, time
sys.path.insert(0, "bench")
from pathlib import Path
from pipeline.delivery.send import send
began = time.perf_counter()
report = send(Path(sys.argv[1]))
wall = time.perf_counter() - began
use = resource.getrusage(resource.RUSAGE_SELF)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(report.sent, report.due, report.failed, wall, use.ru_utime + use.ru_stime,
      int(hwm.split()[1]))
"""


def million_part(subscribers: int, where: str | None) -> None:
    """A whole `send` of a compact digest to N subscribers (default 1,000,000) to the loopback
    sink, in a child process of its own: wall time, rate, CPU and peak memory (VmHWM)."""
    from fanout import build_site, fan_out
    from send_bench import start_server

    sink, port = start_server("sink")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-compact-million-", dir=where) as tmp:
            began = time.perf_counter()
            site = build_site(Path(tmp), subscribers)
            with (site / "newsletter.toml").open("a") as f:
                f.write(COMPACT + f'\n[smtp]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\n')
            written = fan_out(site)
            print(f"site with {subscribers:,} subscribers and its compact outbox ({written:,} "
                  f"messages) built in {time.perf_counter() - began:.0f} s", flush=True)
            os.sync()
            done = subprocess.run([sys.executable, "-c", SEND_CHILD, str(site)],
                                  cwd=BENCH.parent, check=True, capture_output=True, text=True)
            sent, due, failed, wall, cpu, peak = done.stdout.split()
            assert int(sent) == int(due) == subscribers and not int(failed), done.stdout
            print(f"3. a whole send of {subscribers:,} compact messages to the sink: "
                  f"{float(wall):.0f} s, {subscribers / float(wall):,.0f} msg/s; its CPU "
                  f"{float(cpu):.0f} s ({float(cpu) / subscribers * 1e6:.0f} µs a message); "
                  f"peak memory {int(peak) / 1024:.0f} MB", flush=True)
    finally:
        sink.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the writing part's site goes")
    parser.add_argument("--tmpfs", action="store_true", help="the sending part in /dev/shm")
    parser.add_argument("--skip-write", action="store_true")
    parser.add_argument("--skip-send", action="store_true")
    parser.add_argument("--send-all", type=int, default=0, metavar="N",
                        help="only: one whole send of a compact digest to N subscribers")
    args = parser.parse_args()
    if args.send_all:
        return million_part(args.send_all, args.dir)
    if not args.skip_write:
        write_part(args.subscribers, args.runs, args.dir)
    if not args.skip_send:
        send_part(args.messages, args.runs, args.tmpfs)


if __name__ == "__main__":
    main()
