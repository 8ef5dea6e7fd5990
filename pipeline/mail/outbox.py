"""The fan-out: one message per subscriber per digest, delivered into outbox/ (Maildir).

The digest was rendered once; a Composer encodes what the messages share once; each message
only fills in its subscriber. File names are deterministic per (digest, subscriber), so a
repeated or resumed run never writes a second copy.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from pipeline.core.atomic import flush_files, flush_to_disk, write_atomic
from pipeline.core.config import Config
from pipeline.core.models import Digest, Subscriber
from pipeline.mail.compose import Composer, message_name, message_prefix
from pipeline.mail.dkim import DkimSigner
from pipeline.mail.message_writer import MessageWriter
from pipeline.state.ledger import Ledger

__all__ = ["FAILED", "SENT", "WITHDRAWN", "Outbox", "message_name", "message_prefix",
           "write_outbox"]

log = logging.getLogger("pipeline")
BATCH = 2000  # messages made durable (one sync) and recorded together
FEW = 64  # messages in a batch made durable one by one (fsync each) rather than by one sync
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


def write_outbox(digest: Digest, subscribers: Iterable[Subscriber], config: Config,
                 ledger: Ledger, secret: bytes, now: datetime,
                 rendition_for: Callable[[Subscriber], Digest | None] | None = None, *,
                 fresh: bool = False, signer: DkimSigner | None = None) -> int:
    """Write the digest for every subscriber who has no copy yet; returns how many were written.

    `subscribers` names each address once (the ledger's list does). `rendition_for` picks
    each subscriber's rendition (segments.Renditions.for_subscriber); None means they get
    nothing this time. Without it everyone gets the digest itself. Each batch is made durable
    on disk before the ledger records it. A file found in new/ (or already in sent/) without a
    ledger row, from a crash between the two, is recorded, not written again. `fresh`: the
    digest was created just now, so none of its files can exist and none are looked for.
    `signer`: each message is written with its DKIM signature(s) in front, signed on a few
    threads (message_writer.py); the compact outbox stores no messages, so `send` signs those.
    Memory stays flat in the number of subscribers, and in the number of messages sent before.
    """
    if _compact(digest, config, ledger, fresh):
        from pipeline.mail.compact import write_compact

        return write_compact(digest, subscribers, config, ledger, secret, now, rendition_for,
                             fresh=fresh)
    outbox = Outbox(config.outbox_dir)
    outbox.prepare_writing()
    outbox.clear_tmp()  # half-written by a killed run; we hold the site lock
    tmp, new = outbox.tmp, outbox.new
    composers: dict[tuple[str, ...], Composer] = {}  # one per rendition, built on first use
    done = set() if fresh else ledger.written_addresses(digest.id)

    def delivered(name: str) -> bool:  # by a killed run, and perhaps moved on by sending
        return not fresh and outbox.written(name)

    written = 0
    batch: list[tuple[str, str]] = []
    with _Recorder(ledger, digest, now, new) as recorder, \
            MessageWriter(tmp, new, signer) as writer:
        for subscriber in subscribers:
            if subscriber.email in done:
                continue
            rendition = rendition_for(subscriber) if rendition_for else digest
            if rendition is None:  # nothing new in their categories: no message
                continue
            name = message_name(digest, subscriber.email)
            if not delivered(name):
                composer = composers.get(rendition.slugs)
                if composer is None:
                    composer = composers[rendition.slugs] = Composer(rendition, config, secret)
                writer.write(name, composer, subscriber)
                written += 1
            batch.append((subscriber.email, name))
            if len(batch) >= BATCH:
                writer.wait()  # every file of the batch is in new/ before its sync
                recorder.add(batch)
                batch = []
                log.info("outbox: %d messages written for digest %d", written, digest.id)
        writer.wait()
        recorder.add(batch)
    ledger.complete_digest(digest.id)
    log.info("outbox: digest %d complete, %d messages written by this run", digest.id, written)
    return written


def _compact(digest: Digest, config: Config, ledger: Ledger, fresh: bool) -> bool:
    """Whether the digest is written compact: a digest keeps the mode it was begun in."""
    from pipeline.mail.compact import CompactStore

    if CompactStore.of(config.outbox_dir, digest).exists():
        return True
    return config.outbox_mode == "compact" and (fresh or not ledger.message_count(digest.id))


class _Recorder:
    """Records each batch in the ledger once its files are durable. The sync of one batch runs
    in a thread while the next batch is written, so the disk and the CPU work at once (a sync
    in line stalled the fan-out for a third of its time); a batch is still recorded only after
    a sync that began once all its files were in new/."""

    def __init__(self, ledger: Ledger, digest: Digest, now: datetime, new: Path) -> None:
        self._ledger, self._digest, self._now, self._new = ledger, digest, now, new
        self._flusher = ThreadPoolExecutor(1, thread_name_prefix="outbox-sync")
        self._pending: tuple[Future[None], list[tuple[str, str]]] | None = None

    def add(self, batch: list[tuple[str, str]]) -> None:
        self._record_pending()
        if len(batch) > FEW:
            self._pending = (self._flusher.submit(flush_to_disk, self._new), batch)
        elif batch:
            names = [name for _, name in batch]
            self._pending = (self._flusher.submit(flush_files, self._new, names), batch)

    def _record_pending(self) -> None:
        if self._pending is not None:
            synced, batch = self._pending
            self._pending = None
            synced.result()  # a failed sync raises here: that batch is not recorded
            self._ledger.record_messages(self._digest.id, self._now, batch)

    def __enter__(self) -> _Recorder:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is None:
                self._record_pending()
        finally:
            self._flusher.shutdown(wait=True)
