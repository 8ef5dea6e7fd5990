"""The ledger's record of returning mail (bounces, complaints, provider notifications): which
mail was handled, what it said about whom, and the status it set. Kept apart from ledger.py
only for length: like it, the only code that touches these rows.

A piece of mail is recorded in the same transaction as the status changes it makes, and before
its file or IMAP message is moved: a second look at it (after a kill, or a second run over the
same folder) finds its key and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pipeline.state import events
from pipeline.state.connection import has_table
from pipeline.state.ledger import Ledger, transaction

# What of a report may go into the audit trail's detail: a status code or a provider's label,
# never an address (no "@" or "<" gets through) and nothing that could become markup.
_UNSAFE = re.compile(r"[^A-Za-z0-9 ._()/-]+")


@dataclass(frozen=True)
class ReturnRow:
    """What one piece of returning mail says about one subscriber."""

    subscriber_id: int
    address: str
    digest_id: int | None
    kind: str  # permanent, temporary, policy or complaint
    status_code: str = ""  # the DSN's, e.g. 5.1.1 ("" if it gave none)
    report: str = ""  # without a status code, the report's own label: SES's bounce type,
    # a feedback type (never an address)
    new_status: str = ""  # the status to set, "" for none
    only_from: tuple[str, ...] = ()  # ... and only if the subscriber's status is one of these
    soft_limit: int = 0  # a temporary failure: set it only once this many are counted ...
    soft_since: datetime | None = None  # ... since then (this one included)


@dataclass(frozen=True)
class ReturnedRow:
    """A recorded ReturnRow: what the mail said and what it changed."""

    address: str
    kind: str
    status_code: str
    digest_id: int | None
    previous: str  # the subscriber's status when it arrived
    changed: str  # the status it set, "" for none


@dataclass(frozen=True)
class MailRecord:
    """One piece of returning mail to record, with what it says about subscribers."""

    key: str
    source: str
    outcome: str
    detail: str
    rows: tuple[ReturnRow, ...] = ()


class ReturnsBook:
    def __init__(self, ledger: Ledger) -> None:
        self._db = ledger._db

    def seen(self, key: str) -> str | None:
        """The outcome recorded for this mail, or None if it was never handled."""
        row = self._db.execute("SELECT outcome FROM returned_mail WHERE key = ?",
                              (key,)).fetchone()
        return row[0] if row else None

    def temporary_failures(self, subscriber_id: int, since: datetime) -> int:
        """Distinct messages that failed temporarily for this subscriber since then (several
        "still trying" notices for one message count once)."""
        return self._db.execute(
            "SELECT count(DISTINCT coalesce('digest ' || digest_id, mail_key)) "
            "FROM subscriber_returns WHERE subscriber_id = ? AND kind = 'temporary' "
            "AND received >= ?", (subscriber_id, since.isoformat())).fetchone()[0]

    def record(self, key: str, source: str, outcome: str, detail: str, now: datetime,
               rows: Iterable[ReturnRow] = ()) -> list[tuple[ReturnRow, str]] | None:
        """Record one piece of mail and apply its rows: see record_many."""
        return self.record_many([MailRecord(key, source, outcome, detail, tuple(rows))], now)[0]

    def record_many(self, records: Iterable[MailRecord], now: datetime
                    ) -> list[list[tuple[ReturnRow, str]] | None]:
        """Record pieces of mail and apply their rows, all in one durable transaction (one
        sync for a batch, not one per message). For each: its rows with the status each set
        ("" if none), or None if that mail was recorded before (then it changes nothing)."""
        results: list[list[tuple[ReturnRow, str]] | None] = []
        stamp = now.isoformat()
        with transaction(self._db):
            for record in records:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO returned_mail (key, received, source, outcome, "
                    "detail) VALUES (?, ?, ?, ?, ?)",
                    (record.key, stamp, record.source, record.outcome, record.detail))
                if cursor.rowcount == 0:
                    results.append(None)
                    continue
                results.append([(row, self._apply(record.key, row, stamp, now))
                                for row in record.rows])
        return results

    def _apply(self, key: str, row: ReturnRow, stamp: str, now: datetime) -> str:
        found = self._db.execute("SELECT status FROM subscribers WHERE id = ?",
                                (row.subscriber_id,)).fetchone()
        previous = found[0] if found else ""
        cursor = self._db.execute(
            "INSERT INTO subscriber_returns (mail_key, subscriber_id, address, digest_id, "
            "kind, status_code, received, previous) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key, row.subscriber_id, row.address, row.digest_id, row.kind, row.status_code,
             stamp, previous))
        counted = self.temporary_failures(row.subscriber_id, row.soft_since or now) \
            if row.soft_limit else 0
        if not (row.new_status and previous in row.only_from and counted >= row.soft_limit):
            return ""
        self._db.execute("UPDATE subscribers SET status = ?, updated = ? WHERE id = ?",
                        (row.new_status, stamp, row.subscriber_id))
        events.record(self._db, row.subscriber_id, stamp, events.STATUS, previous,
                      row.new_status, "complaint" if row.kind == "complaint" else "bounce",
                      _audit_detail(row, counted, now))
        self._db.execute("UPDATE subscriber_returns SET changed = ? WHERE id = ?",
                        (row.new_status, cursor.lastrowid))
        return row.new_status

    def rows(self) -> list[ReturnedRow]:
        """Every subscriber row recorded from returning mail, oldest first."""
        if not has_table(self._db, "subscriber_returns"):
            return []
        return [ReturnedRow(*r) for r in self._db.execute(
            "SELECT address, kind, status_code, digest_id, previous, changed "
            "FROM subscriber_returns ORDER BY id")]

    def mail_count(self) -> int:
        """Pieces of returning mail recorded (each handled once)."""
        if not has_table(self._db, "returned_mail"):
            return 0
        return self._db.execute("SELECT count(*) FROM returned_mail").fetchone()[0]

    def digest_rates(self, digest_id: int) -> tuple[int, int]:
        """(addresses that bounced for good, addresses that complained) for one digest: from
        returning mail, plus addresses the relay refused while sending it."""
        if not has_table(self._db, "subscriber_returns"):  # a read-only look, not migrated
            return 0, 0
        bounced = self._db.execute(
            "SELECT count(*) FROM (SELECT lower(address) FROM subscriber_returns "
            "WHERE digest_id = ? AND kind = 'permanent' UNION "
            "SELECT lower(address) FROM deliveries WHERE digest_id = ? AND bounce != '')",
            (digest_id, digest_id)).fetchone()[0]
        complained = self._db.execute(
            "SELECT count(DISTINCT subscriber_id) FROM subscriber_returns "
            "WHERE digest_id = ? AND kind = 'complaint'", (digest_id,)).fetchone()[0]
        return bounced, complained

    def history(self, subscriber_id: int) -> list[tuple[str, str, str, str, str]]:
        """(received, kind, status code, previous status, status set) for one subscriber,
        oldest first."""
        return self._db.execute(
            "SELECT received, kind, status_code, previous, changed FROM subscriber_returns "
            "WHERE subscriber_id = ? ORDER BY id", (subscriber_id,)).fetchall()


def _audit_detail(row: ReturnRow, counted: int, now: datetime) -> str:
    """The audit trail's detail for a change: the status code (else the report's label) and,
    for temporary failures, how many were counted."""
    label = row.status_code or row.report
    detail = "" if "@" in label else " ".join(_UNSAFE.sub(" ", label).split())[:80]
    if row.soft_limit and row.soft_since is not None:
        days = round((now - row.soft_since).total_seconds() / 86400)
        detail += f"; {counted} temporary failures within {days} days"
    return detail.strip("; ")
