"""One run at a time per site, with the OS's file lock: it dies with its process, so a run
killed with SIGKILL never leaves a stale lock behind."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.state.connection import private_dir

LOCK_NAME = "run.lock"
SEND_LOCK_NAME = "send.lock"  # sending has its own: a long, rate-limited send never blocks runs


class Locked(Exception):
    """Another run holds the site's lock."""


@contextmanager
def site_lock(state_dir: Path, wait: float = 0.0, name: str = LOCK_NAME) -> Iterator[None]:
    """Hold the site's lock for the block; wait up to `wait` seconds for it, else raise Locked."""
    private_dir(state_dir)
    fd = os.open(state_dir / name, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    what = "send" if name == SEND_LOCK_NAME else "run"
                    holder = _holder(fd)
                    who = f"pid {holder}" if holder else "just starting"
                    raise Locked(f"another {what} ({who}) is working on this site") from None
                time.sleep(0.1)
        # The pid first, then the length: the file never reads empty once a holder wrote it.
        pid = f"{os.getpid()}\n".encode()
        os.pwrite(fd, pid, 0)
        os.ftruncate(fd, len(pid))
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _holder(fd: int, patience: float = 0.5) -> str:
    """The pid the lock's holder wrote; a holder that has just taken the lock writes it a
    moment later, so wait for it a little (not forever)."""
    deadline = time.monotonic() + patience
    while True:
        first = os.pread(fd, 32, 0).decode(errors="replace").split("\n")[0].strip()
        if first.isdigit() or time.monotonic() >= deadline:
            return first if first.isdigit() else ""
        time.sleep(0.02)


def is_locked(state_dir: Path) -> bool:
    """Whether a run holds the site's lock right now (without taking it for long)."""
    try:
        fd = os.open(state_dir / LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
