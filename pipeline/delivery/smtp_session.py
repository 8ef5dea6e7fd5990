"""TLS with the relay, and what the connections of one send share: kept apart from smtp.py
(which talks SMTP) so that each stays small."""

from __future__ import annotations

import base64
import os
import ssl
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.delivery.smtp_replies import RelaySetupError, reply_text
from pipeline.delivery.smtp_settings import PASSWORD_ENV

if TYPE_CHECKING:
    from pipeline.delivery.smtp_settings import SmtpSettings


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """Certificates checked against smtp.ca_file if set, else the system's CAs. Loading
    those costs ~0.15 s of CPU, so a send shares one context and a plain relay makes none."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


class SendSession:
    """What the connections of one send share: the TLS context, and the login's fate, so a
    refused password is tried once per send, not once per connection and mechanism (a relay's
    fail2ban would ban the host after one cron run)."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        try:
            self.context = (tls_context(settings.ca_file) if settings.tls != "none"
                            else None)
        except (ssl.SSLError, OSError) as exc:
            raise RelaySetupError(f"smtp.ca_file: cannot load {settings.ca_file} as PEM CA "
                                  f"certificates ({exc}) — give the CA's certificate in PEM "
                                  "form") from None
        self.login_lock = threading.Lock()
        self.login_proven = False
        self.login_refused: RelaySetupError | None = None

    def login(self, smtp: Any, where: str) -> None:
        """Log in on a new connection (an smtplib.SMTP). The first connection logs in while
        the others wait; if the relay refuses, none of them tries again."""
        with self.login_lock:
            if self.login_refused is not None:
                raise self.login_refused
            if not self.login_proven:
                try:
                    self._login(smtp, where)
                except RelaySetupError as exc:
                    self.login_refused = exc
                    raise
                self.login_proven = True
                return
        self._login(smtp, where)

    def _login(self, smtp: Any, where: str) -> None:
        """AUTH PLAIN (else LOGIN), once, with the password in UTF-8 (RFC 4616): smtplib's
        login() tries every mechanism in turn and encodes as ASCII, so a non-ASCII password
        fails with an error that shows part of it."""
        user = self.settings.user
        # Read here and nowhere else: the password is in no setting, report or log.
        password = os.environ.get(PASSWORD_ENV, "").encode("utf-8", "surrogatepass")
        mechanisms = (smtp.esmtp_features.get("auth") or "").upper().split()
        if not smtp.has_extn("auth"):
            raise RelaySetupError(f"{where} offers no login (AUTH) — leave smtp.user "
                                  "empty, or use TLS if it offers AUTH only after STARTTLS")
        if "PLAIN" in mechanisms:
            token = _b64(b"\0" + user.encode("utf-8") + b"\0" + password)
            code, text = smtp.docmd("AUTH", "PLAIN " + token)
        elif "LOGIN" in mechanisms:
            code, text = smtp.docmd("AUTH", "LOGIN " + _b64(user.encode("utf-8")))
            if code == 334:
                code, text = smtp.docmd(_b64(password))
        else:
            raise RelaySetupError(f"{where} offers only the login mechanisms "
                                  f"{' '.join(mechanisms)}; we speak PLAIN and LOGIN (over TLS)")
        if code != 235:
            raise RelaySetupError(f"{where} refused the login for {user!r}: "
                                  f"{reply_text(code, text)} — check smtp.user and "
                                  f"{PASSWORD_ENV} (tried once, not again until the next send)")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def tls_trouble(where: str, s: SmtpSettings, why: str) -> str:
    """What to check when TLS with the relay fails, by what failed."""
    low = why.lower()
    if "hostname" in low or "ip address mismatch" in low:
        hint = (f"the certificate is not for {s.host!r}: set smtp.host to a name the "
                "certificate lists")
    elif "expired" in low or "not yet valid" in low:
        hint = "the relay's certificate is out of date: renew it on the relay"
    elif "certificate" in low or "issuer" in low:
        hint = ("set smtp.ca_file to the PEM file of the authority that signed the relay's "
                "certificate (an internal CA), or give the relay a publicly trusted one"
                + (f"; now trusted: only {s.ca_file}" if s.ca_file else ""))
    else:
        hint = ('check smtp.tls and smtp.port: "implicit" is TLS from the start (port 465), '
                '"starttls" upgrades a plain connection (port 587)')
    kind = ("its TLS certificate is not trusted" if "certificate" in low
            or "issuer" in low or "hostname" in low or "mismatch" in low else "TLS failed")
    return f"{where}: {kind} ({why}) — {hint}"
