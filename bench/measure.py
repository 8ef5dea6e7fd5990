"""Timing for the benchmarks: repeated runs, median with min–max, a quiet disk before each."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NEWSLETTER = [sys.executable, "-m", "pipeline"]
# As an operator's cron runs it: with bytecode caches (this workplace sets
# PYTHONDONTWRITEBYTECODE, which would make every run compile the package again).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["NEWSLETTER_SECRET"] = "bench-secret-0123456789-0123456789"


def wait_for_quiet_disk(limit: float = 0.5, timeout: float = 20.0) -> None:
    """Wait until the last 10 s saw under `limit` % of time stalled on I/O (PSI), so one
    benchmark's writes (and the disk's online discard) do not land in the next one's time."""
    path = Path("/proc/pressure/io")
    if not path.exists():
        time.sleep(1)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        some = path.read_text().splitlines()[0]  # some avg10=0.00 avg60=...
        if float(some.split()[1].split("=")[1]) < limit:
            return
        time.sleep(0.5)


def timed(action: Callable[[], object], repeat: int, before: Callable[[], object] | None = None,
          quiet_disk: bool = True) -> list[float]:
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        if quiet_disk:
            wait_for_quiet_disk()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def run_cli(*args: str, on_core: int | None = None) -> None:
    pin = ["taskset", "-c", str(on_core)] if on_core is not None else []
    done = subprocess.run([*pin, *NEWSLETTER, *args], env=ENV, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"newsletter {' '.join(args)} failed:\n{done.stderr}")


def child_stages(child: str, site: Path) -> dict[str, object]:
    """Run `child` (Python source that prints its stage times as JSON on its last line) in a
    fresh interpreter on `site`; what it printed."""
    done = subprocess.run([sys.executable, "-c", child, str(site)], env=ENV, cwd=REPO,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def describe(label: str, times: list[float], unit: str = "s", scale: float = 1.0) -> str:
    values = [t * scale for t in times]
    return (f"{label}: median {statistics.median(values):.3f} {unit} "
            f"(min {min(values):.3f}, max {max(values):.3f}, n={len(values)})")
