"""The SMTP delivery backend, and the only code that talks SMTP: one connection to the
operator's relay, reused for message after message (one TLS handshake and login, not one per
message).

Every reply is sorted into one of the transport's outcomes: accepted ("sent"), try again later
("deferred": 4xx, a dropped connection, a timeout) or for good ("failed": 5xx for that
recipient). Trouble with the relay itself is raised instead: RelayDown (cannot reach it: stop,
try later) or RelaySetupError (it refuses us as configured: fix the settings).
"""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from pipeline.core.errors import Problem
from pipeline.delivery.smtp_settings import (
    PASSWORD_ENV,
    SMTP_SCHEMA,
    SmtpSettings,
    smtp_problems,
    smtp_settings,
)
from pipeline.delivery.transport import Outcome, TransportDown, TransportSetupError

if TYPE_CHECKING:
    from pipeline.core.config import Config
    from pipeline.delivery.settings import Values

# Enhanced status codes (RFC 3463) that say the mailbox itself is bad, whatever the stage.
MAILBOX_STATUS = ("5.1.", "5.2.1")


class RelayDown(TransportDown):
    """The relay cannot be reached or refuses every connection: stop, try again later."""


class RelaySetupError(TransportSetupError):
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


def tls_context() -> ssl.SSLContext:
    """Certificates checked against the system's CAs. Loading those costs ~0.15 s of CPU, so
    a pool shares one context and a plain loopback relay makes none."""
    return ssl.create_default_context()


class Connection:
    """One SMTP session with the relay, opened on first use and reused."""

    def __init__(self, settings: SmtpSettings, context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.context = context
        self.smtp: smtplib.SMTP | None = None

    def open(self) -> None:
        s = self.settings
        where = f"the SMTP relay at {s.host}:{s.port}"
        if self.context is None and s.tls != "none":
            self.context = tls_context()
        context = self.context
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

    def send(self, sender: str, recipients: Sequence[str], data: bytes) -> Outcome:
        """Hand one message to the relay. Raises RelayDown or RelaySetupError."""
        for _ in range(2):
            fresh = self.smtp is None
            if fresh:
                self.open()
            try:
                return self._transaction(sender, recipients, data)
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

    def _transaction(self, sender: str, recipients: Sequence[str], data: bytes) -> Outcome:
        smtp = self.smtp
        assert smtp is not None
        option = ""
        if not all(r.isascii() for r in recipients):
            if not smtp.has_extn("smtputf8"):
                return Outcome("failed", "the relay does not accept non-ASCII addresses "
                               "(no SMTPUTF8)")
            option = " SMTPUTF8"
            smtp.command_encoding = "utf-8"  # as smtplib's mail() does for SMTPUTF8
        # Not mail()/rcpt(): those re-parse each address with email.utils (~0.1 ms each,
        # holding the GIL); ours were validated when the subscriber list was read.
        commands = [f"MAIL FROM:<{sender}>{option}\r\n",
                    *(f"RCPT TO:<{r}>\r\n" for r in recipients), "DATA\r\n"]
        try:
            if smtp.has_extn("pipelining"):  # RFC 2920: one round trip for all three
                smtp.send("".join(commands))
                replies = [smtp.getreply() for _ in commands]
            else:  # each command waits for the one before it to succeed
                replies = []
                for command in commands:
                    smtp.send(command)
                    replies.append(smtp.getreply())
                    if replies[-1][0] not in (250, 251, 354):
                        break
            refused = self._refused(sender, replies, len(commands))
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _NotSent(f"connection lost before the message was sent: {exc}") from None
        if refused is not None:
            return refused
        try:
            smtp.send(_dot_stuffed(data))
            code, text = smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # The data may have arrived: this is the one retry that can deliver twice.
            self._drop()
            return Outcome("deferred", f"connection lost during the message data: {exc}")
        if code == 250:
            return Outcome("sent", _reply(code, text))
        if code == 421:
            self._drop()
        return _refusal(code, text, "end of DATA")

    def _refused(self, sender: str, replies: list[tuple[int, bytes]], sent: int
                 ) -> Outcome | None:
        """None if the relay is ready for the data (354) for every recipient; else the
        outcome, after undoing what a pipelined DATA may have started."""
        codes = [code for code, _ in replies]
        if (len(codes) == sent and codes[0] == 250 and codes[-1] == 354
                and all(code in (250, 251) for code in codes[1:-1])):
            return None
        assert self.smtp is not None
        if len(codes) == sent and codes[-1] == 354:  # DATA accepted, a recipient refused
            self.smtp.send(b".\r\n")
            self.smtp.getreply()
        stages = ["MAIL", *["RCPT"] * (sent - 2), "DATA"]
        for (code, text), stage in zip(replies, stages, strict=False):
            if code == 421:  # closing the connection; nothing of the message was sent
                raise _NotSent(_reply(code, text))
            if code in (250, 251, 354):
                continue
            self.smtp.rset()
            if stage == "MAIL" and code >= 500:  # about our envelope sender, not them
                raise RelaySetupError(f"the relay refused the envelope sender {sender}: "
                                      f"{_reply(code, text)} — check smtp.envelope_from")
            return _refusal(code, text, stage)
        return Outcome("deferred", "unexpected replies: " + "; ".join(
            _reply(code, text) for code, text in replies))


def _dot_stuffed(data: bytes) -> bytes:
    """The message as DATA wants it: a leading "." doubled on every line, ".\r\n" after.
    smtplib's data() does this with a regex that costs ~0.5 ms per 50 KB message while
    holding the GIL (bytes.replace ~0.1 ms); our messages have CRLF line ends and only a
    few lines starting with ".", so C-speed searches and one join do it in a fraction."""
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    view = memoryview(data)
    pieces: list[bytes | memoryview] = [b"." if data.startswith(b".") else b""]
    start = 0
    while (found := data.find(b"\r\n.", start)) >= 0:
        pieces.append(view[start:found + 2])
        pieces.append(b".")
        start = found + 2
    pieces.append(view[start:])
    pieces.append(b".\r\n")
    return b"".join(pieces)


class SmtpBackend:
    """The SMTP relay as a delivery backend ([delivery] backend = "smtp")."""

    name = "smtp"
    schema: ClassVar[Mapping[str, Mapping[str, object]]] = {"smtp": SMTP_SCHEMA}

    def settings(self, values: Values, config: Config) -> SmtpSettings:
        return smtp_settings(values, config)

    def check(self, settings: SmtpSettings, config: Config) -> list[Problem]:
        return smtp_problems(settings, config)

    def transports(self, settings: SmtpSettings) -> Callable[[], Connection]:
        # One TLS context for the whole send: loading the CAs costs ~0.15 s of CPU.
        context = tls_context() if settings.tls != "none" else None
        return lambda: Connection(settings, context)


BACKEND = SmtpBackend()
