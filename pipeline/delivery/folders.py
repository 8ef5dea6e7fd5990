"""The outbox as `send` uses it: checked before the first message is handed over, and
messages that a mail client moved into cur/ taken back.

The outbox is a Maildir, so anyone may open it in a mail client; mutt and its kind move each
message they have seen from new/ to cur/ and add flags to its name (`….eml:2,S`). Those
messages are still queued in the ledger: send moves them back under their own names.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from pipeline.core.dot_mark import is_marked
from pipeline.mail.outbox_folders import Outbox

log = logging.getLogger("pipeline")
INFO = ":2,"  # Maildir's flags come after this in a file's name (":1," is experimental)
MIN_FREE = 16 * 1024 * 1024  # bytes free that a send needs whatever its size (ledger, WAL)
PER_MESSAGE = 4096  # and per message to record (a ledger row, its share of the WAL, a reason)


class OutboxError(Exception):
    """Send cannot move or record messages: nothing (more) is handed over."""


def check_writable(folders: Outbox, state_dir: Path, messages: int) -> None:
    """Before the first message is handed over: a message can be moved from new/ into every
    folder a send moves messages to, and there is room to record them. Else OutboxError."""
    probe = f".send-probe-{os.getpid()}"
    where = folders.new / probe
    try:
        where.write_bytes(b"probe\n")
        for folder in (folders.sent, folders.failed, folders.withdrawn):
            os.rename(where, folder / probe)
            where = folder / probe
        os.unlink(where)
        state_probe = state_dir / probe
        state_probe.write_bytes(b"probe\n")
        os.unlink(state_probe)
    except OSError as exc:
        with_name = f"{exc.filename}" + (f" → {exc.filename2}" if exc.filename2 else "")
        raise OutboxError(f"cannot move or record messages ({with_name}: {exc.strerror}); "
                          "nothing was sent — make outbox/ and its folders, and "
                          f"{state_dir.name}/, writable by the user that runs send") from None
    needed = MIN_FREE + PER_MESSAGE * messages
    for folder in {folders.new, state_dir}:
        free = shutil.disk_usage(folder).free
        if free < needed:
            raise OutboxError(f"only {free / 1e6:,.1f} MB free for {folder}; recording "
                              f"{messages:,} messages needs about {needed / 1e6:,.1f} MB — "
                              "nothing was sent; free some space") from None


class OpenFolders:
    """outbox/new/ opened once for a send: each message is read and moved by its name in it,
    without the kernel walking the whole path for each (~1.5 µs a read, as much a move).
    sent/ is named by its path at every move: a sent/ that was moved away or replaced must
    stop the send, not take the messages wherever it went."""

    def __init__(self, folders: Outbox) -> None:
        self.new = os.open(folders.new, os.O_RDONLY | os.O_DIRECTORY)
        self.sent = f"{folders.sent}/"  # joined to a name without os.path.join (~1 µs)

    def __enter__(self) -> OpenFolders:
        return self

    def __exit__(self, *_: object) -> None:
        os.close(self.new)

    def read(self, name: str) -> tuple[bytes, bool]:
        """A message in new/, whole, in one read (open()'s file object asks for its size
        and position and reads again to find the end: three more system calls), and whether
        its writer marked it as having no line that starts with "." (core/dot_mark.py)."""
        fd = os.open(name, os.O_RDONLY, dir_fd=self.new)
        try:
            stat = os.fstat(fd)
            size = stat.st_size
            data = os.read(fd, size)
            while len(data) < size and (more := os.read(fd, size - len(data))):
                data += more
            return data, is_marked(fd, stat)
        finally:
            os.close(fd)

    def to_sent(self, name: str) -> None:
        """Move a message from new/ into sent/: one rename, so that it is in exactly one of
        them at every moment (durable once the folders are flushed)."""
        os.rename(name, self.sent + name, src_dir_fd=self.new)


def plain_name(name: str) -> str:
    """The message's own name, without Maildir flags."""
    return name.split(INFO, 1)[0] if INFO in name else name.split(":1,", 1)[0]


def seen_by_a_reader(folders: Outbox, in_new: set[str]) -> dict[str, Path]:
    """Message name → where a mail client put it: in cur/, or renamed with flags in new/
    (`in_new`: new/'s listing, which the caller has)."""
    found: dict[str, Path] = {}
    if folders.cur.is_dir():
        for name in os.listdir(folders.cur):
            found.setdefault(plain_name(name), folders.cur / name)
    for name in in_new:
        if ":" in name and plain_name(name) != name:
            found.setdefault(plain_name(name), folders.new / name)
    return found
