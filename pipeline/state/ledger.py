"""The ledger: digests, the entries in them, the messages written and what became of them,
runs, the entry cache and small notes. The state package is the only code that touches SQLite
(connection.py opens it, migrations.py is the schema, subscribers.py the list, notices.py the
confirmations).

A digest is frozen when created: its entries, subject and rendered HTML and text are stored, so
finishing it after a crash produces the same messages the first attempt would have.
Every change is recorded after its effect (files first, then the row).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.models import Article, CachedEntry, Digest, DigestListing
from pipeline.state.connection import (
    LEDGER_NAME,
    connect,
    connect_read_only,
    connect_server,
    has_table,
    migrate,
    reading,
    transaction,
)
from pipeline.state.migrations import MIGRATIONS

if TYPE_CHECKING:
    from pipeline.core.deliveries import Delivery, QueuedMessage

QUEUE_PAGE = 5000  # queued messages read at a time (queued_pages)

__all__ = ["LEDGER_NAME", "MIGRATIONS", "DeliveryRecord", "Ledger", "connect_ledger", "migrate",
           "open_ledger", "reading", "transaction"]


@dataclass(frozen=True)
class DeliveryRecord:
    """What the ledger knows of one digest message handed to the relay: its latest outcome."""

    digest_id: int
    address: str
    state: str  # deferred, sent, failed or withdrawn
    attempts: int
    next_attempt: datetime | None
    reply: str


class Ledger:
    """The site's ledger. Its connection is private to the state package (notices.py,
    subscribers.py and the other modules here share it); everyone else calls methods."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def sent_slugs(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT slug FROM digest_entries")}

    def unsent(self, articles: list[Article], limit: int) -> tuple[list[Article], list[Article]]:
        """(the next digest's entries, older ones passed over by the limit), newest first, of
        `articles` (newest first) that no digest has claimed yet."""
        sent = self.sent_slugs()
        waiting = [a for a in articles if a.slug not in sent]
        return waiting[:limit], waiting[limit:]

    def claimed_slugs(self, digest_id: int) -> set[str]:
        """Every entry a digest claimed: those in it and those it passed over."""
        return {r[0] for r in self._db.execute(
            "SELECT slug FROM digest_entries WHERE digest_id = ?", (digest_id,))}

    def digest_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM digests").fetchone()[0]

    def is_delivered(self, digest_id: int) -> bool:
        """Whether every message of the (complete) digest was sent, failed or withdrawn."""
        row = self._db.execute("SELECT delivered FROM digests WHERE id = ?",
                               (digest_id,)).fetchone()
        return bool(row and row[0])

    def open_digest(self) -> Digest | None:
        """A digest that was built but not yet written to every subscriber."""
        row = self._db.execute(
            "SELECT id FROM digests WHERE complete = 0 ORDER BY id LIMIT 1").fetchone()
        return self.digest(row[0]) if row else None

    def last_digest(self) -> Digest | None:
        row = self._db.execute("SELECT max(id) FROM digests").fetchone()
        return self.digest(row[0]) if row and row[0] else None

    def digest(self, digest_id: int) -> Digest:
        row = self._db.execute(
            "SELECT id, key, created, subject, html, text FROM digests WHERE id = ?",
            (digest_id,)).fetchone()
        slugs = tuple(r[0] for r in self._db.execute(
            "SELECT slug FROM digest_entries WHERE digest_id = ? AND position IS NOT NULL "
            "ORDER BY position", (digest_id,)))
        return Digest(id=row[0], key=row[1], created=datetime.fromisoformat(row[2]),
                      subject=row[3], html=row[4], text=row[5], slugs=slugs)

    def digest_listing(self) -> list[DigestListing]:
        """Every digest, newest first, for the archive page."""
        rows = self._db.execute(
            "SELECT d.id, d.created, d.subject, lead.slug, n.entries FROM digests d "
            "JOIN digest_entries lead ON lead.digest_id = d.id AND lead.position = 0 "
            "JOIN (SELECT digest_id, count(*) AS entries FROM digest_entries "
            "      WHERE position IS NOT NULL GROUP BY digest_id) n ON n.digest_id = d.id "
            "ORDER BY d.id DESC")
        return [DigestListing(row[0], datetime.fromisoformat(row[1]), row[2], row[3], row[4])
                for row in rows]

    def create_digest(self, created: datetime, subject: str, html: str, text: str,
                      slugs: Iterable[str], passed_over: Iterable[str] = ()) -> Digest:
        """Freeze a rendered digest and claim its entries (and those passed over), at once."""
        import secrets  # the digest's key, in Message-IDs: random, never reused
        with transaction(self._db):
            cursor = self._db.execute(
                "INSERT INTO digests (key, created, subject, html, text) VALUES (?, ?, ?, ?, ?)",
                (secrets.token_hex(16), created.isoformat(), subject, html, text))
            digest_id = cursor.lastrowid
            assert digest_id is not None
            self._db.executemany(
                "INSERT INTO digest_entries (slug, digest_id, position) VALUES (?, ?, ?)",
                [(slug, digest_id, n) for n, slug in enumerate(slugs)]
                + [(slug, digest_id, None) for slug in passed_over])
        return self.digest(digest_id)

    def rendition(self, digest: Digest, slugs: tuple[str, ...]) -> Digest | None:
        """The digest as frozen for a segment that gets only these entries."""
        row = self._db.execute(
            "SELECT subject, html, text FROM digest_renditions WHERE digest_id = ? AND slugs = ?",
            (digest.id, " ".join(slugs))).fetchone()
        return None if row is None else Digest(digest.id, digest.key, digest.created, *row,
                                               slugs=slugs)

    def store_rendition(self, rendition: Digest) -> None:
        with transaction(self._db):
            self._db.execute("INSERT OR IGNORE INTO digest_renditions VALUES (?, ?, ?, ?, ?)",
                            (rendition.id, " ".join(rendition.slugs), rendition.subject,
                             rendition.html, rendition.text))

    def rendition_count(self, digest_id: int) -> int:
        return self._db.execute("SELECT count(*) FROM digest_renditions WHERE digest_id = ?",
                               (digest_id,)).fetchone()[0]

    def messages(self, digest_id: int) -> dict[str, str]:
        """address → file name of every message recorded for the digest."""
        return dict(self._db.execute(
            "SELECT address, filename FROM messages WHERE digest_id = ?", (digest_id,)))

    def written_addresses(self, digest_id: int) -> set[str]:
        return {r[0] for r in self._db.execute(
            "SELECT address FROM messages WHERE digest_id = ?", (digest_id,))}

    def record_messages(self, digest_id: int, written: datetime,
                        rows: Iterable[tuple[str, str]]) -> None:
        """Record (address, filename) pairs whose files are already durable in the outbox."""
        when = written.isoformat()
        with transaction(self._db):
            self._db.executemany(
                "INSERT OR IGNORE INTO messages (digest_id, address, filename, written) "
                "VALUES (?, ?, ?, ?)", [(digest_id, address, name, when) for address, name in rows])

    def complete_digest(self, digest_id: int) -> None:
        with transaction(self._db):
            self._db.execute("UPDATE digests SET complete = 1 WHERE id = ?", (digest_id,))

    def start_run(self, started: datetime) -> int:
        with transaction(self._db, durable=False):
            cursor = self._db.execute("INSERT INTO runs (started, outcome) VALUES (?, 'running')",
                                     (started.isoformat(),))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def finish_run(self, run_id: int, finished: datetime, outcome: str, detail: str) -> None:
        with transaction(self._db, durable=False):
            self._db.execute("UPDATE runs SET finished = ?, outcome = ?, detail = ? WHERE id = ?",
                            (finished.isoformat(), outcome, detail, run_id))

    def last_run(self) -> tuple[str, str | None, str, str] | None:
        """(started, finished, outcome, detail) of the newest run."""
        return self._db.execute(
            "SELECT started, finished, outcome, detail FROM runs ORDER BY id DESC LIMIT 1"
        ).fetchone()

    def cached_entries(self) -> dict[str, CachedEntry]:
        return {path: CachedEntry(size, mtime_ns, checksum, payload)
                for path, size, mtime_ns, checksum, payload in self._db.execute(
                    "SELECT path, size, mtime_ns, checksum, payload FROM entry_cache")}

    def store_entries(self, rows: dict[str, CachedEntry]) -> None:
        with transaction(self._db, durable=False):
            self._db.executemany(
                "INSERT OR REPLACE INTO entry_cache VALUES (?, ?, ?, ?, ?)",
                [(path, e.size, e.mtime_ns, e.checksum, e.payload) for path, e in rows.items()])

    def get_state(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_state(self, key: str, value: str) -> None:
        with transaction(self._db, durable=False):
            self._db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, value))

    def message_count(self, digest_id: int) -> int:
        return self._db.execute(
            "SELECT count(*) FROM messages WHERE digest_id = ?", (digest_id,)).fetchone()[0]

    def queued_messages(self) -> list[QueuedMessage]:
        """Recorded messages not yet sent or failed, oldest digest first (queued_pages, whole:
        for small queues; a send reads the pages)."""
        return [message for page in self.queued_pages() for message in page]

    def queued_pages(self, size: int = QUEUE_PAGE, first: int = 0
                     ) -> Iterator[list[QueuedMessage]]:
        """queued_messages a page of `size` at a time (the first of `first`, if given), by
        digest then address: each page is a query of its own that starts after the last
        page's key (keyset), so a queue of a million is never whole in memory, outcomes
        recorded between pages change nothing already read, and no message is read twice."""
        from pipeline.core.deliveries import QueuedMessage

        migrated = self._has_deliveries()  # read-only, not yet migrated: nothing was sent
        digests = [d for (d,) in self._db.execute(
            "SELECT id FROM digests WHERE delivered = 0 ORDER BY id" if migrated
            else "SELECT DISTINCT digest_id FROM messages ORDER BY digest_id")]
        query = ("SELECT m.address, m.filename, x.attempts, x.next_attempt FROM messages m "
                 "LEFT JOIN deliveries x USING (digest_id, address) "
                 "WHERE m.digest_id = ? AND m.address > ? "
                 "AND (x.state IS NULL OR x.state = 'deferred') ORDER BY m.address LIMIT ?"
                 if migrated else
                 "SELECT address, filename, 0, NULL FROM messages "
                 "WHERE digest_id = ? AND address > ? ORDER BY address LIMIT ?")
        limit = first or size
        for digest_id in digests:
            after = ""
            while rows := self._db.execute(query, (digest_id, after, limit)).fetchall():
                after = rows[-1][0]
                yield [QueuedMessage(digest_id, a, f, n or 0,
                                     datetime.fromisoformat(t) if t else None)
                       for a, f, n, t in rows]
                if len(rows) < limit:
                    break
                limit = size

    def _has_deliveries(self) -> bool:
        return has_table(self._db, "deliveries")

    def record_deliveries(self, deliveries: Iterable[Delivery]) -> None:
        """Record outcomes whose files were already moved (sent/, failed/) or left in new/."""
        with transaction(self._db):
            self._db.executemany(
                "INSERT INTO deliveries (digest_id, address, state, attempts, last_attempt, "
                "next_attempt, reply, bounce) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (digest_id, address) DO UPDATE SET state = excluded.state, "
                "attempts = excluded.attempts, last_attempt = excluded.last_attempt, "
                "next_attempt = excluded.next_attempt, reply = excluded.reply, "
                "bounce = excluded.bounce",
                [(d.message.digest_id, d.message.address, d.state, d.attempts,
                  d.when.isoformat(), d.next_attempt.isoformat() if d.next_attempt else None,
                  d.reply, "to mark" if d.bouncing else "") for d in deliveries])

    def deliveries(self, digest_id: int | None = None) -> list[DeliveryRecord]:
        """The latest outcome of each message handed to the relay (of one digest, or all),
        by digest and address."""
        if not self._has_deliveries():
            return []
        where, args = ("WHERE digest_id = ?", (digest_id,)) if digest_id is not None else ("", ())
        return [DeliveryRecord(d, a, s, n, datetime.fromisoformat(t) if t else None, r)
                for d, a, s, n, t, r in self._db.execute(
                    "SELECT digest_id, address, state, attempts, next_attempt, reply "
                    f"FROM deliveries {where} ORDER BY digest_id, address", args)]

    def unmarked_bounces(self) -> list[tuple[int, str]]:
        """(digest id, address) of refused addresses not yet marked in the subscriber list."""
        return self._db.execute(
            "SELECT digest_id, address FROM deliveries WHERE bounce = 'to mark'").fetchall()

    def bounces_marked(self, keys: Iterable[tuple[int, str]]) -> None:
        with transaction(self._db):
            self._db.executemany("UPDATE deliveries SET bounce = 'marked' "
                                "WHERE digest_id = ? AND address = ?", list(keys))

    def close_delivered_digests(self) -> None:
        """Mark complete digests whose every message is sent or failed as delivered (not
        synced at once: a power cut that undoes it leaves the next send to mark it again)."""
        with transaction(self._db, durable=False):
            self._db.execute(
                "UPDATE digests SET delivered = 1 WHERE complete = 1 AND delivered = 0 "
                "AND NOT EXISTS (SELECT 1 FROM messages m LEFT JOIN deliveries x "
                "USING (digest_id, address) WHERE m.digest_id = digests.id "
                "AND (x.state IS NULL OR x.state = 'deferred'))")

    def delivery_counts(self, digest_id: int) -> dict[str, int]:
        """{state: count} of a digest's messages handed to the relay at least once."""
        if not self._has_deliveries():  # a read-only look at a ledger not yet migrated
            return {}
        return dict(self._db.execute(
            "SELECT state, count(*) FROM deliveries WHERE digest_id = ? GROUP BY state",
            (digest_id,)).fetchall())

    def integrity_problems(self) -> list[str]:
        """What SQLite's integrity and foreign-key checks find; empty when all is well."""
        found = [r[0] for r in self._db.execute("PRAGMA integrity_check") if r[0] != "ok"]
        return found + [f"{table} row {rowid} points at a missing {parent} row"
                        for table, rowid, parent, _ in self._db.execute(
                            "PRAGMA foreign_key_check")]

    def journal_mode(self) -> str:
        return self._db.execute("PRAGMA journal_mode").fetchone()[0]

    def close(self) -> None:
        self._db.close()



@contextmanager
def open_ledger(state_dir: Path, *, read_only: bool = False) -> Iterator[Ledger]:
    """The site's ledger, migrated to the current schema; read_only opens without writing
    anything (an empty in-memory ledger if the site has none yet)."""
    db = connect_read_only(state_dir) if read_only else connect(state_dir)
    try:
        yield Ledger(db)
    finally:
        db.close()


def connect_ledger(state_dir: Path) -> Ledger:
    """A connection for a long-lived server (`serve`): see connection.connect_server."""
    return Ledger(connect_server(state_dir))
