"""`send` for digests written in the compact outbox (pipeline/mail/compact.py): each message
is assembled when it is handed over, and its outcome goes to the digest's journal at once
(the Maildir's rename), synced with the renames before the ledger records it.

A message is the compact store's when its digest has a store and its name is not in
outbox/new/ (a digest begun as Maildir stays Maildir).
"""

from __future__ import annotations

import mmap
import os
from array import array
from bisect import bisect_right
from datetime import UTC, datetime

from pipeline.core.deliveries import Delivery, QueuedMessage
from pipeline.delivery.folders import OutboxError
from pipeline.mail.compact import (
    HASH,
    CompactStore,
    Journal,
    Record,
    message_name_hash,
    parse_record,
    sorted_by_key,
    store_name,
)
from pipeline.mail.compose import Composer
from pipeline.mail.outbox_folders import Outbox

DONTNEED = getattr(mmap, "MADV_DONTNEED", None)  # Linux and BSDs; elsewhere pages stay


class _Digest:
    """One store as a send sees it, read when the first of its messages is looked at: where
    each recipient's line starts, as their name hashes (64-bit numbers) in a sorted array
    beside the lines' offsets (16 bytes a recipient; a dict of them took ~220, the parsed
    lines ~350). The lines are read from the file mapped, and the pages read are unmapped with
    each batch (drop_pages): they stay in the page cache, but no longer count in the send's
    resident memory (they grew to the file's 88 MB at a million). Reading each line with
    pread instead cost ~5 µs more a message (a GIL handoff)."""

    def __init__(self, store: CompactStore) -> None:
        self.store = store
        self.outcomes = store.outcome_index()
        self.renditions: dict[int, Composer] = store.renditions()
        self.journal: Journal | None = None
        self.fd = os.open(store.recipients, os.O_RDONLY)
        keys, starts = array("Q"), array("Q")
        position = 0
        with open(self.fd, "rb", buffering=1 << 20, closefd=False) as f:
            for line in f:
                if not line.endswith(b"\n"):  # a half-written last line is left
                    break
                keys.append(int(message_name_hash(parse_record(line)[2]), 16))
                starts.append(position)
                position += len(line)
        self.keys, self.starts = sorted_by_key(keys, starts)
        self.data = mmap.mmap(self.fd, position, access=mmap.ACCESS_READ) if position else b""

    def start(self, key: str) -> int:
        """Where the line of the recipient whose name hash is `key` starts; -1: none."""
        number = int(key, 16)
        at = bisect_right(self.keys, number) - 1
        return self.starts[at] if at >= 0 and self.keys[at] == number else -1

    def record(self, key: str) -> Record:
        start = self.start(key)
        if start < 0:
            raise KeyError(key)
        data = self.data
        return parse_record(data[start:data.find(b"\n", start)])

    def drop_pages(self) -> None:
        """Unmap the pages read so far (they stay in the page cache, not in our RSS)."""
        if self.data and DONTNEED is not None:
            self.data.madvise(DONTNEED)

    def close(self) -> None:
        if self.data:
            self.data.close()
        os.close(self.fd)


class CompactQueue:
    def __init__(self, folders: Outbox, in_new: set[str]) -> None:
        self.root = folders.root
        self.in_new = in_new  # outbox/new/'s listing: a name there is the Maildir's
        self.digests: dict[str, _Digest | None] = {}

    def _digest(self, message: QueuedMessage) -> _Digest | None:
        if message.digest_id is None:
            return None
        name = store_name(message.filename)
        if name not in self.digests:
            store = CompactStore(self.root, name)
            self.digests[name] = _Digest(store) if store.exists() else None
        return self.digests[name]

    def has_store(self, name: str) -> bool:
        """Whether the digest message of that name has a compact store (already looked at)."""
        return self.digests.get(store_name(name)) is not None

    def holds(self, message: QueuedMessage) -> bool:
        """Whether the message is the compact store's (its digest has one, and it is not
        in new/)."""
        return message.filename not in self.in_new and self._digest(message) is not None

    def waiting(self, message: QueuedMessage) -> bool:
        """In its store, with no outcome journaled yet."""
        if not self.holds(message):
            return False
        digest = self._digest(message)
        key = message.filename[HASH]
        return digest is not None and key not in digest.outcomes and digest.start(key) >= 0

    def recovered(self, message: QueuedMessage) -> Delivery | None:
        """The outcome a killed send journaled but never recorded, if any."""
        digest = self._digest(message) if self.holds(message) else None
        found = digest and digest.outcomes.get(message.filename[HASH])
        if not found:
            return None
        state, when, text = found
        reply, bouncing = "accepted; the reply was lost when the send was killed", False
        if state == "withdrawn":
            reply = ("not sent: its subscriber left the list (recorded after an interrupted "
                     "send)")
        if state == "failed":
            reply, bouncing = (text.splitlines() or ["refused"])[0], "marked bounc" in text
        return Delivery(message, state, reply, datetime.fromtimestamp(when, UTC),
                        message.attempts + 1, bouncing=bouncing)

    def open_journals(self, due: list[QueuedMessage]) -> None:
        """Before the first message is handed over: every journal a due message needs can
        be written. Else OutboxError, nothing sent."""
        for message in due:
            digest = self._digest(message) if self.holds(message) else None
            if digest is not None and digest.journal is None:
                try:
                    digest.journal = Journal(digest.store)
                except OSError as exc:
                    raise OutboxError(
                        f"cannot record outcomes in {exc.filename} ({exc.strerror}); nothing "
                        "was sent — make outbox/compact/ writable by the user that runs send"
                    ) from None

    def assemble(self, message: QueuedMessage) -> tuple[bytes, bool]:
        """The message's bytes, and whether no line of them starts with "."."""
        digest = self._digest(message)
        assert digest is not None
        who = message.filename[HASH]
        rendition, _, email, name, token = digest.record(who)
        return digest.renditions[rendition].assemble_marked(email, name, token, who)

    def record(self, message: QueuedMessage, state: str, text: str = "") -> None:
        """The outcome, in the journal at once: sent, failed (text: the reason) or
        withdrawn."""
        digest = self._digest(message)
        assert digest is not None
        if digest.journal is None:
            digest.journal = Journal(digest.store)
        digest.journal.add(message.filename, state, text)

    def flush(self) -> None:
        for digest in self.digests.values():
            if digest is not None and digest.journal is not None:
                digest.journal.flush()
            if digest is not None:
                digest.drop_pages()

    def close(self) -> None:
        for digest in self.digests.values():
            if digest is not None and digest.journal is not None:
                digest.journal.close()
                digest.journal = None
            if digest is not None:
                digest.close()
        self.digests.clear()
