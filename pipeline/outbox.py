"""One message per subscriber per digest, delivered into outbox/ in Maildir layout.

The digest is rendered once; each message only fills in the subscriber's address and
unsubscribe link. File names are deterministic per (digest, subscriber), so a repeated or
resumed run never writes a second copy.
"""

from __future__ import annotations

import hashlib
import html
import logging
from collections.abc import Iterable
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from pipeline.atomic import deliver, flush_to_disk
from pipeline.config import Config
from pipeline.digest import PLACEHOLDERS
from pipeline.ledger import Ledger
from pipeline.models import Digest, Subscriber
from pipeline.readers.fields import slugify
from pipeline.sanitise import one_line
from pipeline.subscribers import unsubscribe_token

log = logging.getLogger("pipeline")
BATCH = 500  # messages made durable and recorded together
SENT = "sent"  # where sending moves a message once the server accepted it


def outbox_dirs(outbox: Path) -> tuple[Path, Path]:
    tmp, new = outbox / "tmp", outbox / "new"
    for folder in (tmp, new, outbox / "cur"):
        folder.mkdir(parents=True, exist_ok=True)
    return tmp, new


def message_prefix(digest: Digest) -> str:
    return f"digest-{digest.id:05d}-{digest.key[:8]}-"


def message_name(digest: Digest, email: str) -> str:
    who = hashlib.sha256(email.lower().encode()).hexdigest()[:16]
    return f"{message_prefix(digest)}{who}.eml"


def build_message(digest: Digest, subscriber: Subscriber, config: Config, secret: bytes
                  ) -> bytes:
    """The subscriber's copy of the digest as RFC 5322 bytes (CRLF line ends, as SMTP wants)."""
    token = unsubscribe_token(secret, subscriber.email)
    unsubscribe_url = config.unsubscribe_url.format(site_url=config.site_url, token=token)
    # The mail arrives from the subscriber's own address: no token needed, and a short value
    # keeps the header from being folded into encoded words that clients cannot parse.
    mailto = f"mailto:{config.unsubscribe_mailto}?subject=unsubscribe"
    values = {"unsubscribe_url": unsubscribe_url, "email": subscriber.email}

    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = config.from_address
    local, domain = subscriber.email.rsplit("@", 1)
    msg["To"] = Address(one_line(subscriber.name), local, domain)
    msg["Subject"] = digest.subject
    msg["Date"] = format_datetime(digest.created)
    msg["Message-ID"] = f"<{message_name(digest, subscriber.email)[:-4]}@{config.mail_domain}>"
    msg["List-Id"] = f"{one_line(config.title)} <{_list_id(config)}>"
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>, <{mailto}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if config.reply_to:
        msg["Reply-To"] = config.reply_to
    msg.set_content(_fill(digest.text, values, escape=False), subtype="plain", charset="utf-8",
                    cte="quoted-printable")
    msg.add_alternative(_fill(digest.html, values, escape=True), subtype="html", charset="utf-8",
                        cte="quoted-printable")
    msg.set_boundary(f"=_{digest.key}")
    return msg.as_bytes()


def write_outbox(digest: Digest, subscribers: Iterable[Subscriber], config: Config,
                 ledger: Ledger, secret: bytes, now: datetime) -> int:
    """Write the digest for every subscriber who has no copy yet; returns how many were written.

    Each batch is made durable on disk before the ledger records it. A file found in new/
    without a ledger row (a crash between the two) is recorded, not written again.
    """
    tmp, new = outbox_dirs(config.outbox_dir)
    for leftover in tmp.iterdir():  # half-written by a killed run; we hold the site lock
        leftover.unlink()
    done = ledger.written_addresses(digest.id)
    written = 0
    batch: list[tuple[str, str]] = []
    for subscriber in subscribers:
        if subscriber.email in done:
            continue
        done.add(subscriber.email)
        name = message_name(digest, subscriber.email)
        if not (new / name).exists():
            deliver(tmp, new, name, build_message(digest, subscriber, config, secret))
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


def _fill(template: str, values: dict[str, str], *, escape: bool) -> str:
    for key, placeholder in PLACEHOLDERS.items():
        value = values[key]
        template = template.replace(placeholder, html.escape(value) if escape else value)
    return template


def _list_id(config: Config) -> str:
    return f"{slugify(config.journal_id)}.{config.mail_domain}"
