"""Importing a list into the ledger's subscriber table: a million rows in batches that each
hold the write lock briefly, every change with its audit row (kept apart from subscribers.py
for length; SubscriberBook.import_rows is the way in)."""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice

from pipeline.core.models import (
    ACTIVE,
    BOUNCED,
    PENDING,
    UNSUBSCRIBED,
    Subscriber,
    email_key,
    parse_categories,
    segment_key,
)
from pipeline.state import events
from pipeline.state.ledger import transaction

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
class ImportReport:
    added: int = 0
    pending: list[Subscriber] = field(default_factory=list)  # added, awaiting confirmation
    reactivated: int = 0
    status_changed: int = 0  # active → unsubscribed/bounced, as the file says
    kept_out: list[str] = field(default_factory=list)  # left the list; not re-activated
    unchanged: int = 0
    longest_batch: float = 0.0  # seconds the longest batch held the write lock, its commit too


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


def import_rows(db: sqlite3.Connection, rows: Iterable[Subscriber | ImportRow], now: datetime,
                *, reactivate: bool = False, double_opt_in: bool = False,
                source: str = "import", detail: str = "") -> ImportReport:
    """Merge rows from a file, in batches of about BATCH_SECONDS each (a million rows
    never hold the write lock for long; an interrupted import is resumed by importing the
    same file again, which changes nothing twice).

    New addresses are added (as pending, with double opt-in). For known ones the file can
    only take someone off the list (unsubscribed, bounced): a person who left is never
    put back by a file unless `reactivate`, and their chosen name and categories stay.
    """
    report = ImportReport()
    merge = _Merge(db, report, now.isoformat(), reactivate, double_opt_in, source,
                   detail)
    with _Prefetch(rows) as pending:
        # The first rows are read before the lock is taken: a file's first pass (its
        # opt-outs) runs then, outside any batch.
        chunk = pending.next()
        budget = BATCH_SECONDS
        while chunk:
            with transaction(db):
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
