"""The SQLite ledger on a real file: migrations, claimed entries, frozen digests."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import NOW
from pipeline.core.config import Config
from pipeline.state.ledger import LEDGER_NAME, MIGRATIONS, migrate, open_ledger

HTML = ('<!doctype html>\n<html lang="en"><body><p>Café — “quotes” 🫀 &amp; @@EMAIL@@</p>'
        "</body></html>\n")
TEXT = "CAFÉ — “QUOTES” 🫀\n\n  * A takeaway.\n\nUnsubscribe:\n@@UNSUBSCRIBE_URL@@\n"


def migration_rows(state_dir: Path) -> list[str]:
    with sqlite3.connect(state_dir / LEDGER_NAME) as db:
        return [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY name")]


def test_migrations_apply_once(config: Config) -> None:
    with open_ledger(config.state_dir):
        pass
    assert (config.state_dir / LEDGER_NAME).is_file()
    assert migration_rows(config.state_dir) == sorted(name for name, _ in MIGRATIONS)
    with open_ledger(config.state_dir) as ledger:
        assert migrate(ledger.db) == []  # re-opened: nothing left to apply
    assert migration_rows(config.state_dir) == sorted(name for name, _ in MIGRATIONS)


def test_a_fresh_database_gets_every_migration_in_order(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "fresh.sqlite3", isolation_level=None)
    try:
        assert migrate(db) == [name for name, _ in MIGRATIONS]
        assert migrate(db) == []
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"digests", "digest_entries", "messages", "_migrations"} <= tables
    finally:
        db.close()


def test_reopening_keeps_the_data(config: Config) -> None:
    with open_ledger(config.state_dir) as ledger:
        digest = ledger.create_digest(NOW, "Subject", HTML, TEXT, ["a", "b"])
    with open_ledger(config.state_dir) as ledger:
        assert ledger.sent_slugs() == {"a", "b"}
        assert ledger.last_digest() == digest


def test_an_entry_cannot_be_in_two_digests(config: Config) -> None:
    with open_ledger(config.state_dir) as ledger:
        first = ledger.create_digest(NOW, "First", HTML, TEXT, ["a", "b"])
        with pytest.raises(sqlite3.IntegrityError):
            ledger.create_digest(NOW + timedelta(days=7), "Second", HTML, TEXT, ["c", "b"])
        # The failed digest left nothing behind: not its row, not its other entries.
        assert ledger.db.execute("SELECT count(*) FROM digests").fetchone()[0] == 1
        assert ledger.sent_slugs() == {"a", "b"}
        assert ledger.last_digest() == first
        assert ledger.open_digest() == first


def test_passed_over_entries_are_claimed_but_not_listed(config: Config) -> None:
    with open_ledger(config.state_dir) as ledger:
        digest = ledger.create_digest(NOW, "S", HTML, TEXT, ["new-1", "new-2"], ["old-1"])
        assert digest.slugs == ("new-1", "new-2")
        assert ledger.sent_slugs() == {"new-1", "new-2", "old-1"}
        with pytest.raises(sqlite3.IntegrityError):
            ledger.create_digest(NOW, "S", HTML, TEXT, ["old-1"])


def test_the_frozen_digest_comes_back_identical(config: Config) -> None:
    created = NOW.astimezone(config.timezone) + timedelta(hours=3, microseconds=250)
    slugs = ["z-last-alphabetically", "a-first", "m-middle"]
    with open_ledger(config.state_dir) as ledger:
        made = ledger.create_digest(created, "Journal: Café — “quotes”", HTML, TEXT, slugs)
        assert made.id == 1 and len(made.key) == 32
    with open_ledger(config.state_dir) as ledger:
        again = ledger.digest(made.id)
    assert again == made
    assert again.html == HTML and again.text == TEXT
    assert again.subject == "Journal: Café — “quotes”"
    assert again.created == created and again.created.utcoffset() == created.utcoffset()
    assert again.slugs == tuple(slugs)  # in digest order, not alphabetical


def test_digest_keys_are_unique(config: Config) -> None:
    with open_ledger(config.state_dir) as ledger:
        keys = {ledger.create_digest(NOW, "S", HTML, TEXT, [f"slug-{n}"]).key for n in range(5)}
    assert len(keys) == 5


def test_messages_are_recorded_once_and_complete_closes_the_digest(config: Config) -> None:
    with open_ledger(config.state_dir) as ledger:
        digest = ledger.create_digest(NOW, "S", HTML, TEXT, ["a"])
        ledger.record_messages(digest.id, NOW, [("ada@example.org", "one.eml")])
        ledger.record_messages(digest.id, NOW, [("ada@example.org", "one.eml"),
                                                ("grace@example.org", "two.eml")])
        assert ledger.message_count(digest.id) == 2
        assert ledger.written_addresses(digest.id) == {"ada@example.org", "grace@example.org"}
        assert ledger.open_digest() == digest
        ledger.complete_digest(digest.id)
        assert ledger.open_digest() is None


def test_integrity_check_is_ok_after_use(config: Config) -> None:
    with open_ledger(config.state_dir) as ledger:
        digest = ledger.create_digest(NOW, "S", HTML, TEXT, ["a", "b"], ["c"])
        ledger.record_messages(digest.id, NOW, [(f"p{n}@example.org", f"{n}.eml")
                                                for n in range(50)])
        ledger.complete_digest(digest.id)
        assert ledger.db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert ledger.db.execute("PRAGMA foreign_key_check").fetchall() == []
    with sqlite3.connect(config.state_dir / LEDGER_NAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_message_for_an_unknown_digest_is_refused(config: Config) -> None:
    with open_ledger(config.state_dir) as ledger, pytest.raises(sqlite3.IntegrityError):
        ledger.record_messages(999, NOW, [("ada@example.org", "x.eml")])
