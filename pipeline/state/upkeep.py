"""The ledger's upkeep: erasures (SubscriberBook.erase deletes the rows), pruning delivery
details past the retention period, scrubbing freed pages and the WAL, times stored from a
wrong clock, and backups. Like the rest of the state package, the only code that touches
these rows."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.state.connection import (
    LEDGER_NAME,
    PRIVATE_FILE,
    connect_read_only,
    make_private,
    migrate,
    transaction,
)
from pipeline.state.ledger import Ledger

FUTURE_SLACK = timedelta(days=1)  # a stored time further ahead than this came from a wrong clock
_FINAL = "('sent', 'failed', 'withdrawn')"


def record_erased_files(ledger: Ledger, count: int) -> None:
    with transaction(ledger._db):
        ledger._db.execute("UPDATE erasures SET files = ? WHERE id = (SELECT max(id) "
                           "FROM erasures)", (count,))


def erasure_count(ledger: Ledger) -> int:
    return ledger._db.execute("SELECT count(*) FROM erasures").fetchone()[0]


def scrub(ledger: Ledger) -> bool:
    """Leave no copy of deleted rows behind: rebuild the file (pages freed before secure
    deletion was on may still hold old bytes), then copy the WAL into it and truncate it to
    nothing. False if a reader kept the WAL from being truncated (try again later)."""
    ledger._db.execute("VACUUM")
    busy, _, _ = ledger._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return busy == 0


@dataclass
class Pruned:
    deliveries: int = 0
    messages: int = 0
    notices: int = 0
    runs: int = 0


def prune(ledger: Ledger, before: datetime) -> Pruned:
    """Delete per-message details of delivered digests, finished notices and run records
    older than `before` (a refused address not yet marked bounced is kept until it is)."""
    db, stamp = ledger._db, before.astimezone(UTC).isoformat()
    with transaction(db):
        pruned = Pruned(
            deliveries=db.execute(
                f"DELETE FROM deliveries WHERE state IN {_FINAL} AND last_attempt < ? "
                "AND bounce != 'to mark' AND digest_id IN "
                "(SELECT id FROM digests WHERE delivered = 1)", (stamp,)).rowcount)
        pruned.messages = db.execute(
            "DELETE FROM messages WHERE written < ? AND digest_id IN "
            "(SELECT id FROM digests WHERE delivered = 1) AND NOT EXISTS (SELECT 1 FROM "
            "deliveries x WHERE x.digest_id = messages.digest_id "
            "AND x.address = messages.address)", (stamp,)).rowcount
        pruned.notices = db.execute(
            f"DELETE FROM notices WHERE state IN {_FINAL} AND coalesce(last_attempt, written) "
            "< ?", (stamp,)).rowcount
        pruned.runs = db.execute(
            "DELETE FROM runs WHERE started < ? AND id < (SELECT max(id) FROM runs)",
            (stamp,)).rowcount
    return pruned


def kept(ledger: Ledger) -> dict[str, int]:
    """How many rows of personal data the ledger keeps: subscribers, messages, deliveries,
    notices."""
    found = {}
    for table in ("subscribers", "messages", "deliveries", "notices"):
        try:
            found[table] = ledger._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        except sqlite3.OperationalError:  # a read-only look at a ledger not yet migrated
            found[table] = 0
    return found


def times_ahead(ledger: Ledger, now: datetime) -> list[str]:
    """Stored times further ahead of `now` than a day: left by a run or send on a machine
    whose clock was wrong. Described for the operator; empty when there are none."""
    found = []
    limit = now + FUTURE_SLACK
    for what, sql in (
        ("a digest", "SELECT max(created) FROM digests"),
        ("a run", "SELECT max(started) FROM runs"),
        ("a delivery's next attempt", "SELECT max(next_attempt) FROM deliveries"),
        ("a confirmation's next attempt", "SELECT max(next_attempt) FROM notices"),
    ):
        try:
            stamp = ledger._db.execute(sql).fetchone()[0]
        except sqlite3.OperationalError:  # a read-only look at a ledger not yet migrated
            continue
        if stamp and (when := datetime.fromisoformat(stamp)) > limit:
            days = (when - now).days
            found.append(f"{what} is dated {when:%Y-%m-%d %H:%M %Z}, {days} days ahead of "
                         "this machine's clock")
    return found


def backup(state_dir: Path, target: Path) -> None:
    """A consistent copy of the ledger in `target` (0600), made with SQLite's online backup
    while runs and sends may go on; written beside it and renamed into place."""
    source = connect_read_only(state_dir)
    if not (state_dir / LEDGER_NAME).exists():
        source.close()
        raise FileNotFoundError(state_dir / LEDGER_NAME)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    try:
        copy = sqlite3.connect(tmp)
        try:
            source.backup(copy)
            copy.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        finally:
            copy.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        source.close()


def check_backup(path: Path) -> list[str]:
    """Why the file cannot be restored as a ledger; empty if it can."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            problems = [r[0] for r in db.execute("PRAGMA integrity_check") if r[0] != "ok"]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return [f"not an SQLite database ({exc})"]
    if not {"_migrations", "digests", "messages"} <= tables:
        return ["not a newsletter ledger (no digests or messages table)"]
    return problems


def restore(state_dir: Path, source: Path, live: Ledger) -> None:
    """Replace the site's ledger with the backup's contents (through the open, locked
    connection `live`, so its WAL stays consistent), then bring it to the current schema."""
    backup_db = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        backup_db.backup(live._db)
    finally:
        backup_db.close()
    migrate(live._db)
    make_private(state_dir / LEDGER_NAME)
