"""`newsletter send`: drain outbox/new/ through the configured delivery backend (the operator's
SMTP relay by default), and lose nothing.

The folders say what happened first, the ledger second. The moment the relay accepts a message
its file is renamed from new/ into sent/ (one system call, in the thread that got the reply);
a refused one goes to failed/ beside its reason. Outcomes are recorded in the ledger in small
batches, after the renames are flushed. A send killed in between leaves files in sent/ or
failed/ that the ledger does not know yet: the next send records them before it sends
anything. So a message can only go out twice if the process dies between the relay's reply
and that rename (or if the connection breaks after the data was sent, before the reply).
"""

from __future__ import annotations

import logging
import os
import queue
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.core.atomic import flush_folders, move
from pipeline.core.config import Config, load_config
from pipeline.core.deliveries import Delivery, QueuedMessage, SendReport
from pipeline.core.errors import Problem
from pipeline.core.models import Subscriber
from pipeline.delivery.compact_queue import CompactQueue
from pipeline.delivery.envelope import envelope_senders
from pipeline.delivery.folders import OutboxError, check_writable, seen_by_a_reader
from pipeline.delivery.pool import Pool
from pipeline.delivery.settings import Delivery as DeliverySettings
from pipeline.delivery.settings import delivery_settings, ready_to_send
from pipeline.delivery.signing import DkimSettings, DkimSigner
from pipeline.delivery.stopping import Stopped, stop_on_signals
from pipeline.delivery.transport import Outcome, Settings
from pipeline.mail.compact import waiting_count
from pipeline.mail.outbox import Outbox
from pipeline.state.ledger import Ledger, open_ledger
from pipeline.state.lock import SEND_LOCK_NAME, is_locked, site_lock
from pipeline.state.secret import load_secret

log = logging.getLogger("pipeline")
RECORD_EVERY = 0.25  # seconds between ledger batches: bounds what a power cut can undo
CHECK_EVERY = 5000  # due messages checked against the list per chunk
PAGE = 5000  # queued messages read from the ledger at a time: the queue is never whole
MAX_BACKOFF = 3600.0  # the wait before a retry doubles up to an hour, no further
Progress = Callable[[SendReport], None]


def send(site: Path, now: datetime | None = None, *, limit: int = 0, rate: float | None = None,
         wait: float = 0.0, progress: Progress | None = None, retry_now: bool = False
         ) -> SendReport:
    """Hand every due message to the backend; raises ConfigError, Locked, OutboxError,
    TransportSetupError, or Stopped (SIGINT, SIGTERM or SIGHUP before sending began: a
    signal during sending ends it cleanly, and the report says which). `retry_now`: deferred
    messages are due now, whatever their retry time."""
    config = load_config(site)
    delivery = ready_to_send(config)
    settings = delivery.settings
    signer = signer_for(delivery.dkim)
    with stop_on_signals(), site_lock(config.state_dir, wait, SEND_LOCK_NAME), \
            open_ledger(config.state_dir) as ledger:
        offset = (now - datetime.now(UTC)) if now else timedelta(0)  # tests move the clock
        clock = lambda: datetime.now(UTC) + offset  # noqa: E731
        report = SendReport(problems=[*config.warnings, *delivery.warnings])
        folders = Outbox(config.outbox_dir)
        try:
            folders.prepare_sending()
        except OSError as exc:
            raise OutboxError(f"cannot create {exc.filename}: {exc.strerror}; nothing was "
                              "sent — make the outbox a writable folder") from None
        waiting, seen = folders.listing(), len(folders.listing("cur"))
        in_stores = waiting_count(folders.root)[0]  # the compact outbox's
        if waiting or seen or in_stores:  # before anything is moved or sent
            check_writable(folders, config.state_dir, len(waiting) + seen + in_stores)
        _adopt_confirmations(ledger, waiting, clock())
        compact = CompactQueue(folders, waiting)
        now = clock()
        # First pass, before anything is sent: recovered outcomes recorded, unwanted messages
        # withdrawn, journals opened, the due counted. The second streams the due to the pool.
        _queue(ledger, folders, waiting, now, report, config, retry_now, sending=True,
               compact=compact)
        _cap(report, limit, settings)
        log.info("send: %d due, %d waiting for their retry time", report.due, report.waiting)
        try:
            if report.due:
                _drain(_due_pages(ledger, folders, waiting, now, report, retry_now, compact),
                       delivery, settings.rate if rate is None else rate, signer,
                       folders, ledger, report, clock, progress,
                       envelope_senders(config, ledger, settings.envelope_from), compact)
        finally:
            compact.close()
            _mark_bouncing(config, ledger, report)
            ledger.close_delivered_digests()
    return report


def plan_send(site: Path, now: datetime | None = None, *, limit: int = 0,
              retry_now: bool = False) -> SendReport:
    """What `send` would do now, sending and writing nothing: for --dry-run. Settings that
    are not enough to send yet are warnings here: a dry run connects to nothing."""
    config = load_config(site)
    delivery = delivery_settings(config)
    report = SendReport(problems=[*config.warnings, *delivery.warnings])
    report.problems += [replace(p, warning=True)
                        for p in delivery.backend.check(delivery.transport, config)]
    with open_ledger(config.state_dir, read_only=True) as ledger:
        folders = Outbox(config.outbox_dir)
        waiting = folders.listing()
        compact = CompactQueue(folders, waiting)
        try:
            _queue(ledger, folders, waiting, now or datetime.now(UTC), report, config,
                   retry_now, sending=False, compact=compact)
        finally:
            compact.close()
    _cap(report, limit, delivery.settings)
    return report


def send_test(site: Path, address: str) -> Outcome:
    """The latest digest to one address, subject prefixed "[TEST]"; the ledger and outbox
    are left alone. Raises ValueError for a bad address or when there is no digest yet."""
    from email_validator import EmailNotValidError, validate_email

    from pipeline.mail.compose import Composer

    config = load_config(site)
    delivery = ready_to_send(config)
    try:
        address = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"--test {address!r}: {exc}") from None
    with open_ledger(config.state_dir, read_only=True) as ledger:
        digest = ledger.last_digest()
    if digest is None:
        raise ValueError("there is no digest yet — `newsletter run` builds one")
    # A key of its own: a real copy later must not share the test's Message-ID (mail
    # providers drop a second message with an ID they have seen).
    digest = replace(digest, subject=f"[TEST] {digest.subject}", key=uuid.uuid4().hex)
    data = Composer(digest, config, load_secret(config.state_dir)).compose(Subscriber(address))
    signer = signer_for(delivery.dkim)
    transport = delivery.backend.transports(delivery.transport)()
    try:
        return transport.send(delivery.settings.envelope_from, [address],
                              signer.sign(data) if signer else data)
    finally:
        transport.close()


def signer_for(dkim: DkimSettings | None) -> DkimSigner | None:
    return None if dkim is None else DkimSigner(dkim)


def _pages(ledger: Ledger) -> Iterator[list[QueuedMessage]]:
    """The ledger's queue, PAGE messages at a time: digests' messages, then notices."""
    from pipeline.state.notices import Notices

    yield from ledger.queued_pages(PAGE)
    if notices := Notices(ledger).queued():  # confirmations: a few
        yield notices


def _queue(ledger: Ledger, folders: Outbox, waiting: set[str], now: datetime,
           report: SendReport, config: Config, retry_now: bool, *, sending: bool,
           compact: CompactQueue) -> None:
    """Go through the ledger's queue, checked against the folders, a page at a time, and
    count in `report` the messages due now (`due`), those waiting for their retry time, the
    outcomes a killed send left unrecorded (`recovered`), the due messages whose subscriber
    no longer wants them (`withdrawn`) and the missing; `waiting` lists outbox/new/. A
    queued message that a mail client moved (to cur/, or renamed with flags) counts as
    waiting. A compact digest's message waits in its store until its journal has an outcome.
    With `sending`, before anything is sent: moved messages go back into new/, recovered
    outcomes are recorded, unwanted messages withdrawn, and every journal a due message
    needs is opened (OutboxError if one cannot be)."""
    known = set()
    seen = seen_by_a_reader(folders)
    for page in _pages(ledger):
        due: list[QueuedMessage] = []
        recovered: list[Delivery] = []
        for message in page:
            if message.filename not in waiting and message.filename in seen:
                if sending:
                    os.rename(seen[message.filename], folders.new / message.filename)
                    report.taken_back += 1
                waiting.add(message.filename)
            if message.filename in waiting:  # only to count the unknown files among them
                known.add(message.filename)
            if message.filename in waiting or compact.waiting(message):
                if retry_now or message.next_attempt is None or message.next_attempt <= now:
                    due.append(message)
                else:
                    report.waiting += 1
            elif moved := folders.where(message.filename):
                recovered.append(_recovered(message, folders, moved))
            elif done := compact.recovered(message):
                recovered.append(done)
            else:
                report.missing.append(message.filename)
        due, unwanted = _still_wanted(due, ledger)
        report.due += len(due)
        report.recovered += len(recovered)
        if not sending:
            report.withdrawn += len(unwanted)
            continue
        if recovered:  # a killed send moved these but never recorded them
            _record_outcomes(ledger, recovered)
            log.info("send: recorded %d messages an interrupted send had moved",
                     len(recovered))
        compact.open_journals([m for m, _ in unwanted] + due)  # writable, before anything
        if unwanted:
            _withdraw(unwanted, folders, ledger, report, now, compact)
    if report.taken_back:
        flush_folders(folders.new, folders.cur)
        log.warning("send: %d messages a mail client had moved (Maildir cur/ or flags) were "
                    "put back into outbox/new", report.taken_back)
    unknown = sum(1 for name in waiting if name.endswith(".eml") and name not in known)
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


def _due_pages(ledger: Ledger, folders: Outbox, waiting: set[str], now: datetime,
               report: SendReport, retry_now: bool, compact: CompactQueue
               ) -> Iterator[list[QueuedMessage]]:
    """The second pass: the messages _queue counted as due, a page at a time, read again
    from the ledger as the pool needs them. One whose subscriber left since is withdrawn
    here (and no longer counted as due)."""
    for page in _pages(ledger):
        due = [m for m in page if (m.filename in waiting or compact.waiting(m)) and (
            retry_now or m.next_attempt is None or m.next_attempt <= now)]
        due, unwanted = _still_wanted(due, ledger)
        if unwanted:
            _withdraw(unwanted, folders, ledger, report, now, compact)
            report.due -= len(unwanted)
        if due:
            yield due


Withdrawal = tuple[QueuedMessage, str]  # a message not to send, and why


def _still_wanted(due: list[QueuedMessage], ledger: Ledger
                  ) -> tuple[list[QueuedMessage], list[Withdrawal]]:
    """Split off messages whose subscriber changed their mind after they were written."""
    from pipeline.core.models import email_key
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
    from pipeline.core.models import ACTIVE, PENDING
    from pipeline.mail.confirmation import CONFIRMATION_FILE

    if not status:
        return "is no longer on the list"
    if message.digest_id is not None:
        return None if status == ACTIVE else f"is {status} now"
    made_for = CONFIRMATION_FILE.fullmatch(message.filename)
    if made_for is None or int(made_for[1]) != subscriber_id:
        return "was removed and added again: a newer confirmation replaces this one"
    return None if status == PENDING else f"is {status} now"


def _withdraw(unwanted: list[Withdrawal], folders: Outbox, ledger: Ledger,
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
    _record_outcomes(ledger, [Delivery(message, "withdrawn", why, now, message.attempts)
                              for message, why in unwanted])
    report.withdrawn += len(unwanted)
    log.info("send: %d messages withdrawn: their subscribers left the list", len(unwanted))


def _adopt_confirmations(ledger: Ledger, waiting: set[str], now: datetime) -> None:
    """Queue confirmation files the ledger does not know: written by a run killed before it
    recorded them, or by a version that did not queue them."""
    from pipeline.mail.confirmation import CONFIRMATION_FILE
    from pipeline.state.notices import Notices
    from pipeline.state.subscribers import SubscriberBook

    found = {name: int(match[1]) for name in waiting
             if (match := CONFIRMATION_FILE.fullmatch(name))}
    if not found:
        return
    notices, book = Notices(ledger), SubscriberBook(ledger)
    known = notices.filenames()
    rows = [(name, who.email) for name, sid in sorted(found.items())
            if name not in known and (who := book.by_id(sid)) is not None]
    if rows:
        notices.record(rows, now)


def _record_outcomes(ledger: Ledger, deliveries: list[Delivery]) -> None:
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


def _cap(report: SendReport, limit: int, settings: Settings) -> None:
    """At most the per-run cap of the due messages are sent; the rest are left."""
    caps = [c for c in (limit, settings.max_per_run) if c > 0]
    cap = min(caps) if caps else report.due
    report.due, report.left = min(cap, report.due), max(0, report.due - cap)


def _drain(pages: Iterator[list[QueuedMessage]], delivery: DeliverySettings, rate: float,
           signer: DkimSigner | None, folders: Outbox, ledger: Ledger, report: SendReport,
           clock: Callable[[], datetime], progress: Progress | None,
           sender_for: Callable[[QueuedMessage], str], compact: CompactQueue) -> None:
    results: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
    settings = delivery.settings
    new, sent, failed = str(folders.new), str(folders.sent), str(folders.failed)

    # Plain strings and os.path below: Path joins cost ~40 µs a message, holding the GIL.
    def load(message: QueuedMessage) -> tuple[str, list[str], bytes]:
        if compact.holds(message):
            data = compact.assemble(message)
        else:
            data = _read(os.path.join(new, message.filename))
        # Signed by `run` as it wrote the file: sent as it is. Else (compact, or written
        # before [dkim] was set or changed) signed now, on this connection's thread.
        return sender_for(message), [message.address], \
            signer.ensure_signed(data) if signer else data

    def done(message: QueuedMessage, outcome: Outcome) -> None:  # in the worker: move at once
        when, attempts = clock(), message.attempts + 1
        state, reply, next_attempt = outcome.state, outcome.reply, None
        if state == "sent":
            try:
                if compact.holds(message):
                    compact.record(message, "sent")
                else:
                    move(message.filename, new, sent)
            except OSError as exc:  # record it all the same: it must never go out twice
                results.put(Delivery(message, state, reply, when, attempts))
                raise OutboxError(
                    f"the relay accepted {message.filename} but it cannot be moved into "
                    f"outbox/sent/ ({exc.strerror}): it is recorded as sent and will not be "
                    "sent again (move it into outbox/sent/ by hand); nothing more is sent "
                    "— make the outbox writable") from None
        elif state == "deferred" and attempts >= settings.max_attempts:
            state, reply = "failed", f"gave up after {attempts} attempts: {reply}"
        elif state == "deferred":
            delay = min(settings.retry_after * 2 ** (attempts - 1), MAX_BACKOFF)
            next_attempt = when + timedelta(seconds=delay)
        bouncing = outcome.bouncing and message.digest_id is not None  # not a confirmation
        if state == "failed":
            note = ("the address is refused: subscriber marked bounced" if bouncing
                    else "the subscriber is not marked")
            if compact.holds(message):
                compact.record(message, "failed", f"{reply}\n{note}\n")
            else:
                folders.write_reason(message.filename, f"{reply}\n{note}\n")
                move(message.filename, new, failed)
        results.put(Delivery(message, state, reply, when, attempts, next_attempt,
                             bouncing and state == "failed"))

    pool = Pool(delivery.backend.transports(delivery.transport), settings.connections,
                rate, load, done, pause=settings.retry_after or 1.0)
    fed = 0

    def feed() -> None:
        """Keep a page or two in the pool's queue, never the whole of a large queue; at most
        report.due (the cap) in all."""
        nonlocal fed
        while pool.feeding and pool.jobs.qsize() < PAGE:
            page = next(pages, None) if fed < report.due else None
            if page is None:
                report.due = min(report.due, fed)  # fewer than counted: they went since
                pool.end_feed()
                return
            page = page[:report.due - fed]
            fed += len(page)
            pool.feed(page)

    pool.feeding = True
    feed()
    pool.start([], feeding=pool.feeding)
    batch: list[Delivery] = []
    try:
        # Wake up a few times a second, not once per message: the workers need the GIL more.
        while not pool.wait(RECORD_EVERY):
            _record(batch, results, folders, ledger, report, progress, compact)
            if not pool.stop.is_set():
                feed()
    except KeyboardInterrupt as exc:  # finish the messages in flight, record them, stop
        pool.stop.set()
        report.signal = exc.signum if isinstance(exc, Stopped) else 0
        report.stopped = f"stopped by {exc}" if report.signal else "interrupted"
        pool.join()
        if not report.signal:
            raise
    finally:
        pool.end_feed()  # whatever ended the loop: the threads finish what they hold, no more
        _record(batch, results, folders, ledger, report, progress, compact)
        report.left += report.due - (report.sent + report.deferred + report.failed)
        pool.join()  # raises a setup error (login, TLS, sender) after recording what was done
    report.stopped = report.stopped or pool.stopped


def _read(path: str) -> bytes:
    """A whole file in one read: open()'s file object asks for its size and position and
    reads again to find the end (three more system calls, each a GIL handoff between the
    sending threads)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size)
        while len(data) < size and (more := os.read(fd, size - len(data))):
            data += more
        return data
    finally:
        os.close(fd)


def _record(batch: list[Delivery], results: queue.SimpleQueue[Delivery], folders: Outbox,
            ledger: Ledger, report: SendReport, progress: Progress | None,
            compact: CompactQueue) -> None:
    while not results.empty():
        batch.append(results.get_nowait())
    if not batch:
        return
    flush_folders(folders.new, folders.sent, folders.failed)
    compact.flush()
    _record_outcomes(ledger, batch)
    for delivery in batch:
        setattr(report, delivery.state, getattr(report, delivery.state) + 1)
        if delivery.state == "failed":
            report.failures.append((delivery.message.address, delivery.reply))
    batch.clear()
    if progress is not None:
        progress(report)


def _mark_bouncing(config: Config, ledger: Ledger, report: SendReport) -> None:
    """Refused addresses get status "bounced" on the list, so no digest goes to them again
    (a later import of subscribers.csv does not undo it); the operator puts one back with
    `newsletter subscribers import --reactivate` once the address is fixed."""
    from pipeline.core.models import BOUNCED
    from pipeline.state.subscribers import SubscriberBook

    keys = ledger.unmarked_bounces()
    if not keys:
        return
    addresses = {address for _, address in keys}
    book, now = SubscriberBook(ledger), datetime.now(UTC)
    for address in sorted(addresses):
        book.set_status(address, BOUNCED, now, source="sending")
    ledger.bounces_marked(keys)
    report.bouncing = sorted(addresses)
