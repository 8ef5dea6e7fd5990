"""The ledger's notices: messages to one person outside any digest (the double opt-in
confirmation). Kept apart from ledger.py only for length: like it, the only code that touches
these rows. A notice is recorded once its file is durable in outbox/new/; sending updates the
same row."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pipeline.core.deliveries import Delivery, QueuedMessage
from pipeline.state.connection import has_table, transaction
from pipeline.state.ledger import Ledger


@dataclass(frozen=True)
class NoticeRecord:
    filename: str
    address: str
    state: str  # queued, deferred, sent, failed or withdrawn
    attempts: int
    reply: str


class Notices:
    def __init__(self, ledger: Ledger) -> None:
        self._db = ledger._db  # the state package shares the ledger's connection

    def record(self, rows: Iterable[tuple[str, str]], written: datetime) -> None:
        """Record (filename, address) of notices already durable in new/."""
        with transaction(self._db):
            self._db.executemany(
                "INSERT OR IGNORE INTO notices (filename, address, written) VALUES (?, ?, ?)",
                [(name, address, written.isoformat()) for name, address in rows])

    def all(self) -> list[NoticeRecord]:
        """Every notice the ledger knows, oldest first."""
        return [NoticeRecord(*row) for row in self._db.execute(
            "SELECT filename, address, state, attempts, reply FROM notices "
            "ORDER BY written, filename")]

    def filenames(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT filename FROM notices")}

    def queued(self) -> list[QueuedMessage]:
        """Notices not yet sent, failed or withdrawn, oldest first."""
        if not has_table(self._db, "notices"):  # not yet migrated: nothing queued
            return []
        return [QueuedMessage(None, a, f, n, datetime.fromisoformat(t) if t else None)
                for f, a, n, t in self._db.execute(
                    "SELECT filename, address, attempts, next_attempt FROM notices "
                    "WHERE state IN ('queued', 'deferred') ORDER BY written, filename")]

    def record_deliveries(self, deliveries: Iterable[Delivery]) -> None:
        with transaction(self._db):
            self._db.executemany(
                "UPDATE notices SET state = ?, attempts = ?, last_attempt = ?, "
                "next_attempt = ?, reply = ? WHERE filename = ?",
                [(d.state, d.attempts, d.when.isoformat(),
                  d.next_attempt.isoformat() if d.next_attempt else None, d.reply,
                  d.message.filename) for d in deliveries])
