"""The ledger's subscriber table (kept apart from ledger.py only for length: like it, the only
code that touches these rows). Every change is one durable transaction: an unsubscribe must
survive a power cut as surely as a digest does."""

from __future__ import annotations

import contextlib
import hashlib
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice

from pipeline.core.models import (
    ACTIVE,
    BOUNCED,
    PENDING,
    STATUSES,
    UNSUBSCRIBED,
    Subscriber,
    email_key,
    parse_categories,
    segment_key,
)
from pipeline.state import events
from pipeline.state.ledger import Ledger, reading, transaction

_COLUMNS = "id, email, name, categories, status"
PAGE = 2000  # subscribers read per query while streaming the list
_CHUNK = 500  # keys per query when looking up statuses (SQLite allows 999 parameters)
# An import commits after this much work, and pauses briefly between batches: no other writer
# (an unsubscribe from `serve`) waits longer than about this for the lock. With the commit's
# sync (20 ms typically, up to ~100 ms when the disk is busy) a batch stays under 200 ms.
BATCH_SECONDS = 0.08
BATCH_PAUSE = 0.005
CHUNK = 500  # rows looked up, inserted and recorded together within a batch


# A row of a file to import, as import_rows takes it fastest: (email_key, email, name,
# categories, status). A plain tuple: a large list makes a million of them, and a frozen
# Subscriber costs ~1.1 µs to make, a NamedTuple 0.2 µs, a tuple 0.03 µs.
ImportRow = tuple[str, str, str, tuple[str, ...], str]


def _import_row(row: Subscriber | ImportRow) -> ImportRow:
    if row.__class__ is tuple:
        return row  # type: ignore[return-value]
    assert isinstance(row, Subscriber)
    return (email_key(row.email), row.email, row.name, row.categories, row.status)


@dataclass
class Erasure:
    subscriber_id: int | None  # None: no longer on the list (only old messages were left)
    filenames: set[str]  # the outbox files of their messages and confirmations
    ledger_rows: int  # rows deleted: subscribers, messages, deliveries, notices


@dataclass
class ImportReport:
    added: int = 0
    pending: list[Subscriber] = field(default_factory=list)  # added, awaiting confirmation
    reactivated: int = 0
    status_changed: int = 0  # active → unsubscribed/bounced, as the file says
    kept_out: list[str] = field(default_factory=list)  # left the list; not re-activated
    unchanged: int = 0
    longest_batch: float = 0.0  # seconds the longest batch held the write lock, its commit too


def _row(row: tuple) -> Subscriber:
    return Subscriber(id=row[0], email=row[1], name=row[2],
                      categories=tuple(c for c in row[3].split(";") if c), status=row[4])


class _Prefetch:
    """Rows read a chunk ahead in a thread of their own (parsing a file holds the GIL, while
    SQLite lets go of it as it writes: the two overlap). Whatever reading raises is raised by
    next(); leaving stops the reader."""

    def __init__(self, rows: Iterable[Subscriber | ImportRow]) -> None:
        self._rows = iter(rows)
        self._ready: queue.Queue[list[ImportRow] | BaseException] = queue.Queue(maxsize=16)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="import-reader", daemon=True)

    def __enter__(self) -> _Prefetch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._ready.get_nowait()  # unblock a reader waiting to put
            self._thread.join(0.01)

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = [r if r.__class__ is tuple else _import_row(r)
                         for r in islice(self._rows, CHUNK)]
                self._put(chunk)
                if len(chunk) < CHUNK:
                    return
        except BaseException as exc:  # handed to the importing thread
            self._put(exc)

    def _put(self, item: list[ImportRow] | BaseException) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._ready.put(item, timeout=0.1)
                return

    def next(self) -> list[ImportRow]:
        item = self._ready.get()
        if isinstance(item, BaseException):
            raise item
        return item


class _Merge:
    """An import's decisions, a chunk of rows at a time: one query finds the known addresses,
    new ones are inserted with one statement, status changes and their audit rows with one
    each. Rows are decided in order, as one at a time would be (a later row for an address
    added earlier in the same chunk sees it)."""

    def __init__(self, db: sqlite3.Connection, report: ImportReport, stamp: str,
                 reactivate: bool, double_opt_in: bool, source: str, detail: str) -> None:
        if source not in events.SOURCES:
            raise ValueError(f"unknown change source {source!r}")
        self.db, self.report, self.stamp = db, report, stamp
        self.reactivate, self.double_opt_in = reactivate, double_opt_in
        self.source, self.detail = source, detail
        self.inserts: list[tuple[str, str, str, str, str, str]] = []  # (key, email, …, status)
        self.changes: list[tuple[int, str, str]] = []  # (id, old, new)
        self.topics: dict[tuple[str, ...], tuple[str, str]] = {}  # → (categories, segment)

    def chunk(self, rows: list[ImportRow]) -> None:
        if not rows:
            return
        keys = [r[0] for r in rows]
        # email_key → (id, None until inserted; status; the address as the list has it)
        known: dict[str, tuple[int | None, str, str]] = {}
        for start in range(0, len(keys), 500):
            part = keys[start:start + 500]
            known.update((k, (i, st, e)) for k, i, st, e in self.db.execute(
                "SELECT email_key, id, status, email FROM subscribers WHERE email_key IN "
                f"({','.join('?' * len(part))})", part))
        report = self.report
        pending_first = self.double_opt_in
        for key, address, name, categories, status in rows:
            found = known.get(key)
            if found is None:
                if pending_first and status == ACTIVE:
                    status = PENDING
                self.inserts.append((key, address, name, *self._topics(categories), status))
                known[key] = (None, status, address)
                continue
            sid, old, email = found
            if status in (UNSUBSCRIBED, BOUNCED) and old != status:
                new = status
                report.status_changed += 1
            elif status == ACTIVE and old in (UNSUBSCRIBED, BOUNCED):
                if not self.reactivate:
                    report.kept_out.append(email)
                    continue
                new = ACTIVE
                report.reactivated += 1
            else:
                report.unchanged += 1
                continue
            if sid is None:  # added earlier in this chunk: its id comes with the insert
                sid = self._flush_inserts()[key]
            self.changes.append((sid, old, new))
            known[key] = (sid, new, email)
        self._flush_inserts()
        self._flush_changes()

    def _topics(self, chosen: tuple[str, ...]) -> tuple[str, str]:
        found = self.topics.get(chosen)
        if found is None:
            categories = parse_categories(chosen)
            found = (";".join(categories), segment_key(categories))
            if len(self.topics) < 10_000:
                self.topics[chosen] = found
        return found

    def _flush_inserts(self) -> dict[str, int]:
        """Insert the new rows and record their audit rows; email_key → id."""
        rows, self.inserts = self.inserts, []
        if not rows:
            return {}
        stamp = self.stamp
        # ?7 twice: created and updated are the import's time (one value bound per row).
        self.db.executemany(
            "INSERT INTO subscribers (email_key, email, name, categories, segment, status, "
            "created, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            [(*r, stamp) for r in rows])
        # Under the write lock an INTEGER PRIMARY KEY takes max(id) + 1 for each row in turn:
        # the ids are the last one's and those before it (checked at both ends; else asked).
        last = self.db.execute("SELECT last_insert_rowid()").fetchone()[0]
        first = last - len(rows) + 1
        ends = dict(self.db.execute("SELECT id, email_key FROM subscribers WHERE id IN (?, ?)",
                                    (first, last)).fetchall())
        if ends.get(first) == rows[0][0] and ends.get(last) == rows[-1][0]:
            ids = {r[0]: first + n for n, r in enumerate(rows)}
            # Their audit rows in one statement, from the rows just inserted (ids first..last,
            # nothing else: the lock is ours), instead of 500 rows bound from Python.
            self.db.execute(
                "INSERT INTO subscriber_events (subscriber_id, at, change, old, new, source, "
                "detail) SELECT id, ?, ?, '', status, ?, ? FROM subscribers "
                "WHERE id BETWEEN ? AND ? ORDER BY id",
                (stamp, events.STATUS, self.source, self.detail, first, last))
        else:
            ids = self._ids(rows)
            events.record_many(self.db, [(ids[r[0]], stamp, events.STATUS, "", r[5],
                                          self.source, self.detail) for r in rows])
        self.report.added += len(rows)
        self.report.pending.extend(
            Subscriber(id=ids[key], email=email, name=name,
                       categories=tuple(c for c in categories.split(";") if c), status=status)
            for key, email, name, categories, _, status in rows if status == PENDING)
        return ids

    def _ids(self, rows: list[tuple[str, str, str, str, str, str]]) -> dict[str, int]:
        ids: dict[str, int] = {}
        for start in range(0, len(rows), 500):
            part = [r[0] for r in rows[start:start + 500]]
            ids.update(self.db.execute(
                "SELECT email_key, id FROM subscribers WHERE email_key IN "
                f"({','.join('?' * len(part))})", part).fetchall())
        return ids

    def _flush_changes(self) -> None:
        changes, self.changes = self.changes, []
        if not changes:
            return
        self.db.executemany("UPDATE subscribers SET status = ?, updated = ? WHERE id = ?",
                            [(new, self.stamp, sid) for sid, _, new in changes])
        events.record_many(self.db, [(sid, self.stamp, events.STATUS, old, new, self.source,
                                      self.detail) for sid, old, new in changes])


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
        """Merge rows from a file, in batches of about BATCH_SECONDS each (a million rows
        never hold the write lock for long; an interrupted import is resumed by importing the
        same file again, which changes nothing twice).

        New addresses are added (as pending, with double opt-in). For known ones the file can
        only take someone off the list (unsubscribed, bounced): a person who left is never
        put back by a file unless `reactivate`, and their chosen name and categories stay.
        """
        report = ImportReport()
        merge = _Merge(self._db, report, now.isoformat(), reactivate, double_opt_in, source,
                       detail)
        with _Prefetch(rows) as pending:
            # The first rows are read before the lock is taken: a file's first pass (its
            # opt-outs) runs then, outside any batch.
            chunk = pending.next()
            budget = BATCH_SECONDS
            while chunk:
                with transaction(self._db):
                    started = time.monotonic()
                    while chunk:
                        merge.chunk(chunk)
                        chunk = pending.next() if len(chunk) == CHUNK else []
                        if time.monotonic() - started > budget:
                            break
                    committing = time.monotonic()
                ended = time.monotonic()
                report.longest_batch = max(report.longest_batch, ended - started)
                # The commit's sync holds the lock too: the next batch leaves room for it.
                budget = max(BATCH_SECONDS / 3, BATCH_SECONDS - (ended - committing))
                if chunk:
                    time.sleep(BATCH_PAUSE)  # let a waiting writer in
        return report

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
