"""The one place that makes files appear: whole or not at all, even across a crash."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from pipeline.core.dot_mark import mark


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename.
    `mode`: public files are world-readable; private ones (0o600) are the owner's alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_if_changed(path: Path, data: bytes) -> bool:
    """Atomic write that leaves the file (and its mtime) alone when the bytes are the same."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    write_atomic(path, data)
    return True


def deliver(tmp_dir: Path, new_dir: Path, name: str, data: bytes, *,
            no_leading_dot: bool = False) -> None:
    """Maildir delivery: write into tmp/, then rename into new/ so readers never see half a file.
    `no_leading_dot`: the writer knows no line of `data` starts with "." (core/dot_mark.py).

    No fsync per file (that would bound fan-out at the disk's sync rate); callers call
    `flush_to_disk()` once per batch before recording the batch as written.
    """
    tmp = os.path.join(tmp_dir, name)  # strings, not Paths: this runs once per message
    # 0600 whatever the umask: a message holds its subscriber's address and unsubscribe link.
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(data)
        if no_leading_dot:
            f.flush()  # the mark holds the file's size and time once written
            mark(f.fileno())
    os.replace(tmp, os.path.join(new_dir, name))


def move(name: str, source: str, target: str) -> None:
    """Move a file between folders of one outbox: one rename, so it is in exactly one of them
    at every moment, even if the process dies. Durable once `flush_folders` has run.
    (Folders as strings: this runs once per message sent.)"""
    os.rename(os.path.join(source, name), os.path.join(target, name))


def flush_folders(*folders: Path) -> None:
    """Make the renames into and out of these folders survive a power cut."""
    for folder in folders:
        _fsync_dir(folder)


def flush_to_disk(*folders: Path) -> None:
    """Make every file delivered so far durable before the ledger says it exists."""
    os.sync()
    for folder in folders:
        _fsync_dir(folder)


def flush_files(folder: Path, names: Iterable[str]) -> None:
    """`flush_to_disk(folder)` for a few files in it: each one's own fsync instead of the
    machine's whole sync, which also waits for every other program's unwritten data (on a
    shared machine ~5–100 ms against ~0.3 ms a file). A file already moved on from `folder`
    means syncing everything, as flush_to_disk does."""
    for name in names:
        try:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
        except FileNotFoundError:
            os.sync()
            break
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
