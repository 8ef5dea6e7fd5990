"""The ledger's SQLite connection: opening it (private files, WAL, secure deletion),
transactions, and the migrations. Only the state package sees the connection."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.state.migrations import MIGRATIONS

LEDGER_NAME = "state.sqlite3"
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600  # whatever the umask: the list is personal data


def private_dir(path: Path) -> Path:
    """Create (or tighten) a folder only its owner can enter."""
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != PRIVATE_DIR:
        os.chmod(path, PRIVATE_DIR)
    return path


def make_private(*paths: Path) -> None:
    """Owner read/write only, for the files that exist (SQLite creates -wal and -shm with the
    umask's mode; the ledger's own 0600 does not carry over to them on every version)."""
    for path in paths:
        try:
            if path.stat().st_mode & 0o777 != PRIVATE_FILE:
                os.chmod(path, PRIVATE_FILE)
        except FileNotFoundError:
            pass


def ledger_files(state_dir: Path) -> list[Path]:
    path = state_dir / LEDGER_NAME
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def connect(state_dir: Path) -> sqlite3.Connection:
    """The site's ledger, read-write, migrated; the folder and files private."""
    private_dir(state_dir)
    path = state_dir / LEDGER_NAME
    if not path.exists():  # created 0600, before SQLite opens it with the umask's mode
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))
    make_private(path)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")  # see transaction()
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA busy_timeout = 10000")
        # Deleted rows (an erased address) are overwritten with zeros, not left in free pages.
        db.execute("PRAGMA secure_delete = ON")
        migrate(db)
        make_private(*ledger_files(state_dir))
    except BaseException:
        db.close()
        raise
    return db


def connect_server(state_dir: Path) -> sqlite3.Connection:
    """A connection for a long-lived server (`serve`): no migration (the server ran them once
    at start, through connect), and no busy timeout of SQLite's own: transaction() waits for
    the write lock in 1 ms steps instead, so it gets in between an import's batches at once."""
    db = sqlite3.connect(state_dir / LEDGER_NAME, isolation_level=None,
                         check_same_thread=False)
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA busy_timeout = 0")
    db.execute("PRAGMA secure_delete = ON")
    return db


def connect_read_only(state_dir: Path) -> sqlite3.Connection:
    """The ledger without writing anything: an empty in-memory one if the site has none yet."""
    path = state_dir / LEDGER_NAME
    if not path.exists():
        db = sqlite3.connect(":memory:", isolation_level=None)
        migrate(db)
        return db
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 5000")  # a writer resetting the WAL holds it briefly
    return db


def has_table(db: sqlite3.Connection, name: str) -> bool:
    """Whether the table exists: a read-only look at a ledger made by an older version, not
    yet migrated, finds no rows in a table it lacks rather than an error."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                      (name,)).fetchone() is not None


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
    One opened inside another is a savepoint: its changes are undone alone if it fails, and
    kept or lost with the outer one.
    """
    if db.in_transaction:  # inside another (group_commit.py): a savepoint, undone alone
        db.execute("SAVEPOINT inner")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK TO inner")
            db.execute("RELEASE inner")
            raise
        db.execute("RELEASE inner")
        return
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
