"""A small pool of transports (connections to the relay, or API clients), working through one
queue of messages. It knows only the transport interface, never which backend it drives.

Nothing here touches files or the ledger: the caller's `load` reads a message and its `done`
records the outcome, both in the worker thread, so a file is moved the moment the relay
accepts it (the shortest window for sending a message twice).
"""

from __future__ import annotations

import logging
import queue
import re
import select
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from pipeline.delivery.transport import (
    Outcome,
    Transport,
    TransportBusy,
    TransportDown,
    TransportSetupError,
)

log = logging.getLogger("pipeline")
Job = TypeVar("Job")
MAX_PAUSES = 6  # rate-limit pauses in a row (nothing accepted between them) before stopping
MAX_PAUSE = 600.0  # seconds: the longest single pause
# Threads driving connections in turn. One: with a message's data and the next envelope in
# one write, two threads cost more in GIL handoffs (~1.8 context switches a message) than
# they win by overlapping the kernel's loopback copy (bench/README.md, "Sending").
IN_TURN_THREADS = 1
ANSWER_WAIT = 5.0  # seconds: waiting for any of the connections driven in turn to answer
SAME_IN_A_ROW = 3  # the same refusal for this many messages in a row: the relay's, not theirs
_VARYING = re.compile(r"<[^>]*>|\S+@\S+|\b(?=[0-9A-Za-z]*\d)[0-9A-Za-z]{6,}\b")


def refusal_key(reply: str) -> str:
    """A refusal without what varies per message (addresses, queue ids)."""
    return _VARYING.sub("…", reply)


def _answered(busy: list[Any]) -> list[Any]:
    """The connections whose relay has answered (its reply can be read without waiting); if
    none has for a while, the oldest, whose read then waits up to its own timeout."""
    ready = [c for c in busy if c.ready()]
    return ready or select.select(busy, [], [], ANSWER_WAIT)[0] or busy[:1]


class RateLimit:
    """At most `rate` message starts per second across all connections (0: no limit)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next)
            self.next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


class Loaded(NamedTuple):
    """A message as the pool hands it to a transport."""

    sender: str
    recipients: Sequence[str]
    data: bytes
    no_leading_dot: bool = False  # known by its writer: SMTP need not search it (core/dot_mark.py)


class Pool(Generic[Job]):
    """`connections` threads, each with its own Transport, working through one queue; or,
    for transports that take messages in steps (SMTP), IN_TURN_THREADS threads that each
    drive their share of the connections in turn.

    A thread that cannot connect hands its message back and retires, so a relay that allows
    fewer connections than configured still gets all the work; when the last one cannot
    connect, the pool stops and `stopped` says why (the rest stays queued, untried).
    When the transport says it is busy (a relay-wide rate limit), every thread pauses and the
    message is handed over again, its attempts not spent; the pause doubles while the limit
    lasts, and after MAX_PAUSES in a row with nothing accepted the pool stops the same way.
    A refusal that does not blame the address is held back until the next outcome shows it
    was this message's: the same refusal for SAME_IN_A_ROW messages in a row is the relay's
    policy, and stops the pool as a setup error with those messages still queued.
    """

    def __init__(self, connect: Callable[[], Transport], connections: int, rate: float,
                 load: Callable[[Job], Loaded],
                 done: Callable[[Job, Outcome], None], pause: float = 60.0) -> None:
        self.connect, self.connections = connect, connections
        self.pause, self.pauses, self.resume_at = pause, 0, 0.0
        self.held: list[tuple[Job, Outcome]] = []  # refusals not yet blamed on the message
        self.held_key = ""
        self.load, self.done = load, done
        self.limit = RateLimit(rate)
        self.jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.stop = threading.Event()
        self.stopped = ""  # why the pool stopped early
        self.error: BaseException | None = None  # a setup error or a bug, raised by join()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.finished = threading.Event()  # set when the last thread is done
        self.running = 0
        self.feeding = False  # more jobs may come (feed); the threads wait for them

    def start(self, jobs: Iterable[Job], feeding: bool = False) -> None:
        """Start on `jobs`; with `feeding`, the threads wait for more (feed) until
        end_feed."""
        self.feeding = feeding
        self.feed(jobs)
        count = min(self.connections, max(1, self.jobs.qsize()))
        self.alive = self.running = count
        if getattr(self.connect, "in_turn", False):  # each thread drives several in turn
            shares = [len(range(n, count, IN_TURN_THREADS)) for n in range(IN_TURN_THREADS)]
            shares = [share for share in shares if share]
            self.running = len(shares)
            self.threads = [threading.Thread(target=self._work_in_turn, args=(share,),
                                             name=f"send-{n}", daemon=True)
                            for n, share in enumerate(shares)]
        else:
            self.threads = [threading.Thread(target=self._work, name=f"send-{n}",
                                             daemon=True) for n in range(count)]
        for thread in self.threads:
            thread.start()

    def feed(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            self.jobs.put(job)

    def end_feed(self) -> None:
        """No more jobs will come: each thread ends when the queue is empty."""
        self.feeding = False

    def _take(self) -> Job | None:
        """The next job; None when there is none and none will come (or stopping)."""
        while not self.stop.is_set():
            try:
                return self.jobs.get(timeout=0.05) if self.feeding else self.jobs.get_nowait()
            except queue.Empty:
                if not self.feeding:
                    return None
        return None

    def wait(self, timeout: float) -> bool:
        """Wait until every thread is done (True) or `timeout` seconds have passed."""
        return self.finished.wait(timeout)

    def join(self, timeout: float | None = None) -> None:
        for thread in self.threads:
            thread.join(timeout)
        if self.error is not None:
            raise self.error

    def _work(self) -> None:
        connection = self.connect()
        job: Job | None = None
        try:
            while not self.stop.is_set():
                job = self._take()
                if job is None:
                    return
                self._wait_out_pause()
                self.limit.wait()
                sender, recipients, data, _ = self.load(job)
                try:
                    outcome = connection.send(sender, recipients, data)
                except TransportBusy as exc:
                    self.jobs.put(job)  # not this message's fault: no attempt spent
                    job = None
                    self._pause(exc)
                    continue
                if outcome.state == "sent" and self.pauses:
                    with self.lock:
                        self.pauses = 0
                self._settle(job, outcome)
                job = None
        except TransportDown as exc:
            last = self._retire(exc)
            if job is not None:
                if last:
                    self.done(job, Outcome("deferred", str(exc)))
                else:
                    self.jobs.put(job)
        except BaseException as exc:  # a setup error or a bug: stop everyone, raise in join()
            with self.lock:
                self.error = self.error or exc
                self.stop.set()
        finally:
            connection.close()
            self._last_out()

    def _work_in_turn(self, count: int) -> None:
        """`_work` for transports that take messages in steps (push, step): one thread
        drives several connections, writing to each as its relay answers, so that each waits
        for its relay while the others are served, without the GIL handoffs between threads
        that cost as much CPU as the rest of the send (see bench/README.md, "Sending")."""
        connections: list[Any] = [self.connect() for _ in range(count)]
        try:
            while connections:
                for connection in list(connections):
                    if connection.idle:  # a new message: its envelope is written, no wait
                        self._push(connection, connections)
                busy = [connection for connection in connections if not connection.idle]
                if not busy:
                    if self.stop.is_set() or (self.jobs.empty() and not self.feeding):
                        return
                    if self.jobs.empty():  # the next jobs are being read: wait for them
                        self.stop.wait(0.01)
                    self._wait_out_pause()
                    continue
                for connection in _answered(busy):
                    self._advance(connection, connections)
        finally:
            for connection in connections:
                connection.close()
            self._last_out()

    def _following(self) -> tuple[Any, str, Sequence[str], bytes, bool] | None:
        """The next message to begin, loaded; None while stopping or pausing, or if none
        is queued."""
        if self.stop.is_set() or time.monotonic() < self.resume_at:
            return None
        try:
            job = self.jobs.get_nowait()
        except queue.Empty:
            return None
        self.limit.wait()
        return (job, *self.load(job))

    def _push(self, connection: Any, connections: list[Any]) -> None:
        try:  # loading the message may fail too (a file gone from the outbox): stop, raise
            following = self._following()
            if following is None:
                return
            outcome = connection.push(*following)
            if outcome is not None:
                self._ended(following[0], outcome)
        except BaseException as exc:
            self._trouble(connection, connections, exc)

    def _advance(self, connection: Any, connections: list[Any]) -> None:
        """One step on a connection whose relay answered."""
        try:
            for job, outcome in connection.step(self._following):
                if outcome is None:  # nothing of it was sent: another connection takes it
                    self.jobs.put(job)
                else:  # a refusal that proves to be the relay's raises here
                    self._ended(job, outcome)
        except BaseException as exc:
            self._trouble(connection, connections, exc)

    def _ended(self, job: Job, outcome: Outcome) -> None:
        if outcome.state == "sent" and self.pauses:
            with self.lock:
                self.pauses = 0
        self._settle(job, outcome)

    def _trouble(self, connection: Any, connections: list[Any], exc: BaseException) -> None:
        """A step raised: the messages the connection had in hand were not accepted."""
        held = connection.held()
        if isinstance(exc, TransportBusy):
            for job in held:
                self.jobs.put(job)  # not their fault: no attempt spent
            self._pause(exc)
            return
        connections.remove(connection)
        connection.close()
        if isinstance(exc, TransportDown):  # this connection retires, as a thread does
            last = self._retire(exc)
            for job in held:
                if last:
                    self.done(job, Outcome("deferred", str(exc)))
                else:
                    self.jobs.put(job)
            return
        with self.lock:  # a setup error or a bug: the others finish their step
            self.error = self.error or exc
            self.stop.set()

    def _retire(self, exc: TransportDown) -> bool:
        """One connection fewer; True when it was the last (the pool stops)."""
        with self.lock:
            self.alive -= 1
            last = self.alive == 0
            if last:
                self.stopped = str(exc)
                self.stop.set()
        return last

    def _last_out(self) -> None:
        """A thread is done; the last one releases the held refusals (the send ended:
        they were the messages' own)."""
        with self.lock:
            self.running -= 1
            last_out = self.running == 0
            held = self.held if last_out and self.error is None else []
            self.held = [] if held else self.held
        for held_job, outcome in held:
            self.done(held_job, outcome)
        if last_out:
            self.finished.set()

    def _settle(self, job: Job, outcome: Outcome) -> None:
        """Record an outcome, or hold back a refusal that may be the relay's (see above)."""
        holdable = outcome.state == "failed" and not outcome.bouncing
        key = refusal_key(outcome.reply) if holdable else ""
        with self.lock:
            if self.error is not None:  # stopped for a setup error: the held stay queued
                if holdable:
                    return
                release: list[tuple[Job, Outcome]] = []
            elif holdable and key == self.held_key:
                self.held.append((job, outcome))
                if len(self.held) >= SAME_IN_A_ROW:
                    raise TransportSetupError(
                        f"{len(self.held)} messages in a row were refused with the same reply "
                        f"({outcome.reply}): that is the relay's doing, not the recipients' — "
                        "check the relay's settings for this host; no subscriber was marked")
                return
            else:
                release, self.held, self.held_key = self.held, [], key
                if holdable:
                    self.held.append((job, outcome))
        for held_job, held_outcome in release:
            self.done(held_job, held_outcome)
        if not holdable:
            self.done(job, outcome)

    def _pause(self, busy: TransportBusy) -> None:
        with self.lock:
            now = time.monotonic()
            if now < self.resume_at:  # another thread has paused us already
                return
            self.pauses += 1
            if self.pauses > MAX_PAUSES:
                self.stopped = f"{busy} (still limited after {MAX_PAUSES} pauses)"
                self.stop.set()
                return
            delay = busy.wait or min(self.pause * 2 ** (self.pauses - 1), MAX_PAUSE)
            self.resume_at = now + delay
        log.warning("send: %s — pausing %.0f s", busy, delay)

    def _wait_out_pause(self) -> None:
        while (left := self.resume_at - time.monotonic()) > 0 and not self.stop.is_set():
            self.stop.wait(min(left, 0.5))
