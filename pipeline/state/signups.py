"""Signups through the public form, and the per-address limit on confirmations (table
confirmation_limits): kept apart from subscribers.py for length; like it, the only code that
touches these rows."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

# (rules' names through subscribers.py, which already depends on them: the layout work moves
# them below state, and this import follows.)
from pipeline.core.models import ACTIVE, PENDING, Subscriber, email_key
from pipeline.state import events
from pipeline.state.ledger import transaction
from pipeline.state.subscribers import SubscriberBook


def address_hash(email: str) -> bytes:
    """How confirmation_limits names an address (never the address itself)."""
    return hashlib.sha256(email_key(email).encode()).digest()


class Signups(SubscriberBook):
    def signup(self, subscriber: Subscriber, now: datetime, *, form: str,
               every: timedelta, source: str = "signup") -> Subscriber | None:
        """A signup through the public form, in one transaction: a new address is added as
        pending, one that left (unsubscribed, bounced) becomes pending again, and either way
        the consent (time, source, form) is recorded. An active or pending address keeps its
        name and topics: a stranger's form cannot change them.

        Returns the subscriber to send a confirmation to, or None: already active, or a
        confirmation went to this address less than `every` ago (across threads, processes and
        restarts)."""
        stamp = now.isoformat()
        with transaction(self._db):
            known = self.get(subscriber.email)
            if known is not None and known.status == ACTIVE:
                return None
            if known is None:
                known = self._insert(subscriber, PENDING, stamp)
                events.record(self._db, known.id, stamp, events.STATUS, "", PENDING, source)
            elif known.status != PENDING:
                self._set(known.id, PENDING, stamp, known.status, source)
                known = Subscriber(known.email, known.name, known.categories, PENDING, known.id)
            if not self._claim(known.email, now, every):
                return None
            events.record(self._db, known.id, stamp, events.SIGNUP, "", "", source, form)
            return known

    def claim_confirmation(self, email: str, now: datetime, every: timedelta) -> bool:
        """True (and noted) if no confirmation went to this address in the last `every`."""
        with transaction(self._db):
            return self._claim(email, now, every)

    def _claim(self, email: str, now: datetime, every: timedelta) -> bool:
        cursor = self._db.execute(
            "INSERT INTO confirmation_limits VALUES (?, ?) ON CONFLICT (address_hash) DO "
            "UPDATE SET last_sent = excluded.last_sent WHERE last_sent <= ?",
            (address_hash(email), now.isoformat(), (now - every).isoformat()))
        return cursor.rowcount > 0
