"""Which queued messages are due, checked against the outbox's folders and the list: the two
passes `send` makes over the ledger's queue, a page at a time (the queue of a million is never
whole in memory), and what they record on the way (outcomes a killed send left, messages whose
subscriber left, confirmation files the ledger does not know)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime

from pipeline.core.atomic import flush_folders, move
from pipeline.core.config import Config
from pipeline.core.deliveries import Delivery, QueuedMessage, SendReport
from pipeline.core.errors import Problem
from pipeline.core.models import ACTIVE, PENDING, email_key
from pipeline.delivery.compact_queue import CompactQueue
from pipeline.delivery.folders import seen_by_a_reader
from pipeline.mail.outbox_folders import Outbox
from pipeline.state.ledger import Ledger
from pipeline.state.lock import is_locked

log = logging.getLogger("pipeline")
CHECK_EVERY = 5000  # due messages checked against the list per chunk
PAGE = 5000  # queued messages read from the ledger at a time: the queue is never whole
SENDING_PAGE = 1000  # the second pass's pages: sending begins once the first is checked,
FIRST_PAGE = 200  # which is smaller, so that it begins sooner


def pages(ledger: Ledger, size: int = PAGE, first: int = 0) -> Iterator[list[QueuedMessage]]:
    """The ledger's queue, `size` messages at a time (the first page `first`, if given):
    digests' messages, then notices."""
    from pipeline.state.notices import Notices

    yield from ledger.queued_pages(size, first)
    if notices := Notices(ledger).queued():  # confirmations: a few
        yield notices


def is_due(message: QueuedMessage, now: datetime, retry_now: bool) -> bool:
    """Its time has come: never tried, or its retry time reached (or `retry_now`)."""
    return retry_now or message.next_attempt is None or message.next_attempt <= now


def check_queue(ledger: Ledger, folders: Outbox, waiting: set[str], now: datetime,
           report: SendReport, config: Config, retry_now: bool, *, sending: bool,
           compact: CompactQueue, check_wanted: bool = True) -> None:
    """Go through the ledger's queue, checked against the folders, a page at a time, and
    count in `report` the messages due now (`due`), those waiting for their retry time, the
    outcomes a killed send left unrecorded (`recovered`), the due messages whose subscriber
    no longer wants them (`withdrawn`) and the missing; `waiting` lists outbox/new/. A
    queued message that a mail client moved (to cur/, or renamed with flags) counts as
    waiting. A compact digest's message waits in its store until its journal has an outcome.
    With `sending`, before anything is sent: moved messages go back into new/, recovered
    outcomes are recorded, unwanted messages withdrawn, and every journal a due message
    needs is opened (OutboxError if one cannot be). Without `check_wanted` (a send with no
    cap) the list is not checked here: the second pass checks each page just before it is
    sent, which it must do anyway, and withdraws then (one lookup a message, not two)."""
    known = set()
    seen = seen_by_a_reader(folders, waiting)
    for page in pages(ledger):
        due: list[QueuedMessage] = []
        recovered: list[Delivery] = []
        names = [message.filename for message in page]
        if in_new := waiting.issuperset(names):  # the usual page: checked at C speed
            known.update(names)
            due = [m for m in page if is_due(m, now, retry_now)]
            report.waiting += len(page) - len(due)
        else:
            for message in page:
                if message.filename not in waiting and message.filename in seen:
                    if sending:
                        os.rename(seen[message.filename], folders.new / message.filename)
                        report.taken_back += 1
                    waiting.add(message.filename)
                if message.filename in waiting:  # only to count the unknown files among them
                    known.add(message.filename)
                if message.filename in waiting or compact.waiting(message):
                    if is_due(message, now, retry_now):
                        due.append(message)
                    else:
                        report.waiting += 1
                elif moved := folders.where(message.filename):
                    recovered.append(_recovered(message, folders, moved))
                elif done := compact.recovered(message):
                    recovered.append(done)
                else:
                    report.missing.append(message.filename)
        due, unwanted = still_wanted(due, ledger) if check_wanted else (due, [])
        report.due += len(due)
        report.recovered += len(recovered)
        if not sending:
            report.withdrawn += len(unwanted)
            continue
        if recovered:  # a killed send moved these but never recorded them
            record_outcomes(ledger, recovered)
            log.info("send: recorded %d messages an interrupted send had moved",
                     len(recovered))
        if not in_new:  # a page all in new/ has no compact store's message
            compact.open_journals([m for m, _ in unwanted] + due)  # writable, before anything
        if unwanted:
            withdraw(unwanted, folders, ledger, report, now, compact)
    if report.taken_back:
        flush_folders(folders.new, folders.cur)
        log.warning("send: %d messages a mail client had moved (Maildir cur/ or flags) were "
                    "put back into outbox/new", report.taken_back)
    unknown = sum(1 for name in waiting - known if name.endswith(".eml"))
    if unknown and not is_locked(config.state_dir):  # else a run may be writing them now
        report.problems.append(Problem(
            "outbox/new", "messages", f"{unknown} files are not in the ledger, so not sent",
            "`newsletter run` records the ones a killed run wrote; move others away",
            warning=True))
    for name in report.missing:
        report.problems.append(Problem(
            "outbox", name, "is in the ledger but in none of new/, sent/, failed/, withdrawn/"
            + (", nor in its compact store" if compact.has_store(name) else ""),
            "put the file back into outbox/new/ (or its compact store from a backup) to send it"))


def due_pages(ledger: Ledger, folders: Outbox, waiting: set[str], now: datetime,
               report: SendReport, retry_now: bool, compact: CompactQueue
               ) -> Iterator[list[QueuedMessage]]:
    """The second pass: the messages _queue counted as due, a page at a time, read again
    from the ledger as the pool needs them. One whose subscriber left since is withdrawn
    here (and no longer counted as due)."""
    size = min(PAGE, SENDING_PAGE)
    for page in pages(ledger, size, min(size, FIRST_PAGE)):
        due = [m for m in page if (m.filename in waiting or compact.waiting(m))
               and is_due(m, now, retry_now)]
        due, unwanted = still_wanted(due, ledger)
        if unwanted:
            withdraw(unwanted, folders, ledger, report, now, compact)
            report.due -= len(unwanted)
        if due:
            yield due


Withdrawal = tuple[QueuedMessage, str]  # a message not to send, and why


def still_wanted(due: list[QueuedMessage], ledger: Ledger
                  ) -> tuple[list[QueuedMessage], list[Withdrawal]]:
    """Split off messages whose subscriber changed their mind after they were written."""
    from pipeline.state.subscribers import SubscriberBook

    if not due:
        return due, []
    book = SubscriberBook(ledger)
    wanted: list[QueuedMessage] = []
    unwanted: list[Withdrawal] = []
    for start in range(0, len(due), CHECK_EVERY):  # a list of a million is never held here
        chunk = due[start:start + CHECK_EVERY]
        statuses = book.statuses_of([email_key(m.address) for m in chunk])
        for message in chunk:
            why = _unwanted_because(message, *statuses.get(email_key(message.address), (0, "")))
            if why is None:
                wanted.append(message)
            else:
                unwanted.append((message, f"not sent: {message.address} {why}"))
    return wanted, unwanted


def _unwanted_because(message: QueuedMessage, subscriber_id: int, status: str) -> str | None:
    """Why the message must not go out now, or None: a digest goes only to an active
    subscriber, a confirmation only to the pending subscriber it was made for."""
    if not status:
        return "is no longer on the list"
    if message.digest_id is not None:  # the many: no import here (~1 µs each)
        return None if status == ACTIVE else f"is {status} now"
    from pipeline.mail.confirmation import CONFIRMATION_FILE

    made_for = CONFIRMATION_FILE.fullmatch(message.filename)
    if made_for is None or int(made_for[1]) != subscriber_id:
        return "was removed and added again: a newer confirmation replaces this one"
    return None if status == PENDING else f"is {status} now"


def withdraw(unwanted: list[Withdrawal], folders: Outbox, ledger: Ledger,
              report: SendReport, now: datetime, compact: CompactQueue) -> None:
    """Move messages no one wants any more into outbox/withdrawn/ and record why."""
    new, withdrawn = str(folders.new), str(folders.withdrawn)
    for message, why in unwanted:
        if compact.holds(message):
            compact.record(message, "withdrawn", why)
        else:
            move(message.filename, new, withdrawn)
    flush_folders(folders.new, folders.withdrawn)
    compact.flush()
    record_outcomes(ledger, [Delivery(message, "withdrawn", why, now, message.attempts)
                              for message, why in unwanted])
    report.withdrawn += len(unwanted)
    log.info("send: %d messages withdrawn: their subscribers left the list", len(unwanted))


def adopt_confirmations(ledger: Ledger, waiting: set[str], now: datetime) -> None:
    """Queue confirmation files the ledger does not know: written by a run killed before it
    recorded them, or by a version that did not queue them."""
    from pipeline.mail.confirmation import CONFIRMATION_FILE
    from pipeline.state.notices import Notices
    from pipeline.state.subscribers import SubscriberBook

    found = {name: int(match[1]) for name in waiting
             if name.startswith("confirm-") and (match := CONFIRMATION_FILE.fullmatch(name))}
    if not found:
        return
    notices, book = Notices(ledger), SubscriberBook(ledger)
    known = notices.filenames()
    rows = [(name, who.email) for name, sid in sorted(found.items())
            if name not in known and (who := book.by_id(sid)) is not None]
    if rows:
        notices.record(rows, now)


def record_outcomes(ledger: Ledger, deliveries: list[Delivery]) -> None:
    """Outcomes of digest messages go to the deliveries table, of notices to their own rows."""
    from pipeline.state.notices import Notices

    digests = [d for d in deliveries if d.message.digest_id is not None]
    notices = [d for d in deliveries if d.message.digest_id is None]
    if digests:
        ledger.record_deliveries(digests)
    if notices:
        Notices(ledger).record_deliveries(notices)


def _recovered(message: QueuedMessage, folders: Outbox, state: str) -> Delivery:
    path = folders.folder(state) / message.filename
    when = datetime.fromtimestamp(path.stat().st_ctime, UTC)  # the rename's time
    reply, bouncing = "accepted; the reply was lost when the send was killed", False
    if state == "withdrawn":
        reply = "not sent: its subscriber left the list (recorded after an interrupted send)"
    if state == "failed":
        text = folders.read_reason(message.filename) or "refused"
        # "marked bouncing": the note's wording before it matched the list's status
        reply, bouncing = text.splitlines()[0], "marked bounc" in text
    return Delivery(message, state, reply, when, message.attempts + 1, bouncing=bouncing)
