"""The SMTP delivery backend, and the only code that talks SMTP: one connection to the
operator's relay, reused for message after message (one TLS handshake and login, not one per
message).

Every reply is sorted into one of the transport's outcomes: accepted ("sent"), try again later
("deferred": 4xx, a dropped connection, a timeout) or for good ("failed": 5xx for that
recipient). Trouble with the relay itself is raised instead: RelayDown (cannot reach it: stop,
try later) or RelaySetupError (it refuses us as configured: fix the settings).
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from pipeline.core.errors import Problem
from pipeline.delivery.smtp_replies import (
    RelayBusy,
    RelayDown,
    RelaySetupError,
    refusal,
    reply_text,
)
from pipeline.delivery.smtp_session import SendSession, tls_trouble
from pipeline.delivery.smtp_settings import (
    SMTP_SCHEMA,
    SmtpSettings,
    smtp_problems,
    smtp_settings,
)
from pipeline.delivery.smtp_wire import Replies, dot_stuffed, write
from pipeline.delivery.transport import Outcome

__all__ = ["BACKEND", "Connection", "RelayBusy", "RelayDown", "RelaySetupError"]

if TYPE_CHECKING:
    from pipeline.core.config import Config
    from pipeline.delivery.settings import Values

Following = Callable[[], "tuple[object, str, Sequence[str], bytes, bool] | None"]

class _NotSent(Exception):
    """The connection broke before any message data was sent: safe to try again at once."""


class Connection:
    """One SMTP session with the relay, opened on first use and reused."""

    def __init__(self, settings: SmtpSettings, session: SendSession | None = None) -> None:
        self.settings = settings
        self.session = session or SendSession(settings)
        self.smtp: smtplib.SMTP | None = None
        self.where = f"the SMTP relay at {settings.host}:{settings.port}"
        self.wire: Replies | None = None  # the relay's replies, once connected
        self.pipelining, self.size_limit = False, 0  # what the relay offers (EHLO)
        # push()'s message, and the next one's envelope written behind its data
        self._current: _Message | None = None
        self._next: _Message | None = None

    def open(self) -> None:
        s, context = self.settings, self.session.context
        smtp: smtplib.SMTP | None = None
        try:
            if s.tls == "implicit":
                smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            smtp.ehlo()
            if s.tls == "starttls":
                if not smtp.has_extn("starttls"):
                    raise RelaySetupError(f"{self.where} does not offer STARTTLS — set "
                                          'smtp.tls to "implicit" (port 465) or use another '
                                          "relay")
                smtp.starttls(context=context)
                smtp.ehlo()
            if s.user:
                self.session.login(smtp, self.where)
        except RelaySetupError:
            _close(smtp)
            raise
        except ssl.SSLCertVerificationError as exc:
            _close(smtp)
            raise RelaySetupError(tls_trouble(self.where, s, exc.verify_message)) from None
        except ssl.SSLError as exc:
            _close(smtp)
            raise RelaySetupError(tls_trouble(self.where, s, exc.reason or str(exc))
                                  ) from None
        except smtplib.SMTPResponseException as exc:
            _close(smtp)
            raise RelayDown(f"{self.where} answered {reply_text(exc.smtp_code, exc.smtp_error)}"
                            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            _close(smtp)
            raise RelayDown(f"cannot reach {self.where}: {exc or type(exc).__name__}") from None
        self.smtp, self.wire = smtp, Replies(smtp.sock)
        self.pipelining = smtp.has_extn("pipelining")  # RFC 2920
        size = smtp.esmtp_features.get("size", "").strip()  # RFC 1870; none: no limit
        self.size_limit = int(size) if size.isdigit() else 0

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (OSError, smtplib.SMTPException):
                self.smtp.close()
            self.smtp = None

    def _drop(self) -> None:
        if self.smtp is not None:
            self.smtp.close()
            self.smtp = None
        if self.wire is not None:
            self.wire.clear()

    def send(self, sender: str, recipients: Sequence[str], data: bytes) -> Outcome:
        """Hand one message to the relay, waiting for each reply. Raises RelayDown or
        RelaySetupError."""
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

    def _transaction(self, sender: str, recipients: Sequence[str], data: bytes) -> Outcome:
        message = _Message(None, sender, recipients, data, fresh=False)
        if (outcome := self._prepare(message)) is not None:
            return outcome
        replies = self._write_envelope(message)
        if (refused := self._envelope_refused(message, replies)) is not None:
            return refused
        try:
            self._write(message.stuffed, b".\r\n")
        except OSError as exc:
            return self._lost(exc)
        try:
            code, text = self._reply_or_raise()
        except OSError as exc:
            return self._lost(exc)
        return self._verdict(code, text)

    # Driven in turn (Pool, one thread for several connections): push() writes a message's
    # envelope; each step() reads the replies the relay has sent since. With PIPELINING the
    # data goes with the next message's envelope behind it (RFC 2920 lets the end of the data
    # be followed by more commands): one round trip a message. A message whose data was sent
    # is "in flight" until its verdict is read; the next one has only its envelope out.
    @property
    def idle(self) -> bool:
        return self._current is None

    def push(self, tag: object, sender: str, recipients: Sequence[str], data: bytes,
             no_leading_dot: bool = False) -> Outcome | None:
        """Begin a message on an idle connection: its envelope is written, nothing waited
        for; its outcome if it ended at once. `no_leading_dot`: its writer knows that no
        line of `data` starts with "." (no search for dots to double). Raises RelayDown or
        RelaySetupError."""
        message = _Message(tag, sender, recipients, data, fresh=self.smtp is None,
                           no_leading_dot=no_leading_dot)
        self._current = message  # until it ends: held() hands it back on trouble
        if message.fresh:
            self.open()
        outcome = self._prepare(message)
        if outcome is None:
            try:
                message.replies = self._write_envelope(message)
            except _NotSent as exc:
                outcome = self._again(message, exc)
        if outcome is not None:
            self._current = None
        return outcome

    def step(self, following: Following) -> list[tuple[object, Outcome | None]]:
        """Read what the relay answered and go on: the ended messages' outcomes (None: not
        sent, to be handed over again). `following()` gives the next message to send behind
        this one's data, or None. Raises RelayBusy, RelayDown or RelaySetupError; held()
        then says which messages this connection had in hand."""
        message = self._current
        assert message is not None
        if message.data_sent:
            try:
                code, text = self._reply_or_raise()
            except OSError as exc:
                outcome = self._lost(exc)
            else:  # a refusal that is the relay's raises: held() has both messages
                outcome = self._verdict(code, text)
            self._current, self._next = self._next, None
            if self.smtp is None and self._current is not None:  # 421 or lost: not sent
                ended, self._current = [(self._current.tag, None)], None
                return [(message.tag, outcome), *ended]
            return [(message.tag, outcome)]
        try:
            refused = self._envelope_refused(message, message.replies)
        except _NotSent as exc:
            refused = self._again(message, exc)
        if refused is not None:
            self._current = None
            return [(message.tag, refused)]
        ended: list[tuple[object, Outcome | None]] = []
        after = b""
        while self.pipelining and (candidate := following()) is not None:
            self._next = _Message(*candidate, fresh=False)
            if (outcome := self._prepare(self._next)) is None:
                after = self._next.envelope
                break
            ended.append((self._next.tag, outcome))
            self._next = None
        try:
            self._write(message.stuffed, b".\r\n" + after)
        except OSError as exc:
            self._current = None
            ended.append((message.tag, self._lost(exc)))
            if self._next is not None:
                ended.append((self._next.tag, None))
                self._next = None
            return ended
        message.data_sent = True
        return ended

    def held(self) -> list[object]:
        """The messages this connection had in hand when a step raised: none of them was
        accepted. A connection with a pipelined envelope out is dropped (its replies would
        come in the middle of the next conversation)."""
        held = [m.tag for m in (self._current, self._next) if m is not None]
        if self._next is not None:
            self._drop()
        self._current = self._next = None
        return held

    def fileno(self) -> int:
        """For select(): the relay's reply can be read from this socket."""
        assert self.smtp is not None and self.smtp.sock is not None
        return self.smtp.sock.fileno()

    def ready(self) -> bool:
        """Whether the next step need not wait for select(): the replies it needs are read
        (or TLS already holds them decrypted), or the socket is gone (the step says what
        became of the message)."""
        message = self._current
        if message is not None:
            needed = 1 if message.data_sent else 0 if message.replies else message.commands
            if self.wire is not None and self.wire.have(needed):
                return True
        sock = self.smtp.sock if self.smtp is not None else None
        return sock is None or (isinstance(sock, ssl.SSLSocket) and sock.pending() > 0)

    def _again(self, message: _Message, exc: _NotSent) -> Outcome:
        """Nothing of the message was sent: on a reused connection the relay had closed, one
        more try on a new one; a new connection that broke is the relay's trouble."""
        self._drop()
        if message.fresh:
            return Outcome("deferred", str(exc))
        return self.send(message.sender, message.recipients, message.data)

    def _prepare(self, message: _Message) -> Outcome | None:
        """The envelope and the data as they will be sent; an outcome if the message cannot
        go (RelaySetupError if it is over the relay's size)."""
        smtp = self.smtp
        assert smtp is not None
        option, encoding = "", "ascii"
        if not all(r.isascii() for r in message.recipients):
            if not smtp.has_extn("smtputf8"):
                return Outcome("failed", "the relay does not accept non-ASCII addresses "
                               "(no SMTPUTF8)")
            option, encoding = " SMTPUTF8", "utf-8"
        message.stuffed = stuffed = dot_stuffed(message.data, message.no_leading_dot)
        if self.size_limit:
            size = len(stuffed)  # as sent: with dots doubled, without the final ".\r\n"
            if size > self.size_limit:
                raise RelaySetupError(
                    f"a message is {size:,} bytes and {self.where} takes at most "
                    f"{self.size_limit:,} (its SIZE): nothing more is sent, so that no message "
                    "of this digest is refused — raise the relay's limit (Postfix: "
                    "message_size_limit), or lower digest.max_articles for the next digest")
            option += f" SIZE={size}"
        # Not mail()/rcpt(): those re-parse each address with email.utils (~0.1 ms each,
        # holding the GIL); ours were validated when the subscriber list was read.
        message.envelope = (f"MAIL FROM:<{message.sender}>{option}\r\n"
                            + "".join(f"RCPT TO:<{r}>\r\n" for r in message.recipients)
                            + "DATA\r\n").encode(encoding)
        message.commands = len(message.recipients) + 2
        return None

    def _write_envelope(self, message: _Message) -> list[tuple[int, bytes]] | None:
        """Write the envelope: all at once with PIPELINING (the replies are read later, None
        here), else each command after the one before it succeeded (the replies)."""
        try:
            if self.pipelining:
                self._write(message.envelope)
                return None
            replies = []
            for command in message.envelope.split(b"\r\n")[:-1]:
                self._write(command + b"\r\n")
                replies.append(self._reply_or_raise())
                if replies[-1][0] not in (250, 251, 354):
                    break
            return replies
        except OSError as exc:
            raise _NotSent(f"connection lost before the message was sent: {exc}") from None

    def _envelope_refused(self, message: _Message, replies: list[tuple[int, bytes]] | None
                          ) -> Outcome | None:
        try:
            if replies is None:
                replies = [self._reply_or_raise() for _ in range(message.commands)]
            return self._refused(message.sender, replies, message.commands)
        except OSError as exc:
            raise _NotSent(f"connection lost before the message was sent: {exc}") from None

    def _write(self, *parts: bytes) -> None:
        assert self.smtp is not None and self.smtp.sock is not None
        write(self.smtp.sock, *parts)

    def _reply_or_raise(self) -> tuple[int, bytes]:
        assert self.wire is not None
        return self.wire.take()

    def _verdict(self, code: int, text: bytes) -> Outcome:
        if code == 250:
            return Outcome("sent", reply_text(code, text))
        if code == 421:
            self._drop()
        return refusal(code, text, "end of DATA")

    def _lost(self, exc: Exception) -> Outcome:
        # The data may have arrived: this is the one retry that can deliver twice.
        self._drop()
        return Outcome("deferred", f"connection lost during the message data: {exc}")

    def _refused(self, sender: str, replies: list[tuple[int, bytes]], sent: int
                 ) -> Outcome | None:
        """None if the relay is ready for the data (354) for every recipient; else the
        outcome, after undoing what a pipelined DATA may have started."""
        codes = [code for code, _ in replies]
        if (len(codes) == sent and codes[0] == 250 and codes[-1] == 354
                and all(code in (250, 251) for code in codes[1:-1])):
            return None
        if len(codes) == sent and codes[-1] == 354:  # DATA accepted, a recipient refused
            self._write(b".\r\n")
            self._reply_or_raise()
        stages = ["MAIL", *["RCPT"] * (sent - 2), "DATA"]
        for (code, text), stage in zip(replies, stages, strict=False):
            if code == 421:  # closing the connection; nothing of the message was sent
                raise _NotSent(reply_text(code, text))
            if code in (250, 251, 354):
                continue
            self._write(b"RSET\r\n")
            self._reply_or_raise()
            if stage == "MAIL" and code >= 500:  # about our envelope sender, not them
                refusal(code, text, stage)  # raises first for the relay's policy or a size
                raise RelaySetupError(f"the relay refused the envelope sender {sender}: "
                                      f"{reply_text(code, text)} — check smtp.envelope_from")
            return refusal(code, text, stage)
        return Outcome("deferred", "unexpected replies: " + "; ".join(
            reply_text(code, text) for code, text in replies))


class _Message:
    """A message on its way through a connection."""

    __slots__ = ("commands", "data", "data_sent", "envelope", "fresh", "no_leading_dot",
                 "recipients", "replies", "sender", "stuffed", "tag")

    def __init__(self, tag: object, sender: str, recipients: Sequence[str], data: bytes,
                 no_leading_dot: bool = False, *, fresh: bool) -> None:
        self.tag, self.sender, self.recipients, self.data = tag, sender, recipients, data
        self.no_leading_dot = no_leading_dot
        self.fresh, self.data_sent, self.commands = fresh, False, 0
        self.replies: list[tuple[int, bytes]] | None = None
        self.stuffed = self.envelope = b""


def _close(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        with contextlib.suppress(OSError):
            smtp.close()


class SmtpBackend:
    """The SMTP relay as a delivery backend ([delivery] backend = "smtp")."""

    name = "smtp"
    schema: ClassVar[Mapping[str, Mapping[str, object]]] = {"smtp": SMTP_SCHEMA}

    def settings(self, values: Values, config: Config) -> SmtpSettings:
        return smtp_settings(values, config)

    def check(self, settings: SmtpSettings, config: Config) -> list[Problem]:
        return smtp_problems(settings, config)

    def transports(self, settings: SmtpSettings) -> Callable[[], Connection]:
        return _Connections(settings)


class _Connections:
    """Makes the connections of one send. `in_turn`: one thread may drive them all, a step
    of a message on each in turn (see Connection.begin)."""

    in_turn = True

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings, self.session = settings, SendSession(settings)

    def __call__(self) -> Connection:
        return Connection(self.settings, self.session)


BACKEND = SmtpBackend()
