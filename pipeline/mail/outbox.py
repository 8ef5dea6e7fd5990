"""The fan-out: one message per subscriber per digest, delivered into outbox/ (Maildir).

The digest was rendered once; a Composer encodes what the messages share once; each message
only fills in its subscriber. File names are deterministic per (digest, subscriber), so a
repeated or resumed run never writes a second copy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from pipeline.core.atomic import flush_files, flush_to_disk
from pipeline.core.config import Config
from pipeline.core.models import Digest, Subscriber
from pipeline.mail.compose import Composer, message_name, message_prefix
from pipeline.mail.dkim import DkimSigner
from pipeline.mail.message_writer import MessageWriter
from pipeline.mail.outbox_folders import Outbox
from pipeline.state.ledger import Ledger

__all__ = ["message_name", "message_prefix", "write_outbox"]

log = logging.getLogger("pipeline")
BATCH = 2000  # messages made durable (one sync) and recorded together
FEW = 64  # messages in a batch made durable one by one (fsync each) rather than by one sync


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
