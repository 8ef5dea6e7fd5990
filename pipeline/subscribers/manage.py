"""What operators (and runs) do to the list: import and export files, add, unsubscribe,
process a file of unsubscribes and bounces, send double opt-in confirmations."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pipeline.core.addresses import normalise_address
from pipeline.core.config import Config
from pipeline.core.errors import Problem
from pipeline.core.models import BOUNCED, PENDING, UNSUBSCRIBED, Subscriber
from pipeline.state.ledger import Ledger
from pipeline.state.secret import load_secret
from pipeline.state.subscribers import ImportReport, SubscriberBook
from pipeline.subscribers.csv_file import read_import_rows

log = logging.getLogger("pipeline")
CSV_STATE = "subscribers_csv"  # the ledger's note of the subscribers.csv last imported
# A line of a process file: `unsubscribe a@b.org`, `bounce a@b.org`, or just the address.
_PROCESS_LINE = re.compile(r"^(?:(unsubscribe|bounce|bounced)\s+)?(\S+)$", re.I)


def import_file(config: Config, ledger: Ledger, path: Path, now: datetime, *,
                reactivate: bool = False, shown: Path | str | None = None
                ) -> tuple[ImportReport, list[Problem]]:
    """Import a subscribers CSV: good rows in, bad rows reported with their line numbers."""
    problems: list[Problem] = []
    report = SubscriberBook(ledger).import_rows(
        read_import_rows(path, problems, shown or path), now, reactivate=reactivate,
        double_opt_in=config.double_opt_in, source="import", detail=Path(shown or path).name)
    send_confirmations(config, ledger, report.pending, now)
    return report, problems


def sync_site_csv(config: Config, ledger: Ledger, now: datetime) -> list[Problem]:
    """Import the site's subscribers.csv when its bytes changed since the last import, so a
    site keeps working with the CSV alone (and a CSV edit never re-activates anyone)."""
    path = config.subscribers_file
    shown = path.relative_to(config.site_dir)
    if not path.exists():
        return [Problem(shown, "file", "not found", "create it with a header line "
                        "`email,name,categories,status`, or add subscribers with "
                        "`newsletter subscribers add`", warning=True)]
    fingerprint = hashlib.sha256(path.read_bytes()).hexdigest()
    if ledger.get_state(CSV_STATE) == fingerprint:
        return []
    report, problems = import_file(config, ledger, path, now, shown=shown)
    ledger.set_state(CSV_STATE, fingerprint)
    log.info("subscribers.csv imported: %d new, %d taken off, %d left alone", report.added,
             report.status_changed, report.unchanged + len(report.kept_out))
    return problems


def add(config: Config, ledger: Ledger, email: str, now: datetime, *, name: str | None = None,
        categories: tuple[str, ...] | None = None) -> tuple[Subscriber, bool]:
    """Add (pending first, with double opt-in) or update one address: a known one changes
    only in what is given (a name alone keeps the topics)."""
    known = SubscriberBook(ledger).get(email)
    subscriber = Subscriber(
        email, name if name is not None else (known.name if known else ""),
        categories if categories is not None else (known.categories if known else ()))
    if config.double_opt_in:
        subscriber = Subscriber(subscriber.email, subscriber.name, subscriber.categories,
                                status=PENDING)
    row, new = SubscriberBook(ledger).add(subscriber, now, source="cli")
    if new and row.status == PENDING:
        send_confirmations(config, ledger, [row], now)
    return row, new


def unsubscribe(ledger: Ledger, email: str, now: datetime, *, source: str = "cli"
                ) -> Subscriber | None:
    return SubscriberBook(ledger).set_status(email, UNSUBSCRIBED, now, source=source)


@dataclass
class ProcessReport:
    unsubscribed: int = 0
    bounced: int = 0
    unknown: list[str] = field(default_factory=list)  # addresses not on the list


def process_file(ledger: Ledger, path: Path, now: datetime, shown: Path | str | None = None
                 ) -> tuple[ProcessReport, list[Problem]]:
    """Apply a file of `unsubscribe ADDRESS` / `bounce ADDRESS` lines (a bare address means
    unsubscribe; blank lines and # comments are skipped), e.g. collected from a mailbox."""
    shown = shown or path
    report, problems = ProcessReport(), []
    book = SubscriberBook(ledger)
    for number, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PROCESS_LINE.match(line)
        try:
            if match is None:
                raise ValueError("expected `unsubscribe ADDRESS` or `bounce ADDRESS`")
            address = normalise_address(match.group(2).strip("<>"))
        except ValueError as exc:
            problems.append(Problem(shown, "line", f"{line!r}: {exc}",
                                    "write `unsubscribe a@example.org` or "
                                    "`bounce a@example.org`", line=number))
            continue
        bounce = (match.group(1) or "").lower().startswith("bounce")
        if book.set_status(address, BOUNCED if bounce else UNSUBSCRIBED, now,
                           source="bounce" if bounce else "mail request") is None:
            report.unknown.append(address)
        elif bounce:
            report.bounced += 1
        else:
            report.unsubscribed += 1
    return report, problems


def send_confirmations(config: Config, ledger: Ledger, pending: list[Subscriber],
                       now: datetime, *, again: bool = False) -> int:
    """Put a confirmation message for each pending subscriber into the outbox and queue it
    for sending; returns how many were written. The first one's file name is fixed per
    subscriber (written once however often a run meets them); `again` (a signup, a link that
    expired) makes a new one, named with its time."""
    if not pending:
        return 0
    from pipeline.core.atomic import deliver, flush_to_disk
    from pipeline.mail.confirmation import compose_confirmation, confirmation_name
    from pipeline.mail.outbox_folders import Outbox
    from pipeline.state.notices import Notices
    from pipeline.subscribers.link_tokens import confirmation_token

    outbox = Outbox(config.outbox_dir)
    outbox.prepare_writing()
    secret = load_secret(config.state_dir)
    written = 0
    queued = []
    for subscriber in pending:
        name = confirmation_name(subscriber, now if again else None)
        queued.append((name, subscriber.email))
        if outbox.written(name):
            continue
        token = confirmation_token(secret, subscriber.id, subscriber.email, now)
        url = config.confirm_url.format(site_url=config.site_url, token=token)
        deliver(outbox.tmp, outbox.new, name,
                compose_confirmation(config, subscriber, url, name, now))
        written += 1
    flush_to_disk(outbox.new)  # durable before the ledger queues them for sending
    Notices(ledger).record(queued, now)
    return written
