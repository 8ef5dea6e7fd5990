"""The fan-out: one message per subscriber per digest, delivered into outbox/ (Maildir).

The digest was rendered once; a Composer encodes what the messages share once; each message
only fills in its subscriber. File names are deterministic per (digest, subscriber), so a
repeated or resumed run never writes a second copy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from pipeline.atomic import deliver, flush_to_disk
from pipeline.compose import Composer, message_name, message_prefix
from pipeline.config import Config
from pipeline.ledger import Ledger
from pipeline.models import Digest, Subscriber

__all__ = ["FAILED", "SENT", "build_message", "message_name", "message_prefix", "write_outbox"]

log = logging.getLogger("pipeline")
BATCH = 500  # messages made durable and recorded together
SENT = "sent"  # where sending moves a message once the server accepted it
FAILED = "failed"  # where sending moves a message the server refused for good, beside its reason
REASON = ".reason"  # failed/<message>.reason: the relay's reply, for the operator


def outbox_dirs(outbox: Path) -> tuple[Path, Path]:
    tmp, new = outbox / "tmp", outbox / "new"
    for folder in (tmp, new, outbox / "cur"):
        folder.mkdir(parents=True, exist_ok=True)
    return tmp, new


def build_message(digest: Digest, subscriber: Subscriber, config: Config, secret: bytes
                  ) -> bytes:
    """One subscriber's copy of the digest as RFC 5322 bytes (CRLF line ends)."""
    return Composer(digest, config, secret).compose(subscriber)


def write_outbox(digest: Digest, subscribers: Iterable[Subscriber], config: Config,
                 ledger: Ledger, secret: bytes, now: datetime) -> int:
    """Write the digest for every subscriber who has no copy yet; returns how many were written.

    Each batch is made durable on disk before the ledger records it. A file found in new/
    without a ledger row (a crash between the two) is recorded, not written again.
    """
    tmp, new = outbox_dirs(config.outbox_dir)
    for leftover in tmp.iterdir():  # half-written by a killed run; we hold the site lock
        leftover.unlink()
    composer = Composer(digest, config, secret)
    done = ledger.written_addresses(digest.id)
    written = 0
    batch: list[tuple[str, str]] = []
    for subscriber in subscribers:
        if subscriber.email in done:
            continue
        done.add(subscriber.email)
        name = message_name(digest, subscriber.email)
        if not (new / name).exists():
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
