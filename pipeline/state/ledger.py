"""The only code that touches SQLite (with ledger_migrations.py, the schema, and
ledger_subscribers.py, the list): digests, the entries in them, the messages written.

A digest is frozen when created: its entries, subject and rendered HTML and text are stored, so
finishing it after a crash produces the same messages the first attempt would have.
Every change is recorded after its effect (files first, then the row).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.models import Digest, DigestListing
from pipeline.entries.cache import CachedEntry
from pipeline.state.migrations import MIGRATIONS

if TYPE_CHECKING:
    from pipeline.core.deliveries import Delivery, QueuedMessage

LEDGER_NAME = "state.sqlite3"


class Ledger:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def sent_slugs(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT slug FROM digest_entries")}

    def open_digest(self) -> Digest | None:
        """A digest that was built but not yet written to every subscriber."""
        row = self.db.execute(
            "SELECT id FROM digests WHERE complete = 0 ORDER BY id LIMIT 1").fetchone()
        return self.digest(row[0]) if row else None

    def last_digest(self) -> Digest | None:
        row = self.db.execute("SELECT max(id) FROM digests").fetchone()
        return self.digest(row[0]) if row and row[0] else None

    def digest(self, digest_id: int) -> Digest:
        row = self.db.execute(
            "SELECT id, key, created, subject, html, text FROM digests WHERE id = ?",
            (digest_id,)).fetchone()
        slugs = tuple(r[0] for r in self.db.execute(
            "SELECT slug FROM digest_entries WHERE digest_id = ? AND position IS NOT NULL "
            "ORDER BY position", (digest_id,)))
        return Digest(id=row[0], key=row[1], created=datetime.fromisoformat(row[2]),
                      subject=row[3], html=row[4], text=row[5], slugs=slugs)

    def digest_listing(self) -> list[DigestListing]:
        """Every digest, newest first, for the archive page."""
        rows = self.db.execute(
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
        with transaction(self.db):
            cursor = self.db.execute(
                "INSERT INTO digests (key, created, subject, html, text) VALUES (?, ?, ?, ?, ?)",
                (secrets.token_hex(16), created.isoformat(), subject, html, text))
            digest_id = cursor.lastrowid
            assert digest_id is not None
            self.db.executemany(
                "INSERT INTO digest_entries (slug, digest_id, position) VALUES (?, ?, ?)",
                [(slug, digest_id, n) for n, slug in enumerate(slugs)]
                + [(slug, digest_id, None) for slug in passed_over])
        return self.digest(digest_id)

    def rendition(self, digest: Digest, slugs: tuple[str, ...]) -> Digest | None:
        """The digest as frozen for a segment that gets only these entries."""
        row = self.db.execute(
            "SELECT subject, html, text FROM digest_renditions WHERE digest_id = ? AND slugs = ?",
            (digest.id, " ".join(slugs))).fetchone()
        return None if row is None else Digest(digest.id, digest.key, digest.created, *row,
                                               slugs=slugs)

    def store_rendition(self, rendition: Digest) -> None:
        with transaction(self.db):
            self.db.execute("INSERT OR IGNORE INTO digest_renditions VALUES (?, ?, ?, ?, ?)",
                            (rendition.id, " ".join(rendition.slugs), rendition.subject,
                             rendition.html, rendition.text))

    def rendition_count(self, digest_id: int) -> int:
        return self.db.execute("SELECT count(*) FROM digest_renditions WHERE digest_id = ?",
                               (digest_id,)).fetchone()[0]

    def written_addresses(self, digest_id: int) -> set[str]:
        return {r[0] for r in self.db.execute(
            "SELECT address FROM messages WHERE digest_id = ?", (digest_id,))}

    def record_messages(self, digest_id: int, written: datetime,
                        rows: Iterable[tuple[str, str]]) -> None:
        """Record (address, filename) pairs whose files are already durable in the outbox."""
        with transaction(self.db):
            self.db.executemany(
                "INSERT OR IGNORE INTO messages (digest_id, address, filename, written) "
                "VALUES (?, ?, ?, ?)",
                [(digest_id, address, name, written.isoformat()) for address, name in rows])

    def complete_digest(self, digest_id: int) -> None:
        with transaction(self.db):
            self.db.execute("UPDATE digests SET complete = 1 WHERE id = ?", (digest_id,))

    def start_run(self, started: datetime) -> int:
        with transaction(self.db, durable=False):
            cursor = self.db.execute("INSERT INTO runs (started, outcome) VALUES (?, 'running')",
                                     (started.isoformat(),))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def finish_run(self, run_id: int, finished: datetime, outcome: str, detail: str) -> None:
        with transaction(self.db, durable=False):
            self.db.execute("UPDATE runs SET finished = ?, outcome = ?, detail = ? WHERE id = ?",
                            (finished.isoformat(), outcome, detail, run_id))

    def last_run(self) -> tuple[str, str | None, str, str] | None:
        """(started, finished, outcome, detail) of the newest run."""
        return self.db.execute(
            "SELECT started, finished, outcome, detail FROM runs ORDER BY id DESC LIMIT 1"
        ).fetchone()

    def cached_entries(self) -> dict[str, CachedEntry]:
        return {row[0]: CachedEntry(*row[1:]) for row in self.db.execute(
            "SELECT path, size, mtime_ns, checksum, payload FROM entry_cache")}

    def store_entries(self, rows: dict[str, CachedEntry]) -> None:
        with transaction(self.db, durable=False):
            self.db.executemany(
                "INSERT OR REPLACE INTO entry_cache VALUES (?, ?, ?, ?, ?)",
                [(path, e.size, e.mtime_ns, e.checksum, e.payload) for path, e in rows.items()])

    def get_state(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_state(self, key: str, value: str) -> None:
        with transaction(self.db, durable=False):
            self.db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, value))

    def message_count(self, digest_id: int) -> int:
        return self.db.execute(
            "SELECT count(*) FROM messages WHERE digest_id = ?", (digest_id,)).fetchone()[0]

    def queued_messages(self) -> list[QueuedMessage]:
        """Recorded messages not yet sent or failed, oldest digest first."""
        from pipeline.core.deliveries import QueuedMessage

        if not self._has_deliveries():  # read-only, not yet migrated: nothing was sent
            return [QueuedMessage(*row) for row in self.db.execute(
                "SELECT digest_id, address, filename FROM messages ORDER BY digest_id, filename")]
        return [QueuedMessage(d, a, f, n or 0, datetime.fromisoformat(t) if t else None)
                for d, a, f, n, t in self.db.execute(
                    "SELECT m.digest_id, m.address, m.filename, x.attempts, x.next_attempt "
                    "FROM digests g JOIN messages m ON m.digest_id = g.id "
                    "LEFT JOIN deliveries x USING (digest_id, address) "
                    "WHERE g.delivered = 0 AND (x.state IS NULL OR x.state = 'deferred') "
                    "ORDER BY m.digest_id, m.filename")]

    def _has_deliveries(self) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'deliveries'"
                               ).fetchone() is not None

    def record_deliveries(self, deliveries: Iterable[Delivery]) -> None:
        """Record outcomes whose files were already moved (sent/, failed/) or left in new/."""
        with transaction(self.db):
            self.db.executemany(
                "INSERT INTO deliveries (digest_id, address, state, attempts, last_attempt, "
                "next_attempt, reply, bounce) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (digest_id, address) DO UPDATE SET state = excluded.state, "
                "attempts = excluded.attempts, last_attempt = excluded.last_attempt, "
                "next_attempt = excluded.next_attempt, reply = excluded.reply, "
                "bounce = excluded.bounce",
                [(d.message.digest_id, d.message.address, d.state, d.attempts,
                  d.when.isoformat(), d.next_attempt.isoformat() if d.next_attempt else None,
                  d.reply, "to mark" if d.bouncing else "") for d in deliveries])

    def unmarked_bounces(self) -> list[tuple[int, str]]:
        """(digest id, address) of refused addresses not yet marked in the subscriber list."""
        return self.db.execute(
            "SELECT digest_id, address FROM deliveries WHERE bounce = 'to mark'").fetchall()

    def bounces_marked(self, keys: Iterable[tuple[int, str]]) -> None:
        with transaction(self.db):
            self.db.executemany("UPDATE deliveries SET bounce = 'marked' "
                                "WHERE digest_id = ? AND address = ?", list(keys))

    def close_delivered_digests(self) -> None:
        """Mark complete digests whose every message is sent or failed as delivered."""
        with transaction(self.db):
            self.db.execute(
                "UPDATE digests SET delivered = 1 WHERE complete = 1 AND delivered = 0 "
                "AND NOT EXISTS (SELECT 1 FROM messages m LEFT JOIN deliveries x "
                "USING (digest_id, address) WHERE m.digest_id = digests.id "
                "AND (x.state IS NULL OR x.state = 'deferred'))")

    def delivery_counts(self, digest_id: int) -> dict[str, int]:
        """{state: count} of a digest's messages handed to the relay at least once."""
        if not self._has_deliveries():  # a read-only look at a ledger not yet migrated
            return {}
        return dict(self.db.execute(
            "SELECT state, count(*) FROM deliveries WHERE digest_id = ? GROUP BY state",
            (digest_id,)).fetchall())


@contextmanager
def open_ledger(state_dir: Path, *, read_only: bool = False) -> Iterator[Ledger]:
    """The site's ledger, migrated to the current schema; read_only opens without writing
    anything (an empty in-memory ledger if the site has none yet)."""
    if read_only:
        path = state_dir / LEDGER_NAME
        db = (sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
              if path.exists() else sqlite3.connect(":memory:", isolation_level=None))
        try:
            if not path.exists():
                migrate(db)
            yield Ledger(db)
        finally:
            db.close()
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(state_dir / LEDGER_NAME, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")  # see transaction()
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA busy_timeout = 10000")
        migrate(db)
        yield Ledger(db)
    finally:
        db.close()


def connect_ledger(state_dir: Path) -> Ledger:
    """A connection for a long-lived server (`serve`): no migration (the server ran them once
    at start, see open_ledger), and no busy timeout of SQLite's own: transaction() waits for the
    write lock in 1 ms steps instead, so it gets in between an import's batches at once."""
    db = sqlite3.connect(state_dir / LEDGER_NAME, isolation_level=None,
                         check_same_thread=False)
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA busy_timeout = 0")
    return Ledger(db)


@contextmanager
def reading(db: sqlite3.Connection) -> Iterator[None]:
    """A read-only transaction: one consistent snapshot, and SQLite refuses any write in it
    (WAL: it never waits for a writer, and no writer waits for it)."""
    db.execute("PRAGMA query_only = ON")
    try:
        _begin(db, "BEGIN DEFERRED")
        try:
            yield
        finally:
            db.execute("COMMIT")
    finally:
        db.execute("PRAGMA query_only = OFF")


WRITE_PATIENCE = 10.0  # seconds a writer waits for the lock before it gives up


def _begin(db: sqlite3.Connection, statement: str) -> None:
    """BEGIN, waiting in short steps while another connection holds the write lock. SQLite's
    own busy handler backs off to 100 ms sleeps and can keep missing the brief gap between an
    import's batches; 1 ms polling does not."""
    deadline = time.monotonic() + WRITE_PATIENCE
    while True:
        try:
            db.execute(statement)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.001)


@contextmanager
def transaction(db: sqlite3.Connection, durable: bool = True) -> Iterator[None]:
    """An explicit transaction (the connection is in autocommit mode): DDL included, so a
    migration is applied whole or not at all.

    Durable ones (digests, messages, migrations) are synced to disk at commit and survive a
    power loss. The rest (run records, the entry cache, feed fingerprints) can be lost to one
    without harm, and skip the fsync that would cost a no-op cron run more than its work.
    """
    db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
    _begin(db, "BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply the migrations this database has not had yet; returns their names."""
    with transaction(db):
        db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied TEXT)")
    done = {r[0] for r in db.execute("SELECT name FROM _migrations")}
    applied = []
    for name, step in MIGRATIONS:
        if name in done:
            continue
        with transaction(db):
            step(db)
            db.execute("INSERT INTO _migrations VALUES (?, datetime('now'))", (name,))
        applied.append(name)
    return applied
