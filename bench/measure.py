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


# A stage benchmark's child, around its own clocks: `clocked(module, name)` adds a function's
# (wall, CPU) seconds to times["module.name"] (stages nest); `since_start()` is (wall, CPU)
# since the child began. The command starts as `newsletter` does (its GC thresholds), then
# `newsletter run --site SITE --quiet` goes through the CLI (not main(), which leaves by
# os._exit) and the times are printed as JSON, "total" last.
STAGE_CLOCKS = r"""
import functools, json, sys, time
wall0, cpu0 = time.perf_counter(), time.process_time()
times = {}

def since_start():
    return time.perf_counter() - wall0, time.process_time() - cpu0

def clocked(module, name):
    real = getattr(module, name)
    @functools.wraps(real)
    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return real(*args, **kwargs)
        finally:
            key = f"{module.__name__.rsplit('.', 1)[-1]}.{name}"
            w, c = times.get(key, (0.0, 0.0))
            times[key] = (w + time.perf_counter() - wall, c + time.process_time() - cpu)
    setattr(module, name, wrapper)

import pipeline.__main__
from pipeline.cli.main import cli
import pipeline.run as run
times["imports: interpreter to the CLI and run.py"] = since_start()
"""
RUN_AND_REPORT = r"""
sys.argv = ["newsletter", "run", "--site", sys.argv[1], "--quiet"]
try:
    cli(standalone_mode=True)
except SystemExit:
    pass
times["total"] = since_start()
print(json.dumps(times))
"""


def child_stages(clocks: str, site: Path) -> dict[str, list[float]]:
    """`newsletter run` on `site` in a fresh interpreter, with `clocks` (Python source using
    STAGE_CLOCKS' names) run before it; each stage's [wall, CPU] seconds."""
    child = STAGE_CLOCKS + clocks + RUN_AND_REPORT
    done = subprocess.run([sys.executable, "-c", child, str(site)], env=ENV, cwd=REPO,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def stage_runs(description: str, clocks: str, before_each: Callable[[Path, int], object]
               ) -> list[dict[str, list[float]]]:
    """A stage benchmark's runs (`--entries`, `--repeat` from the command line): a generated
    site, one `newsletter run` to warm the OS file cache and bytecode, then `repeat` times
    `before_each(site, n)` and child_stages."""
    import argparse
    import tempfile

    from generate import make_site

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        site = make_site(Path(tmp), args.entries)
        run_cli("run", "--site", str(site), "--quiet")
        for n in range(args.repeat):
            before_each(site, n)
            runs.append(child_stages(clocks, site))
    return runs


def describe(label: str, times: list[float], unit: str = "s", scale: float = 1.0) -> str:
    values = [t * scale for t in times]
    return (f"{label}: median {statistics.median(values):.3f} {unit} "
            f"(min {min(values):.3f}, max {max(values):.3f}, n={len(values)})")
