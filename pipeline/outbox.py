"""The fan-out: one message per subscriber per digest, delivered into outbox/ (Maildir).

The digest was rendered once; a Composer encodes what the messages share once; each message
only fills in its subscriber. File names are deterministic per (digest, subscriber), so a
repeated or resumed run never writes a second copy.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from pipeline.atomic import deliver, flush_to_disk
from pipeline.compose import Composer, message_name, message_prefix
from pipeline.config import Config
from pipeline.ledger import Ledger
from pipeline.models import Digest, Subscriber

__all__ = ["FAILED", "SENT", "message_name", "message_prefix", "write_outbox"]

log = logging.getLogger("pipeline")
BATCH = 2000  # messages made durable (one sync) and recorded together
SENT = "sent"  # where sending moves a message once the server accepted it
FAILED = "failed"  # where sending moves a message the server refused for good, beside its reason
REASON = ".reason"  # failed/<message>.reason: the relay's reply, for the operator


def outbox_dirs(outbox: Path) -> tuple[Path, Path]:
    tmp, new = outbox / "tmp", outbox / "new"
    for folder in (tmp, new, outbox / "cur"):
        folder.mkdir(parents=True, exist_ok=True)
    return tmp, new


def write_outbox(digest: Digest, subscribers: Iterable[Subscriber], config: Config,
                 ledger: Ledger, secret: bytes, now: datetime,
                 rendition_for: Callable[[Subscriber], Digest | None] | None = None) -> int:
    """Write the digest for every subscriber who has no copy yet; returns how many were written.

    `rendition_for` picks each subscriber's rendition (segments.Renditions.for_subscriber);
    None means they get nothing this time. Without it everyone gets the digest itself.
    Each batch is made durable on disk before the ledger records it. A file found in new/
    without a ledger row (a crash between the two) is recorded, not written again.
    """
    tmp, new = outbox_dirs(config.outbox_dir)
    for leftover in tmp.iterdir():  # half-written by a killed run; we hold the site lock
        leftover.unlink()
    composers: dict[tuple[str, ...], Composer] = {}  # one per rendition, built on first use
    done = ledger.written_addresses(digest.id)
    # Files a killed run delivered but did not record (listed once, not stat()ed per message);
    # sending may already have moved one on, so its folder counts too.
    delivered = {name for folder in (new, config.outbox_dir / SENT) if folder.is_dir()
                 for name in os.listdir(folder)}
    written = 0
    batch: list[tuple[str, str]] = []
    for subscriber in subscribers:
        if subscriber.email in done:
            continue
        rendition = rendition_for(subscriber) if rendition_for else digest
        if rendition is None:  # nothing new in their categories: no message
            continue
        done.add(subscriber.email)
        name = message_name(digest, subscriber.email)
        if name not in delivered:
            composer = composers.get(rendition.slugs)
            if composer is None:
                composer = composers[rendition.slugs] = Composer(rendition, config, secret)
            deliver(tmp, new, name, composer.compose(subscriber))
            written += 1
        batch.append((subscriber.email, name))
        if len(batch) >= BATCH:
            _record(ledger, digest, batch, now, new)
            log.info("outbox: %d messages recorded for digest %d", len(done), digest.id)
    _record(ledger, digest, batch, now, new)
    ledger.complete_digest(digest.id)
    log.info("outbox: digest %d complete, %d messages written by this run", digest.id, written)
    return written


def _record(ledger: Ledger, digest: Digest, batch: list[tuple[str, str]], now: datetime,
            new: Path) -> None:
    if batch:
        flush_to_disk(new)
        ledger.record_messages(digest.id, now, batch)
        batch.clear()
