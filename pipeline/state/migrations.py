"""The ledger's schema, as named migrations applied in order, once each (see ledger.migrate).

Append only: a site's database records which ones it has had. The names are history, kept as
they were (m005 was reserved for reader pages, which needed none).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable


def _m001_digests(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE digests (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            created TEXT NOT NULL,
            subject TEXT NOT NULL,
            html TEXT NOT NULL,
            text TEXT NOT NULL,
            complete INTEGER NOT NULL DEFAULT 0
        );
        -- An entry's slug is its identity: the primary key keeps it out of a second digest.
        -- position NULL: older and passed over by max_articles when this digest was built,
        -- so a back-catalogue never trickles out in later digests.
        CREATE TABLE digest_entries (
            slug TEXT PRIMARY KEY,
            digest_id INTEGER NOT NULL REFERENCES digests(id),
            position INTEGER
        );
        CREATE TABLE messages (
            digest_id INTEGER NOT NULL REFERENCES digests(id),
            address TEXT NOT NULL,
            filename TEXT NOT NULL,
            written TEXT NOT NULL,
            PRIMARY KEY (digest_id, address)
        );
        """
    )


def _run_script(db: sqlite3.Connection, script: str) -> None:
    # Statement by statement: executescript() would commit and break the migration's transaction.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _m002_runs(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            started TEXT NOT NULL,
            finished TEXT,
            outcome TEXT NOT NULL,  -- running (or killed, if never finished), ok, ...
            detail TEXT NOT NULL DEFAULT ''
        )
        """,
    )


def _m003_entry_cache(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE entry_cache (
            path TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            checksum TEXT NOT NULL,
            payload TEXT NOT NULL
        );
        CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL)
        """,
    )


def _m006_subscribers(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        -- The list (subscribers.csv is its import/export format). email_key: the lowercased
        -- address, one row per person. categories: sorted, joined by semicolons.
        CREATE TABLE subscribers (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL,
            email_key TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL DEFAULT '',
            categories TEXT NOT NULL DEFAULT '',
            segment TEXT NOT NULL DEFAULT '',  -- subscribers.segment_key(categories)
            status TEXT NOT NULL,  -- active, pending, unsubscribed or bounced
            created TEXT NOT NULL,
            updated TEXT NOT NULL
        );
        CREATE INDEX subscribers_by_status ON subscribers (status, id);
        -- A digest as one segment gets it: only the entries of its categories. Keyed by those
        -- entries (slugs joined by spaces), so segments that pick the same entries share one
        -- rendition, rendered once, frozen so a resumed run writes the same messages.
        CREATE TABLE digest_renditions (
            digest_id INTEGER NOT NULL REFERENCES digests(id),
            slugs TEXT NOT NULL,
            subject TEXT NOT NULL,
            html TEXT NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (digest_id, slugs)
        )
        """,
    )


def _m004_deliveries(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        -- One row per message handed to the relay at least once: its latest outcome.
        CREATE TABLE deliveries (
            digest_id INTEGER NOT NULL,
            address TEXT NOT NULL,        -- the envelope recipient
            state TEXT NOT NULL,          -- deferred, sent or failed
            attempts INTEGER NOT NULL,
            last_attempt TEXT NOT NULL,   -- when the relay last answered (accepted, if sent)
            next_attempt TEXT,            -- deferred: not before this time
            reply TEXT NOT NULL,          -- the relay's last reply, or what went wrong
            -- failed because the address is refused: 'to mark' until the list says bounced,
            -- then 'marked'. Empty otherwise (no semicolons: see _run_script)
            bounce TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (digest_id, address),
            FOREIGN KEY (digest_id, address) REFERENCES messages (digest_id, address)
        );
        -- Set once every message of a complete digest is sent or failed: sending then never
        -- looks at that digest's rows again, however long the ledger grows.
        ALTER TABLE digests ADD COLUMN delivered INTEGER NOT NULL DEFAULT 0
        """,
    )


def _m007_notices(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        -- Messages to one person outside any digest (the double opt-in confirmation): the
        -- file in outbox/ and what sending made of it, in one row. The subscriber's id is in
        -- the file name (subscriptions.CONFIRMATION_FILE).
        CREATE TABLE notices (
            filename TEXT PRIMARY KEY,
            address TEXT NOT NULL,
            written TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'queued',  -- queued, deferred, sent, failed, withdrawn
            attempts INTEGER NOT NULL DEFAULT 0,
            last_attempt TEXT,
            next_attempt TEXT,
            reply TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX notices_by_state ON notices (state)
        """,
    )


def _m008_erasures(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        -- That an address was erased (a data-protection request), never the address: the
        -- subscriber's id (NULL if it was no longer on the list), when, and how much went.
        CREATE TABLE erasures (
            id INTEGER PRIMARY KEY,
            subscriber_id INTEGER,
            erased TEXT NOT NULL,
            ledger_rows INTEGER NOT NULL,
            files INTEGER NOT NULL DEFAULT 0
        )
        """,
    )


def _m009_subscriber_events_and_signup(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        -- The audit trail: every status or topic change, in the transaction that made it.
        -- change: status, topics or signup (a consent: detail holds the form's page address).
        -- source: one-click, page, confirmation, mail request, cli, import, sending, bounce,
        -- complaint or signup. detail never holds an email address or a token. Erasing a
        -- subscriber erases their trail too.
        CREATE TABLE subscriber_events (
            id INTEGER PRIMARY KEY,
            subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
            at TEXT NOT NULL,
            change TEXT NOT NULL,
            old TEXT NOT NULL DEFAULT '',
            new TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX subscriber_events_by_subscriber ON subscriber_events (subscriber_id, id);
        -- The first release's unsubscribe tokens (an HMAC of the address alone) cannot be
        -- looked up by id: serve indexes them once per secret, so a lookup is one query.
        -- token_key: the first 8 bytes of the token's SHA-256 as an integer (a collision,
        -- about 1 in 10^7 at a million rows, costs one old link, never a wrong match: the
        -- token is checked against the row's subscriber). secret: a fingerprint of the
        -- secret that made it.
        CREATE TABLE legacy_tokens (
            token_key INTEGER PRIMARY KEY,
            subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
            secret TEXT NOT NULL
        );
        CREATE INDEX legacy_tokens_by_subscriber ON legacy_tokens (subscriber_id);
        -- When the last confirmation was written for an address (key: SHA-256 of its
        -- lowercased form, never the address): at most one an hour, whatever the traffic.
        CREATE TABLE confirmation_limits (
            address_hash BLOB PRIMARY KEY,
            last_sent TEXT NOT NULL
        ) WITHOUT ROWID
        """,
    )


def _m010_returned_mail(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        -- Every piece of returning mail (or provider notification) handled, by its key (the
        -- Message-ID, else a hash of its bytes, or the provider's notification id): written in
        -- the transaction that applies it, before the mail is moved, so a second look at the
        -- same mail changes nothing.
        CREATE TABLE returned_mail (
            key TEXT PRIMARY KEY,
            received TEXT NOT NULL,
            source TEXT NOT NULL,       -- maildir, mbox, eml, imap or ses
            outcome TEXT NOT NULL,      -- bounced, counted, complained, ignored, kept, refused
            detail TEXT NOT NULL DEFAULT ''
        );
        -- What returning mail said about one subscriber, and the status it set (changed, empty
        -- if none): the audit trail of bounces and complaints, with the DSN status code.
        CREATE TABLE subscriber_returns (
            id INTEGER PRIMARY KEY,
            mail_key TEXT NOT NULL REFERENCES returned_mail(key),
            subscriber_id INTEGER NOT NULL,
            address TEXT NOT NULL,
            digest_id INTEGER,          -- the digest it answers, when known
            kind TEXT NOT NULL,         -- permanent, temporary, policy or complaint
            status_code TEXT NOT NULL DEFAULT '',
            received TEXT NOT NULL,
            previous TEXT NOT NULL DEFAULT '',
            changed TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX subscriber_returns_by_subscriber
            ON subscriber_returns (subscriber_id, kind, received);
        CREATE INDEX subscriber_returns_by_digest ON subscriber_returns (digest_id, kind)
        """,
    )


def _m011_bounces_to_mark(db: sqlite3.Connection) -> None:
    # Every send ends by asking which refused addresses the list does not say "bounced" yet.
    # Deliveries are kept for the retention period (a month of a large list's digests: tens
    # of millions of rows), and without this index that question read all of them at every
    # send (~73 ms a million rows: bench/send_noop.py). Only the few rows waiting to be
    # marked are in it.
    db.execute("CREATE INDEX deliveries_to_mark ON deliveries (digest_id, address) "
               "WHERE bounce = 'to mark'")


# Named, append-only: a site's database records which ones it has had.
MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("m001_digests", _m001_digests),
    ("m002_runs", _m002_runs),
    ("m003_entry_cache", _m003_entry_cache),
    ("m004_deliveries", _m004_deliveries),
    # m005 was kept for reader pages, which needed none.
    ("m006_subscribers", _m006_subscribers),
    ("m007_notices", _m007_notices),
    ("m008_erasures", _m008_erasures),
    ("m009_subscriber_events_and_signup", _m009_subscriber_events_and_signup),
    ("m010_returned_mail", _m010_returned_mail),
    ("m011_bounces_to_mark", _m011_bounces_to_mark),
]
