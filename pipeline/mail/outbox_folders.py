"""The outbox's folder layout and its one owner, `Outbox`: what a run writes into, what sending
moves messages between, what status, check, erasure and retention look at. Kept apart from the
fan-out (outbox.py), which imports the message composer, its signer and the email package:
sending and a first run's history check need only the folders.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from pipeline.core.atomic import write_atomic

SENT = "sent"  # where sending moves a message once the server accepted it
FAILED = "failed"  # where sending moves a message the server refused for good, beside its reason
WITHDRAWN = "withdrawn"  # where sending moves a message whose subscriber left after it was written
REASON = ".reason"  # failed/<message>.reason: the relay's reply, for the operator
HISTORY = (SENT, FAILED, WITHDRAWN)  # where messages end up once sending is done with them
DIGEST_PREFIX = "digest-"  # what every digest message's name begins with (message_prefix)


class Outbox:
    """The outbox's folder layout, and the one owner of it: a Maildir (tmp/ → new/, cur/ kept
    empty for mail tools) and sending's folders (sent/, failed/ with a .reason beside each
    message, withdrawn/). The outbox and its folders are the owner's alone (0700): messages
    carry the subscribers' addresses and their working unsubscribe links."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp, self.new, self.cur = root / "tmp", root / "new", root / "cur"
        self.sent, self.failed, self.withdrawn = root / SENT, root / FAILED, root / WITHDRAWN

    def folder(self, state: str) -> Path:
        """The folder of messages in that state: new (queued), cur (seen by a mail client,
        still queued), sent, failed or withdrawn."""
        return {"new": self.new, "cur": self.cur, SENT: self.sent, FAILED: self.failed,
                WITHDRAWN: self.withdrawn}[state]

    def prepare_writing(self) -> None:
        self._make(self.tmp, self.new, self.cur)

    def prepare_sending(self) -> None:
        self._make(self.new, self.sent, self.failed, self.withdrawn)

    def _make(self, *folders: Path) -> None:
        for folder in (self.root, *folders):
            folder.mkdir(parents=True, exist_ok=True)
            if folder.stat().st_mode & 0o777 != 0o700:
                os.chmod(folder, 0o700)

    def clear_tmp(self) -> None:
        """Remove what a killed run half-wrote (the caller holds the site lock)."""
        for leftover in self.tmp.iterdir():
            leftover.unlink()

    def listing(self, state: str = "new") -> set[str]:
        folder = self.folder(state)
        return set(os.listdir(folder)) if folder.is_dir() else set()

    def count(self, state: str, prefix: str = "") -> int:
        """Messages (.eml files) in a folder, those whose name starts with `prefix`."""
        folder = self.folder(state)
        return sum(1 for _ in folder.glob(f"{prefix}*.eml")) if folder.is_dir() else 0

    def written(self, name: str) -> bool:
        """Whether the message is queued in new/ or already sent."""
        return (os.path.exists(os.path.join(self.new, name))
                or os.path.exists(os.path.join(self.sent, name)))

    def where(self, name: str) -> str | None:
        """Which of sent/, failed/, withdrawn/ holds the message, if any."""
        return next((state for state in HISTORY if (self.folder(state) / name).exists()), None)

    def reason_file(self, name: str) -> Path:
        return self.failed / (name + REASON)

    def write_reason(self, name: str, text: str) -> None:
        write_atomic(self.reason_file(name), text.encode(), mode=0o600)

    def read_reason(self, name: str) -> str | None:
        path = self.reason_file(name)
        return path.read_text(encoding="utf-8") if path.exists() else None

    def has_digest_history(self) -> bool:
        """Whether a digest's message was ever written here (so a ledger knew of it)."""
        return any(self.count(state, DIGEST_PREFIX) for state in ("new", *HISTORY)) or any(
            self.root.glob(f"compact/{DIGEST_PREFIX}*/recipients"))

    def usage(self) -> dict[str, tuple[int, int]]:
        """state → (messages, bytes with their .reason files) of every folder."""
        found = {}
        for state in ("new", *HISTORY):
            folder, count, size = self.folder(state), 0, 0
            for entry in os.scandir(folder) if folder.is_dir() else ():
                count += entry.name.endswith(".eml")
                size += entry.stat().st_size
            found[state] = (count, size)
        from pipeline.mail.compact import usage as compact_usage

        if (compact := compact_usage(self.root)) is not None:  # recipients, store bytes
            found["compact"] = compact
        return found

    def prune(self, before: datetime) -> int:
        """Delete messages (and reasons) that reached sent/, failed/ or withdrawn/ before
        `before`; returns how many files went. The time a file was moved there is its ctime."""
        from pipeline.mail.compact import prune as prune_compact

        cutoff, gone = before.timestamp(), prune_compact(self.root, before)
        for state in HISTORY:
            folder = self.folder(state)
            for entry in os.scandir(folder) if folder.is_dir() else ():
                if entry.is_file() and entry.stat().st_ctime < cutoff:
                    os.unlink(entry.path)
                    gone += 1
        return gone

    def _all_folders(self) -> tuple[Path, ...]:
        return (self.tmp, self.new, self.cur, *(self.folder(s) for s in HISTORY))

    def find(self, pattern: str) -> set[str]:
        """Names of the files matching a glob pattern, in any folder."""
        return {p.name for folder in self._all_folders() if folder.is_dir()
                for p in folder.glob(pattern)}

    def remove(self, names: set[str]) -> int:
        """Delete these messages wherever they are (and their reasons); returns how many
        files went. For erasure: a person's messages must not outlive their removal."""
        gone = 0
        for folder in self._all_folders():
            for name in names:
                for path in (folder / name, folder / (name + REASON)):
                    try:
                        path.unlink()
                        gone += 1
                    except FileNotFoundError:
                        pass
        return gone
