"""A small pool of connections to the relay, working through one queue of messages.

Nothing here touches files or the ledger: the caller's `load` reads a message and its `done`
records the outcome, both in the worker thread, so a file is moved the moment the relay
accepts it (the shortest window for sending a message twice).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from pipeline.delivery.smtp import Connection, Outcome, RelayDown, tls_context
from pipeline.delivery.smtp_settings import SmtpSettings

Job = TypeVar("Job")


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


class RelayPool(Generic[Job]):
    """`connections` threads, each with its own Connection, working through one queue.

    A thread that cannot connect hands its message back and retires, so a relay that allows
    fewer connections than configured still gets all the work; when the last one cannot
    connect, the pool stops and `stopped` says why (the rest stays queued, untried).
    """

    def __init__(self, settings: SmtpSettings, rate: float,
                 load: Callable[[Job], tuple[str, str, bytes]],  # (sender, recipient, data)
                 done: Callable[[Job, Outcome], None]) -> None:
        self.settings, self.load, self.done = settings, load, done
        self.limit = RateLimit(rate)
        self.context = tls_context() if settings.tls != "none" else None
        self.jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.stop = threading.Event()
        self.stopped = ""  # why the pool stopped early
        self.error: BaseException | None = None  # a setup error or a bug, raised by join()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.finished = threading.Event()  # set when the last thread is done
        self.running = 0

    def start(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            self.jobs.put(job)
        count = min(self.settings.connections, max(1, self.jobs.qsize()))
        self.alive = self.running = count
        self.threads = [threading.Thread(target=self._work, name=f"smtp-{n}", daemon=True)
                        for n in range(count)]
        for thread in self.threads:
            thread.start()

    def wait(self, timeout: float) -> bool:
        """Wait until every thread is done (True) or `timeout` seconds have passed."""
        return self.finished.wait(timeout)

    def join(self, timeout: float | None = None) -> None:
        for thread in self.threads:
            thread.join(timeout)
        if self.error is not None:
            raise self.error

    def _work(self) -> None:
        connection = Connection(self.settings, self.context)
        job: Job | None = None
        try:
            while not self.stop.is_set():
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    return
                self.limit.wait()
                sender, recipient, data = self.load(job)
                outcome = connection.send(sender, recipient, data)
                self.done(job, outcome)
                job = None
        except RelayDown as exc:
            with self.lock:
                self.alive -= 1
                last = self.alive == 0
                if last:
                    self.stopped = str(exc)
                    self.stop.set()
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
            with self.lock:
                self.running -= 1
                if self.running == 0:
                    self.finished.set()
