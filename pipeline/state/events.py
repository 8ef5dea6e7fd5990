"""The subscriber audit trail: who changed what, when and how (table subscriber_events).

Rows are written by SubscriberBook inside the transaction of the change they describe, so the
list and its trail never disagree. `detail` never holds an email address or a token: for a
signup it is the address of the page whose form was posted (the consent's "where").
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

# Where a change came from (`newsletter subscribers history` shows it).
SOURCES = ("one-click", "page", "confirmation", "mail request", "cli", "import", "sending",
           "bounce", "complaint", "signup")
STATUS, TOPICS, SIGNUP = "status", "topics", "signup"


@dataclass(frozen=True)
class Event:
    at: datetime
    change: str  # status, topics or signup
    old: str
    new: str
    source: str
    detail: str


@dataclass(frozen=True)
class Consent:
    at: datetime
    source: str
    form: str  # the address of the page the form was on ('' if not known)
    confirmed: datetime | None = None  # when the confirmation link was used, if it was


def record(db: sqlite3.Connection, subscriber_id: int, at: str, change: str, old: str,
           new: str, source: str, detail: str = "") -> None:
    """Add one row; call inside the change's own transaction."""
    if source not in SOURCES:
        raise ValueError(f"unknown change source {source!r}")
    db.execute("INSERT INTO subscriber_events (subscriber_id, at, change, old, new, source, "
               "detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
               (subscriber_id, at, change, old, new, source, detail))


def record_many(db: sqlite3.Connection, rows: list[tuple[int, str, str, str, str, str, str]]
                ) -> None:
    """(subscriber_id, at, change, old, new, source, detail) rows, inside a transaction."""
    db.executemany("INSERT INTO subscriber_events (subscriber_id, at, change, old, new, "
                   "source, detail) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def history(db: sqlite3.Connection, subscriber_id: int) -> list[Event]:
    return [Event(datetime.fromisoformat(r[0]), *r[1:]) for r in db.execute(
        "SELECT at, change, old, new, source, detail FROM subscriber_events "
        "WHERE subscriber_id = ? ORDER BY id", (subscriber_id,))]


def consents(db: sqlite3.Connection) -> dict[int, Consent]:
    """subscriber id → their latest recorded consent (a signup through the form)."""
    found: dict[int, Consent] = {}
    for sid, at, source, detail in db.execute(
            "SELECT subscriber_id, at, source, detail FROM subscriber_events "
            "WHERE change = 'signup' ORDER BY id"):
        found[sid] = Consent(datetime.fromisoformat(at), source, detail)
    for sid, at in db.execute(
            "SELECT subscriber_id, at FROM subscriber_events WHERE change = 'status' "
            "AND source = 'confirmation' AND new = 'active' ORDER BY id"):
        if sid in found and found[sid].at.isoformat() <= at:
            old = found[sid]
            found[sid] = Consent(old.at, old.source, old.form, datetime.fromisoformat(at))
    return found
