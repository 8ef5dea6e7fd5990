"""The only code that talks SMTP: a small pool of connections to the operator's relay.

Each connection is reused for message after message (one TLS handshake and login each, not
one per message). A reply is sorted into what the issue asks for: accepted ("sent"), try again
later ("deferred": 4xx, a dropped connection, a timeout) or permanent ("failed": 5xx for that
recipient). Nothing here touches files or the ledger: the caller's `load` reads a message and
its `done` records the outcome, both in the worker thread, so the file is moved the moment the
relay accepts it.
"""

from __future__ import annotations

import os
import queue
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pipeline.smtp_settings import PASSWORD_ENV, SmtpSettings

Job = TypeVar("Job")
# Enhanced status codes (RFC 3463) that say the mailbox itself is bad, whatever the stage.
MAILBOX_STATUS = ("5.1.", "5.2.1")


@dataclass(frozen=True)
class Outcome:
    state: str  # "sent", "deferred" or "failed"
    reply: str  # "250 2.0.0 Ok: queued as 4B2F…", or what went wrong
    bouncing: bool = False  # failed because the recipient's address is refused


class RelayDown(Exception):
    """The relay cannot be reached or refuses every connection: stop, try again later."""


class RelaySetupError(Exception):
    """The relay refuses us as configured (login, TLS, sender): retrying will not help."""


class _NotSent(Exception):
    """The connection broke before any message data was sent: safe to try again at once."""


def _reply(code: int, text: bytes | str) -> str:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {' '.join(text.split())}"


def _refusal(code: int, text: bytes, stage: str) -> Outcome:
    reply = _reply(code, text)
    if 400 <= code < 500:
        return Outcome("deferred", reply)
    mailbox = stage == "RCPT" or any(f" {s}" in f" {reply[4:]}" for s in MAILBOX_STATUS)
    return Outcome("failed", f"{reply} (at {stage})", bouncing=mailbox)


class Connection:
    """One SMTP session with the relay, opened on first use and reused."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.smtp: smtplib.SMTP | None = None

    def open(self) -> None:
        s = self.settings
        where = f"the SMTP relay at {s.host}:{s.port}"
        context = ssl.create_default_context()
        try:
            if s.tls == "implicit":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout,
                                                      context=context)
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            smtp.ehlo()
            if s.tls == "starttls":
                if not smtp.has_extn("starttls"):
                    smtp.close()
                    raise RelaySetupError(f"{where} does not offer STARTTLS — set smtp.tls to "
                                          '"implicit" (port 465) or use another relay')
                smtp.starttls(context=context)
                smtp.ehlo()
            if s.user:
                # Read here and nowhere else: the password is in no setting, report or log.
                smtp.login(s.user, os.environ.get(PASSWORD_ENV, ""))
        except ssl.SSLCertVerificationError as exc:
            raise RelaySetupError(f"{where}: its TLS certificate is not trusted "
                                  f"({exc.verify_message}) — check smtp.host") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise RelaySetupError(f"{where} refused the login for {s.user!r}: "
                                  f"{_reply(exc.smtp_code, exc.smtp_error)} — check smtp.user "
                                  f"and {PASSWORD_ENV}") from None
        except smtplib.SMTPNotSupportedError:
            raise RelaySetupError(f"{where} offers no login (AUTH) — leave smtp.user empty, "
                                  "or use TLS if it offers AUTH only after STARTTLS") from None
        except smtplib.SMTPResponseException as exc:
            raise RelayDown(f"{where} answered {_reply(exc.smtp_code, exc.smtp_error)}"
                            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise RelayDown(f"cannot reach {where}: {exc or type(exc).__name__}") from None
        self.smtp = smtp

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (OSError, smtplib.SMTPException):
                self.smtp.close()
            self.smtp = None

    def send(self, sender: str, recipient: str, data: bytes) -> Outcome:
        """Hand one message to the relay. Raises RelayDown or RelaySetupError."""
        for _ in range(2):
            fresh = self.smtp is None
            if fresh:
                self.open()
            try:
                return self._transaction(sender, recipient, data)
            except _NotSent as exc:
                self._drop()
                if fresh:  # a new connection broke too: the relay's trouble, not the message's
                    return Outcome("deferred", str(exc))
                # A reused connection the relay had closed (idle, or its per-connection limit):
                # nothing was sent, so one more try on a new connection is safe.
        return Outcome("deferred", "the connection was closed twice before the message")

    def _drop(self) -> None:
        if self.smtp is not None:
            self.smtp.close()
            self.smtp = None

    def _transaction(self, sender: str, recipient: str, data: bytes) -> Outcome:
        smtp = self.smtp
        assert smtp is not None
        options = []
        if not recipient.isascii():
            if not smtp.has_extn("smtputf8"):
                return Outcome("failed", "the relay does not accept non-ASCII addresses "
                               "(no SMTPUTF8)")
            options.append("SMTPUTF8")
        try:
            code, text = smtp.mail(sender, options)
            if code == 421:
                raise _NotSent(_reply(code, text))
            if code != 250:
                smtp.rset()
                if code >= 500:  # about our envelope sender, not the recipient
                    raise RelaySetupError(f"the relay refused the envelope sender {sender}: "
                                          f"{_reply(code, text)} — check smtp.envelope_from")
                return Outcome("deferred", _reply(code, text))
            code, text = smtp.rcpt(recipient)
            if code == 421:
                raise _NotSent(_reply(code, text))
            if code not in (250, 251):
                smtp.rset()
                return _refusal(code, text, "RCPT")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _NotSent(f"connection lost before the message was sent: {exc}") from None
        try:
            code, text = smtp.data(data)
        except smtplib.SMTPDataError as exc:  # refused the DATA command itself
            if exc.smtp_code == 421:
                self._drop()
            return _refusal(exc.smtp_code, exc.smtp_error, "DATA")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # The data may have arrived: this is the one retry that can deliver twice.
            self._drop()
            return Outcome("deferred", f"connection lost during the message data: {exc}")
        if code == 250:
            return Outcome("sent", _reply(code, text))
        if code == 421:
            self._drop()
        return _refusal(code, text, "end of DATA")


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

    def __init__(self, settings: SmtpSettings, sender: str, rate: float,
                 load: Callable[[Job], tuple[str, bytes]],
                 done: Callable[[Job, Outcome], None]) -> None:
        self.settings, self.sender, self.load, self.done = settings, sender, load, done
        self.limit = RateLimit(rate)
        self.jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.stop = threading.Event()
        self.stopped = ""  # why the pool stopped early
        self.error: BaseException | None = None  # a setup error or a bug, raised by join()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def start(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            self.jobs.put(job)
        count = min(self.settings.connections, max(1, self.jobs.qsize()))
        self.alive = count
        self.threads = [threading.Thread(target=self._work, name=f"smtp-{n}", daemon=True)
                        for n in range(count)]
        for thread in self.threads:
            thread.start()

    def busy(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def join(self, timeout: float | None = None) -> None:
        for thread in self.threads:
            thread.join(timeout)
        if self.error is not None:
            raise self.error

    def _work(self) -> None:
        connection = Connection(self.settings)
        job: Job | None = None
        try:
            while not self.stop.is_set():
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    return
                self.limit.wait()
                recipient, data = self.load(job)
                outcome = connection.send(self.sender, recipient, data)
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
