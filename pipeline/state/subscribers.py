"""The ledger's subscriber table (kept apart from ledger.py only for length: like it, the only
code that touches these rows). Every change is one durable transaction: an unsubscribe must
survive a power cut as surely as a digest does."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

from pipeline.core.models import (
    STATUSES,
    Subscriber,
    email_key,
    parse_categories,
    segment_key,
)
from pipeline.state import events, subscriber_import
from pipeline.state.ledger import Ledger, reading, transaction
from pipeline.state.subscriber_import import ImportReport, ImportRow

__all__ = ["ImportReport", "ImportRow", "SubscriberBook"]

_COLUMNS = "id, email, name, categories, status"
PAGE = 2000  # subscribers read per query while streaming the list
_CHUNK = 500  # keys per query when looking up statuses (SQLite allows 999 parameters)

@dataclass
class Erasure:
    subscriber_id: int | None  # None: no longer on the list (only old messages were left)
    filenames: set[str]  # the outbox files of their messages and confirmations
    ledger_rows: int  # rows deleted: subscribers, messages, deliveries, notices


def _row(row: tuple) -> Subscriber:
    return Subscriber(id=row[0], email=row[1], name=row[2],
                      categories=tuple(c for c in row[3].split(";") if c), status=row[4])


class SubscriberBook:
    def __init__(self, ledger: Ledger) -> None:
        self._db = ledger._db  # the state package shares the ledger's connection

    def get(self, email: str) -> Subscriber | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM subscribers WHERE email_key = ?",
                              (email_key(email),)).fetchone()
        return _row(row) if row else None

    def by_id(self, subscriber_id: int) -> Subscriber | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM subscribers WHERE id = ?",
                              (subscriber_id,)).fetchone()
        return _row(row) if row else None

    def active(self) -> Iterator[Subscriber]:
        """Every active subscriber in id order, a page at a time: no cursor stays open while
        the fan-out records its batches on the same connection, and memory stays flat."""
        return self._stream("WHERE status = 'active' AND id > ?")

    def everyone(self) -> Iterator[Subscriber]:
        return self._stream("WHERE id > ?")

    def _stream(self, where: str) -> Iterator[Subscriber]:
        last = 0
        while True:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM subscribers {where} "
                                   f"ORDER BY id LIMIT {PAGE}", (last,)).fetchall()
            yield from (_row(r) for r in rows)
            if len(rows) < PAGE:
                return
            last = rows[-1][0]

    def statuses(self) -> dict[str, tuple[int, str]]:
        """email_key → (id, status), for the whole list (sending checks each message against
        it)."""
        return {key: (sid, status) for key, sid, status in self._db.execute(
            "SELECT email_key, id, status FROM subscribers")}

    def statuses_of(self, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
        """email_key → (id, status) for these keys only (those on the list), a chunk of
        keys per query: a send of a million checks its messages without holding the list."""
        found: dict[str, tuple[int, str]] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            found.update((key, (sid, status)) for key, sid, status in self._db.execute(
                "SELECT email_key, id, status FROM subscribers WHERE email_key IN "
                f"({','.join('?' * len(chunk))})", chunk))
        return found

    def active_segments(self) -> set[str]:
        return {r[0] for r in self._db.execute(
            "SELECT DISTINCT segment FROM subscribers WHERE status = 'active'")}

    def counts(self) -> dict[str, int]:
        found = Counter(dict(self._db.execute(
            "SELECT status, count(*) FROM subscribers GROUP BY status").fetchall()))
        return {status: found.get(status, 0) for status in STATUSES}

    def import_rows(self, rows: Iterable[Subscriber | ImportRow], now: datetime, *,
                    reactivate: bool = False, double_opt_in: bool = False,
                    source: str = "import", detail: str = "") -> ImportReport:
        """Merge rows from a file: see subscriber_import.import_rows."""
        return subscriber_import.import_rows(
            self._db, rows, now, reactivate=reactivate, double_opt_in=double_opt_in,
            source=source, detail=detail)

    def add(self, subscriber: Subscriber, now: datetime, *, source: str = "cli"
            ) -> tuple[Subscriber, bool]:
        """Add one address, or update a known one's name and categories (an operator's explicit
        choice, unlike an import); (the row, whether it is new). A known address keeps its
        status: re-activation is `set_status`."""
        stamp = now.isoformat()
        with transaction(self._db):
            known = self.get(subscriber.email)
            if known is None:
                added = self._insert(subscriber, subscriber.status, stamp)
                events.record(self._db, added.id, stamp, events.STATUS, "", added.status, source)
                return added, True
            self._topics_changed(known, parse_categories(subscriber.categories), stamp, source)
            self._db.execute(
                "UPDATE subscribers SET name = ?, categories = ?, segment = ?, updated = ? "
                "WHERE id = ?", (subscriber.name or known.name,
                                 ";".join(subscriber.categories), segment_key(
                                     subscriber.categories), stamp, known.id))
        updated = self.by_id(known.id)
        assert updated is not None
        return updated, False

    def set_status(self, email: str, status: str, now: datetime, *, source: str = "cli",
                   detail: str = "") -> Subscriber | None:
        """None if the address is not on the list."""
        assert status in STATUSES
        with transaction(self._db):
            known = self.get(email)
            if known is not None and known.status != status:
                self._set(known.id, status, now.isoformat(), known.status, source, detail)
        return self.get(email) if known else None

    def set_status_by_id(self, subscriber_id: int, status: str, now: datetime, *,
                         source: str = "cli", detail: str = "") -> None:
        assert status in STATUSES
        with transaction(self._db):
            known = self.by_id(subscriber_id)
            if known is not None and known.status != status:
                self._set(subscriber_id, status, now.isoformat(), known.status, source, detail)

    def set_categories(self, subscriber_id: int, categories: Iterable[str], now: datetime, *,
                       source: str = "cli") -> None:
        chosen = parse_categories(categories)
        with transaction(self._db):
            known = self.by_id(subscriber_id)
            if known is not None:
                self._topics_changed(known, chosen, now.isoformat(), source)
            self._db.execute(
                "UPDATE subscribers SET categories = ?, segment = ?, updated = ? WHERE id = ?",
                (";".join(chosen), segment_key(chosen), now.isoformat(), subscriber_id))

    def erase(self, email: str, now: datetime) -> Erasure:
        """Delete every row that holds the address (the list, messages, deliveries, notices,
        what returning mail said about it, the note of its last confirmation) in one
        transaction, and record that an erasure happened, never the address; its audit trail
        and legacy-link index go with the row (ON DELETE CASCADE). The caller removes the
        files and scrubs the database (upkeep.scrub) afterwards."""
        db, key = self._db, email_key(email)
        db.create_function("email_key", 1, email_key, deterministic=True)
        with transaction(db):
            row = db.execute("SELECT id FROM subscribers WHERE email_key = ?", (key,)).fetchone()
            names = {r[0] for r in db.execute(
                "SELECT filename FROM messages WHERE email_key(address) = ? UNION "
                "SELECT filename FROM notices WHERE email_key(address) = ?", (key, key))}
            deleted = sum(db.execute(f"DELETE FROM {table} WHERE email_key(address) = ?",
                                     (key,)).rowcount
                          for table in ("deliveries", "messages", "notices",
                                        "subscriber_returns"))
            deleted += db.execute("DELETE FROM subscribers WHERE email_key = ?",
                                  (key,)).rowcount
            deleted += db.execute("DELETE FROM confirmation_limits WHERE address_hash = ?",
                                  (hashlib.sha256(key.encode()).digest(),)).rowcount
            if deleted:
                db.execute("INSERT INTO erasures (subscriber_id, erased, ledger_rows) "
                           "VALUES (?, ?, ?)", (row[0] if row else None, now.isoformat(),
                                                deleted))
        return Erasure(row[0] if row else None, names, deleted)

    def _insert(self, row: Subscriber, status: str, stamp: str) -> Subscriber:
        categories = parse_categories(row.categories)
        cursor = self._db.execute(
            "INSERT INTO subscribers (email, email_key, name, categories, segment, status, "
            "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (row.email, email_key(row.email), row.name, ";".join(categories),
             segment_key(categories), status, stamp, stamp))
        assert cursor.lastrowid is not None
        return Subscriber(id=cursor.lastrowid, email=row.email, name=row.name,
                          categories=categories, status=status)

    def _set(self, subscriber_id: int, status: str, stamp: str, old: str, source: str,
             detail: str = "") -> None:
        self._db.execute("UPDATE subscribers SET status = ?, updated = ? WHERE id = ?",
                        (status, stamp, subscriber_id))
        events.record(self._db, subscriber_id, stamp, events.STATUS, old, status, source, detail)

    def _topics_changed(self, known: Subscriber, chosen: tuple[str, ...], stamp: str,
                        source: str) -> None:
        if known.categories != chosen:
            events.record(self._db, known.id, stamp, events.TOPICS, ";".join(known.categories),
                          ";".join(chosen), source)

    # Reads for the web pages: one snapshot, and no write can happen in it.
    def reading(self) -> AbstractContextManager[None]:
        return reading(self._db)

    def history(self, subscriber_id: int) -> list[events.Event]:
        return events.history(self._db, subscriber_id)

    def consents(self) -> dict[int, events.Consent]:
        return events.consents(self._db)
