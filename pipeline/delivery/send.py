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
import queue
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.core.atomic import flush_folders, move
from pipeline.core.config import Config, load_config
from pipeline.core.deliveries import Delivery, QueuedMessage, SendReport
from pipeline.core.models import Subscriber
from pipeline.delivery import due
from pipeline.delivery.compact_queue import CompactQueue
from pipeline.delivery.envelope import envelope_senders
from pipeline.delivery.folders import OpenFolders, OutboxError, check_writable
from pipeline.delivery.pool import Loaded, Pool
from pipeline.delivery.settings import Delivery as DeliverySettings
from pipeline.delivery.settings import delivery_settings, ready_to_send
from pipeline.delivery.signing import DkimSettings, DkimSigner
from pipeline.delivery.stopping import Stopped, stop_on_signals
from pipeline.delivery.transport import Outcome, Settings
from pipeline.mail.compact import waiting_count
from pipeline.mail.outbox_folders import Outbox
from pipeline.state.ledger import Ledger, open_ledger
from pipeline.state.lock import SEND_LOCK_NAME, site_lock
from pipeline.state.secret import load_secret

log = logging.getLogger("pipeline")
RECORD_EVERY = 0.25  # seconds between ledger batches: bounds what a power cut can undo
LAST_STRETCH = 1000  # messages left to hand over when batches come five times as often
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
        due.adopt_confirmations(ledger, waiting, clock())
        compact = CompactQueue(folders, waiting)
        now = clock()
        # First pass, before anything is sent: recovered outcomes recorded, journals opened, the
        # due counted (and, for a cap, unwanted messages withdrawn first, so that the cap counts
        # wanted ones). The second streams the due to the pool, each page checked against the
        # list just before it goes.
        due.check_queue(ledger, folders, waiting, now, report, config, retry_now, sending=True,
               compact=compact, check_wanted=bool(limit or settings.max_per_run))
        _cap(report, limit, settings)
        log.info("send: %d due, %d waiting for their retry time", report.due, report.waiting)
        try:
            if report.due:
                with OpenFolders(folders) as opened:
                    _drain(due.due_pages(ledger, folders, waiting, now, report, retry_now,
                                         compact),
                           delivery, settings.rate if rate is None else rate, signer,
                           folders, ledger, report, clock, progress,
                           envelope_senders(config, ledger, settings.envelope_from),
                           compact, opened)
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
            due.check_queue(ledger, folders, waiting, now or datetime.now(UTC), report, config,
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



def _cap(report: SendReport, limit: int, settings: Settings) -> None:
    """At most the per-run cap of the due messages are sent; the rest are left."""
    caps = [c for c in (limit, settings.max_per_run) if c > 0]
    cap = min(caps) if caps else report.due
    report.due, report.left = min(cap, report.due), max(0, report.due - cap)


def _drain(pages: Iterator[list[QueuedMessage]], delivery: DeliverySettings, rate: float,
           signer: DkimSigner | None, folders: Outbox, ledger: Ledger, report: SendReport,
           clock: Callable[[], datetime], progress: Progress | None,
           sender_for: Callable[[QueuedMessage], str], compact: CompactQueue,
           opened: OpenFolders) -> None:
    results: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
    settings = delivery.settings
    new, failed = str(folders.new), str(folders.failed)
    read, to_sent = opened.read, opened.to_sent

    # Plain strings and os.path below: Path joins cost ~40 µs a message, holding the GIL.
    def load(message: QueuedMessage) -> Loaded:
        data, no_leading_dot = compact.assemble(message) if compact.holds(message) \
            else read(message.filename)
        # Signed by `run` as it wrote the file: sent as it is. Else (compact, or written
        # before [dkim] was set or changed) signed now, on this connection's thread (a
        # signature's lines start with its name or a tab: no line starts with "." for it).
        return Loaded(sender_for(message), [message.address],
                      signer.ensure_signed(data) if signer else data, no_leading_dot)

    def done(message: QueuedMessage, outcome: Outcome) -> None:  # in the worker: move at once
        when, attempts = clock(), message.attempts + 1
        state, reply, next_attempt = outcome.state, outcome.reply, None
        if state == "sent":
            try:
                if compact.holds(message):
                    compact.record(message, "sent")
                else:
                    to_sent(message.filename)
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

    def feed(pages_at_most: int = -1) -> None:
        """Keep a page or two in the pool's queue, never the whole of a large queue; at most
        report.due (the cap) in all."""
        nonlocal fed
        while pool.feeding and pool.jobs.qsize() < due.PAGE and pages_at_most != 0:
            pages_at_most -= 1
            page = next(pages, None) if fed < report.due else None
            if page is None:
                report.due = min(report.due, fed)  # fewer than counted: they went since
                pool.end_feed()
                return
            page = page[:report.due - fed]
            fed += len(page)
            pool.feed(page)

    pool.feeding = True
    feed(1)  # the first page: sending begins while the next ones are read and checked
    pool.start([], feeding=pool.feeding)
    feed()
    batch: list[Delivery] = []
    try:
        # Wake up a few times a second, not once per message: the workers need the GIL more.
        # In the last stretch more often, so that little is left to record once they are done.
        while not pool.wait(RECORD_EVERY if pool.feeding or pool.jobs.qsize() > LAST_STRETCH
                            else RECORD_EVERY / 5):
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


def _record(batch: list[Delivery], results: queue.SimpleQueue[Delivery], folders: Outbox,
            ledger: Ledger, report: SendReport, progress: Progress | None,
            compact: CompactQueue) -> None:
    while not results.empty():
        batch.append(results.get_nowait())
    if not batch:
        return
    flush_folders(folders.new, folders.sent, folders.failed)
    compact.flush()
    due.record_outcomes(ledger, batch)
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
