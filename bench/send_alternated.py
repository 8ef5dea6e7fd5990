"""`send` of two checkouts alternated run by run, with the sink's ceiling beside them: for a
difference smaller than the machine's drift between runs. Each checkout runs in a process of
its own with its own site and sink (bench/send_bench.py's), and gets one send per round; the
CPU a message is given per thread (the sending thread, the main thread that reads the queue
and records outcomes) and for its sink.

    .venv/bin/python bench/send_alternated.py OTHER_CHECKOUT                 # 10,000, 8 rounds
    .venv/bin/python bench/send_alternated.py /work/main --messages 5000 --rounds 6
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(checkout: Path, count: int) -> None:
    """One checkout's site and sink; a line of figures for each command read from stdin."""
    import send_bench as bench

    sys.path.insert(0, str(checkout))  # after send_bench put this repository first
    for name in [m for m in sys.modules if m == "pipeline" or m.startswith("pipeline.")]:
        del sys.modules[name]
    from pipeline.delivery import pool

    root = Path(tempfile.mkdtemp(prefix="send-alternated-"))
    sink, port = bench.start_server("sink")
    try:
        site = bench.build_site(root, count, port)
        messages = bench.prepared(site)
        worker = [0.0]
        work_in_turn = pool.Pool._work_in_turn

        def timed_work(self: pool.Pool, *args: int) -> None:
            began = time.thread_time()
            try:
                work_in_turn(self, *args)
            finally:
                worker[0] += time.thread_time() - began

        pool.Pool._work_in_turn = timed_work  # type: ignore[method-assign]
        print("ready", flush=True)
        for command in sys.stdin:
            bench.reset(site)
            bench.quiet_disk()
            worker[0] = 0.0
            mine, theirs = bench.own_cpu(), bench.cpu_of(sink.pid)
            main_thread, began = time.thread_time(), time.perf_counter()
            if command.strip() == "ceiling":
                bench.replay(messages, port, 4)
            else:
                bench.ours(site)
            took = time.perf_counter() - began
            each = 1e6 / count
            print(json.dumps({"rate": count / took,
                              "main": (time.thread_time() - main_thread) * each,
                              "worker": worker[0] * each,
                              "process": (bench.own_cpu() - mine) * each,
                              "sink": (bench.cpu_of(sink.pid) - theirs) * each}), flush=True)
    finally:
        sink.terminate()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", type=Path, help="the other checkout (e.g. main's)")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child.resolve(), args.messages)
    checkouts = [HERE.parent, args.other.resolve()]
    children = [subprocess.Popen(
        [sys.executable, __file__, str(args.other), "--child", str(checkout),
         "--messages", str(args.messages)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True) for checkout in checkouts]
    for process in children:
        while process.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
            pass

    def ask(process: subprocess.Popen[str], command: str) -> dict[str, float]:
        process.stdin.write(command + "\n")  # type: ignore[union-attr]
        process.stdin.flush()  # type: ignore[union-attr]
        return json.loads(process.stdout.readline())  # type: ignore[union-attr]

    ceiling: list[dict[str, float]] = []
    sends: list[list[dict[str, float]]] = [[] for _ in checkouts]
    for _ in range(args.rounds):
        ceiling.append(ask(children[0], "ceiling"))
        for runs, process in zip(sends, children, strict=True):
            runs.append(ask(process, "send"))
    for process in children:
        process.stdin.close()  # type: ignore[union-attr]
        process.wait()
    top = statistics.median(c["rate"] for c in ceiling)
    print(f"{args.messages:,} messages, {args.rounds} rounds; ceiling median {top:,.0f} msg/s "
          f"(replay client {statistics.median(c['process'] for c in ceiling):.0f} µs, sink "
          f"{statistics.median(c['sink'] for c in ceiling):.0f} µs a message)")
    for checkout, runs in zip(checkouts, sends, strict=True):
        def median(key: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[key] for r in runs)
        shares = sorted(r["rate"] / c["rate"] for r, c in zip(runs, ceiling, strict=True))
        print(f"{checkout!s:<28} {median('rate'):7,.0f} msg/s, {median('rate') / top:.2f}x "
              f"the ceiling (rounds {shares[0]:.2f}–{shares[-1]:.2f}); CPU a message: sending "
              f"thread {median('worker'):.0f} µs, main {median('main'):.0f}, process "
              f"{median('process'):.0f}, sink {median('sink'):.0f}")


if __name__ == "__main__":
    main()
