"""The SQLite ledger on a real file: migrations, claimed entries, frozen digests.

The migration tests look at the database with sqlite3 itself (what the schema is, what an
older version left); every other test speaks only the ledger's methods."""

from __future__ import annotations

import email
import sqlite3
from datetime import timedelta
from email import policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import (
    NOW,
    Inbox,
    free_port,
    markdown_entry,
    smtp_server,
    use_relay,
    write_entry,
    write_template,
)
from pipeline.cli.main import cli
from pipeline.core.config import Config
from pipeline.core.deliveries import Delivery, QueuedMessage
from pipeline.delivery.send import send
from pipeline.run import run
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
    with open_ledger(config.state_dir), sqlite3.connect(config.state_dir / LEDGER_NAME,
                                                         isolation_level=None) as db:
        assert migrate(db) == []  # re-opened: nothing left to apply
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
        assert ledger.digest_count() == 1
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
        assert ledger.integrity_problems() == []
    with open_ledger(config.state_dir, read_only=True) as ledger:
        assert ledger.integrity_problems() == []
        assert ledger.journal_mode() == "wal"


def test_a_message_for_an_unknown_digest_is_refused(config: Config) -> None:
    with open_ledger(config.state_dir) as ledger, pytest.raises(sqlite3.IntegrityError):
        ledger.record_messages(999, NOW, [("ada@example.org", "x.eml")])


# Upgrades: a ledger an older version left behind (its schema made with sqlite3 by hand).

def test_after_an_upgrade_nothing_is_sent_twice(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry(title="Before the upgrade"))
    run(site)
    # An older version's state: the newest migration never ran. And new templates.
    db = sqlite3.connect(site / ".newsletter" / LEDGER_NAME)
    db.executescript("DROP TABLE runs; DELETE FROM _migrations WHERE name = 'm002_runs';")
    db.close()
    write_template(site, "digest.txt.j2",
        "NEW TEMPLATE\n{% for a in articles %}{{ a.title }}\n{% endfor %}{{ unsubscribe_url }}\n")
    report = run(site)
    assert report.written == 0 and report.digest_id is None
    write_entry(site, "b.md", markdown_entry(title="After the upgrade", date="2026-04-01"))
    report = run(site)
    assert report.written == 2
    new_texts = [t for t in outbox_texts(site) if t.startswith("NEW TEMPLATE")]
    assert len(new_texts) == 2 and all("Before the upgrade" not in t for t in new_texts)


def outbox_texts(site: Path) -> list[str]:
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default)
            .get_body(("plain",)).get_content()
            for p in sorted((site / "outbox" / "new").glob("*.eml"))]


def test_a_ledger_from_before_sending_is_upgraded_and_its_outbox_sent(site: Path) -> None:
    port = free_port()
    use_relay(site, port)
    write_entry(site, "a.md", markdown_entry())
    run(site)
    db = sqlite3.connect(site / ".newsletter" / LEDGER_NAME)  # the previous version's schema
    db.executescript("DROP TABLE deliveries; ALTER TABLE digests DROP COLUMN delivered; "
                     "DELETE FROM _migrations WHERE name = 'm004_deliveries';")
    db.close()
    status = CliRunner().invoke(cli, ["status", "--site", str(site)])  # read-only, unmigrated
    assert status.exit_code == 0 and "2 messages written, 0 sent" in status.stdout
    dry = CliRunner().invoke(cli, ["send", "--site", str(site), "--dry-run"])
    assert "2 messages are due" in dry.stdout
    inbox = Inbox()
    with smtp_server(inbox, port):
        assert send(site).sent == 2
    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        assert [d.state for d in ledger.deliveries(1)] == ["sent", "sent"]
        assert ledger.is_delivered(1)


def test_refused_addresses_to_mark_are_found_without_reading_every_delivery(
        config: Config) -> None:
    """Each send ends by asking which refused addresses are not marked bounced yet; a month
    of a large list's deliveries is kept, so the answer must come from an index of the few
    waiting rows (m011), also for rows an older version left waiting."""
    with open_ledger(config.state_dir) as ledger:
        digest = ledger.create_digest(NOW, "S", HTML, TEXT, ["a"])
        addresses = [f"reader{n}@example.org" for n in range(50)]
        ledger.record_messages(digest.id, NOW, [(a, f"{n}.eml") for n, a in enumerate(addresses)])
        ledger.record_deliveries([
            Delivery(QueuedMessage(digest.id, a, f"{n}.eml"), "failed" if n % 10 == 3 else "sent",
                     "550 5.1.1 no such user" if n % 10 == 3 else "250 ok", NOW, 1,
                     bouncing=n % 10 == 3)
            for n, a in enumerate(addresses)])
    waiting = {(digest.id, a) for n, a in enumerate(addresses) if n % 10 == 3}
    # As a version before m011 left it: the same rows, no index.
    with sqlite3.connect(config.state_dir / LEDGER_NAME) as db:
        db.executescript("DROP INDEX deliveries_to_mark; "
                         "DELETE FROM _migrations WHERE name = 'm011_bounces_to_mark';")
    with open_ledger(config.state_dir) as ledger:
        asked: list[str] = []
        ledger._db.set_trace_callback(asked.append)
        assert set(ledger.unmarked_bounces()) == waiting
        ledger._db.set_trace_callback(None)
        plan = " ".join(row[3] for row in ledger._db.execute(f"EXPLAIN QUERY PLAN {asked[-1]}"))
        assert "INDEX deliveries_to_mark" in plan, plan  # without it: "SCAN deliveries"
        ledger.bounces_marked(sorted(waiting)[:2])
        assert set(ledger.unmarked_bounces()) == waiting - set(sorted(waiting)[:2])
