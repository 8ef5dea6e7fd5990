"""The only code that talks SMTP: one connection to the operator's relay, reused for message
after message (one TLS handshake and login, not one per message).

Every reply is sorted into one of three outcomes: accepted ("sent"), try again later
("deferred": 4xx, a dropped connection, a timeout) or for good ("failed": 5xx for that
recipient). Trouble with the relay itself is raised instead: RelayDown (cannot reach it: stop,
try later) or RelaySetupError (it refuses us as configured: fix the settings).
"""

from __future__ import annotations

import os
import smtplib
import ssl
from dataclasses import dataclass

from pipeline.delivery.smtp_settings import PASSWORD_ENV, SmtpSettings

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
        option = ""
        if not recipient.isascii():
            if not smtp.has_extn("smtputf8"):
                return Outcome("failed", "the relay does not accept non-ASCII addresses "
                               "(no SMTPUTF8)")
            option = " SMTPUTF8"
            smtp.command_encoding = "utf-8"  # as smtplib's mail() does for SMTPUTF8
        # Not mail()/rcpt(): those re-parse each address with email.utils (~0.1 ms each,
        # holding the GIL); ours were validated when the subscriber list was read.
        commands = [f"MAIL FROM:<{sender}>{option}\r\n", f"RCPT TO:<{recipient}>\r\n",
                    "DATA\r\n"]
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
            refused = self._refused(sender, replies)
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

    def _refused(self, sender: str, replies: list[tuple[int, bytes]]) -> Outcome | None:
        """None if the relay is ready for the data (354); else the outcome, after undoing
        what a pipelined DATA may have started."""
        if [code for code, _ in replies] in ([250, 250, 354], [250, 251, 354]):
            return None
        assert self.smtp is not None
        if len(replies) == 3 and replies[2][0] == 354:  # DATA accepted without a recipient
            self.smtp.send(b".\r\n")
            self.smtp.getreply()
        for (code, text), stage in zip(replies, ("MAIL", "RCPT", "DATA"), strict=False):
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
