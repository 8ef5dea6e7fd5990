"""Tie what returning mail says to subscribers and change the list: a permanent failure makes an
address `bounced`, a complaint `complained`, temporary failures count until `soft_limit` of
them within `soft_days` make it bounced. The VERP token identifies the subscriber first; without
one, the failed address does. What cannot be tied to a current subscriber changes nothing and
is kept aside with the reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pipeline.core.config import Config
from pipeline.core.models import ACTIVE, BOUNCED, COMPLAINED, PENDING, Subscriber
from pipeline.mail.return_path import claimed, verify
from pipeline.state.ledger import Ledger
from pipeline.state.returns import MailRecord, ReturnRow, ReturnsBook
from pipeline.state.subscribers import SubscriberBook
from pipeline.subscribers.returns.classify import (
    AUTO_REPLY,
    BOUNCE,
    COMPLAINT,
    DELIVERED,
    PERMANENT,
    POLICY,
    TEMPORARY,
    Failure,
    Verdict,
)

CURRENT = (ACTIVE, PENDING)  # who returning mail can still change
_SEVERITY = {"complaint": 3, PERMANENT: 2, TEMPORARY: 1, POLICY: 0}


@dataclass
class Handled:
    """What became of one piece of returning mail."""

    key: str
    outcome: str  # bounced, complained, counted, policy, ignored, kept, refused, seen before
    detail: str = ""
    changes: list[tuple[str, str, str]] = field(default_factory=list)  # address, status, code
    keep: bool = False  # changed nothing and needs a look: kept aside with `detail`

    @property
    def seen_before(self) -> bool:
        return self.outcome == "seen before"


def handle(verdict: Verdict, config: Config, ledger: Ledger, secrets: Sequence[bytes],
           now: datetime, source: str) -> Handled:
    """Apply one verdict to the list and record it (see handle_all)."""
    return handle_all([(verdict, source)], config, ledger, secrets, now)[0]


def handle_all(verdicts: Sequence[tuple[Verdict, str]], config: Config, ledger: Ledger,
               secrets: Sequence[bytes], now: datetime,
               keep_aside: Callable[[Verdict, str], object] | None = None) -> list[Handled]:
    """Apply verdicts (each with its source) to the list and record them, in one transaction;
    mail seen before changes nothing. `keep_aside(verdict, reason)` runs before the ledger
    records mail that changed nothing."""
    returns = ReturnsBook(ledger)
    results: list[Handled] = []
    pending: list[tuple[int, Handled, list[ReturnRow]]] = []
    records: list[MailRecord] = []
    for verdict, source in verdicts:
        stored = returns.seen(verdict.key)
        if stored is not None or any(r.key == verdict.key for r in records):
            results.append(Handled(verdict.key, "seen before",
                                   "recorded earlier; nothing changed", keep=stored == "kept"))
            continue
        handled, rows = _decide(verdict, config, ledger, secrets, now)
        if handled.keep and keep_aside is not None:
            keep_aside(verdict, handled.detail)
        pending.append((len(results), handled, rows))
        records.append(MailRecord(verdict.key, source, handled.outcome, handled.detail,
                                  tuple(rows)))
        results.append(handled)
    for (at, handled, _), applied in zip(pending, returns.record_many(records, now),
                                         strict=True):
        if applied is None:  # recorded meanwhile by another process (the web endpoint)
            results[at] = Handled(handled.key, "seen before",
                                  "recorded earlier; nothing changed", keep=handled.keep)
            continue
        handled.changes = [(row.address, changed, row.status_code)
                           for row, changed in applied if changed]
        if handled.outcome == "counted" and handled.changes:
            handled.outcome = "bounced"
            handled.detail += (f"; {config.bounces.soft_limit} temporary failures within "
                               f"{config.bounces.soft_days} days")
    return results


def _decide(verdict: Verdict, config: Config, ledger: Ledger, secrets: Sequence[bytes],
            now: datetime) -> tuple[Handled, list[ReturnRow]]:
    key = verdict.key
    if verdict.kind in (AUTO_REPLY, DELIVERED):
        return Handled(key, "ignored", verdict.reason), []
    if verdict.kind not in (BOUNCE, COMPLAINT):
        return Handled(key, "kept", verdict.reason, keep=True), []
    book = SubscriberBook(ledger)
    targets: list[tuple[Subscriber, Failure, int | None]] = []
    token_claims = [a for a in verdict.sent_to if claimed(config.return_path, a)]
    if token_claims:
        found = _by_token(config, book, secrets, token_claims)
        if found is None:
            return Handled(key, "kept", "its return-path token does not verify (forged, "
                           "damaged, or made for an address since removed); nothing changed",
                           keep=True), []
        subscriber, digest_id = found
        worst = max(verdict.failures, key=lambda f: _SEVERITY[f.kind],
                    default=Failure(subscriber.email, PERMANENT))
        targets.append((subscriber, worst, digest_id))
    elif verdict.kind == BOUNCE and config.return_path and not verdict.from_provider:
        # A bounce goes to the envelope sender (RFC 5321), and ours carry a token: one
        # without is forged, from a broken mail system, or for mail sent before the setting.
        return Handled(key, "kept", "a bounce without a return-path token, while "
                       "email.return_path is set; nothing changed", keep=True), []
    else:
        unknown = []
        for failure in verdict.failures:
            subscriber = book.get(failure.address) if failure.address else None
            if subscriber is None:
                unknown.append(failure.address or "(no address given)")
            else:
                targets.append((subscriber, failure, _digest_of(verdict, subscriber)))
        if not targets:
            return Handled(key, "kept", "no subscriber has the address it names: "
                           + ", ".join(unknown[:5]), keep=True), []
    rows = [_row(subscriber, failure, digest_id, config, now)
            for subscriber, failure, digest_id in targets]
    current = [row for row, (s, _, _) in zip(rows, targets, strict=True) if s.status in CURRENT]
    if not current:
        states = ", ".join(sorted({s.status for s, _, _ in targets}))
        return Handled(key, "kept", f"for an address that left the list ({states}); "
                       "nothing changed", keep=True), rows
    worst = max(current, key=lambda r: _SEVERITY[r.kind])
    outcome = {"complaint": "complained", PERMANENT: "bounced", TEMPORARY: "counted",
               POLICY: "policy"}[worst.kind]
    code = f" {worst.status_code}" if worst.status_code else ""
    detail = f"{verdict.reason}{code}"
    return Handled(key, outcome, detail), rows


def _row(subscriber: Subscriber, failure: Failure, digest_id: int | None, config: Config,
         now: datetime) -> ReturnRow:
    new_status = {"complaint": COMPLAINED, PERMANENT: BOUNCED, TEMPORARY: BOUNCED}.get(
        failure.kind, "")
    limits = config.bounces
    return ReturnRow(subscriber.id, subscriber.email, digest_id, failure.kind, failure.status,
                     failure.report, new_status, CURRENT,
                     soft_limit=limits.soft_limit if failure.kind == TEMPORARY else 0,
                     soft_since=now - timedelta(days=limits.soft_days))


def _by_token(config: Config, book: SubscriberBook, secrets: Sequence[bytes],
              addresses: list[str]) -> tuple[Subscriber, int | None] | None:
    for address in addresses:
        what = claimed(config.return_path, address)
        assert what is not None
        subscriber = book.by_id(what[2])
        if subscriber is None:
            continue
        token = verify(config.return_path, secrets, address, subscriber.email)
        if token is not None:
            return subscriber, token.digest_id
    return None


def _digest_of(verdict: Verdict, subscriber: Subscriber) -> int | None:
    """The digest the bounce answers, if our Message-ID in it was made for this subscriber."""
    if verdict.digest_id is None:
        return None
    made_for = hashlib.sha256(subscriber.email.lower().encode()).hexdigest()[:16]
    return verdict.digest_id if made_for == verdict.digest_for else None
