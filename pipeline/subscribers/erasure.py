"""Erasure (a data-protection request): the address leaves the whole site, not just the list.

The ledger's rows that hold it (the list, messages, deliveries, notices) are deleted and their
pages scrubbed (secure deletion, VACUUM, the WAL truncated); its messages and confirmations
leave every outbox folder, its recipient and outcome lines the compact outbox's stores;
returning mail kept aside that names it leaves returns/kept/; its rows leave the site's
subscribers.csv. What stays is that an erasure happened (the ledger's erasures table:
subscriber id and time, no address).
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.core.atomic import write_atomic
from pipeline.core.config import Config
from pipeline.core.models import email_key
from pipeline.mail.compact import remove_messages
from pipeline.mail.compose import message_name
from pipeline.mail.outbox_folders import REASON, Outbox
from pipeline.state.ledger import Ledger
from pipeline.state.lock import SEND_LOCK_NAME, site_lock
from pipeline.state.subscribers import SubscriberBook
from pipeline.state.upkeep import record_erased_files, scrub
from pipeline.subscribers.returns.intake import KEPT_DIR

log = logging.getLogger("pipeline")
LOCK_WAIT = 60.0  # seconds to wait for a run or send to finish before erasing under them


@dataclass
class ErasureReport:
    found: bool  # the address was on the list or in messages kept
    ledger_rows: int = 0
    files: int = 0
    csv_rows: int = 0
    wal_truncated: bool = True


def erase(config: Config, ledger: Ledger, email: str, now: datetime) -> ErasureReport:
    """Remove every trace of the address from the site. Waits for a run or send in progress
    (they could write or move its messages meanwhile); raises Locked if they go on too long."""
    with site_lock(config.state_dir, LOCK_WAIT), \
            site_lock(config.state_dir, LOCK_WAIT, SEND_LOCK_NAME):
        outbox = Outbox(config.outbox_dir)
        names = _message_names(ledger, outbox, email)  # before the rows listing them go
        erasure = SubscriberBook(ledger).erase(email, now)
        files = outbox.remove(names | erasure.filenames)
        files += remove_messages(config.outbox_dir, names)  # the compact stores' lines
        files += _drop_kept_mail(config.site_dir / KEPT_DIR, email)
        csv_rows = _drop_from_csv(config.subscribers_file, email)
        found = bool(erasure.ledger_rows or files or csv_rows)
        if files and erasure.ledger_rows:
            record_erased_files(ledger, files)
        report = ErasureReport(found, erasure.ledger_rows, files, csv_rows)
        if found:
            report.wal_truncated = scrub(ledger)
    log.info("erased: %d ledger rows, %d files, %d subscribers.csv rows",
             report.ledger_rows, report.files, report.csv_rows)
    return report


def _message_names(ledger: Ledger, outbox: Outbox, email: str) -> set[str]:
    """Every outbox file name the address's messages can have, recorded or not: one per
    digest, and its confirmations (whatever subscriber id they were made for)."""
    names = {message_name(ledger.digest(listing.id), email)
             for listing in ledger.digest_listing()}
    who = hashlib.sha256(email_key(email).encode()).hexdigest()[:16]  # manage.confirmation_name
    return names | outbox.find(f"confirm-*-{who}.eml")


def _drop_kept_mail(folder: Path, email: str) -> int:
    """Delete returning mail kept aside (bounces process/fetch) that names the address, with
    its .reason; returns how many files went."""
    needle, gone = email_key(email).encode(), 0
    for kept in sorted(folder.glob("*.eml")) if folder.is_dir() else ():
        if needle in kept.read_bytes().lower():
            for path in (kept, kept.with_suffix(REASON)):  # the same convention as failed/
                path.unlink(missing_ok=True)
                gone += 1
    return gone


def _drop_from_csv(path: Path, email: str) -> int:
    """Delete the address's rows from the site's subscribers.csv (line by line: every other
    line keeps its bytes); returns how many went."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    except FileNotFoundError:
        return 0
    if not lines:
        return 0
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    column = header.index("email") if "email" in header else 0
    key, kept = email_key(email), [lines[0]]
    for line in lines[1:]:
        fields = next(csv.reader([line]), [])
        if len(fields) > column and email_key(fields[column].strip()) == key:
            continue
        kept.append(line)
    dropped = len(lines) - len(kept)
    if dropped:
        write_atomic(path, "".join(kept).encode("utf-8"), mode=path.stat().st_mode & 0o777)
    return dropped
