"""The [smtp] and [dkim] settings of newsletter.toml: how `newsletter send` reaches the relay."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the email package costs a no-op run ~20 ms to import
    from pipeline.core.addresses import Mailbox

PASSWORD_ENV = "NEWSLETTER_SMTP_PASSWORD"  # the SMTP password never lives in a file we read
TLS_MODES = {"starttls": 587, "implicit": 465, "none": 25}  # and each one's usual port

SMTP_SCHEMA: dict[str, object] = {
    "host": "",
    "port": 0,  # 0: the usual port for `tls`
    "tls": "starttls",
    "user": "",
    "envelope_from": "",
    "connections": 4,
    "rate": 0,
    "max_per_run": 0,
    "timeout": 60,
    "retry_after": 60,
    "max_attempts": 10,
}
DKIM_SCHEMA: dict[str, object] = {"selector": "", "domain": "", "private_key": ""}


@dataclass(frozen=True)
class SmtpSettings:
    """How `newsletter send` reaches the operator's relay. The password is not here: it is
    read from the environment when a connection logs in, so it never sits in a value that
    could be printed."""

    host: str = ""
    port: int = 587
    tls: str = "starttls"  # "starttls", "implicit" (SMTPS) or "none"
    user: str = ""
    envelope_from: str = ""  # MAIL FROM: where bounces go
    connections: int = 4
    rate: float = 0.0  # messages per second; 0: as fast as the relay takes them
    max_per_run: int = 0  # 0: no cap
    timeout: float = 60.0
    retry_after: float = 60.0  # the first retry's delay; it doubles per attempt, up to an hour
    max_attempts: int = 10
    dkim_selector: str = ""
    dkim_domain: str = ""
    dkim_key: Path | None = None  # DKIM signing is on when this is set



def smtp_settings(site_dir: Path, v: dict[str, object], string: Callable[[str], str],
          bad: Callable[[str, str, str], None], from_address: Mailbox | None) -> SmtpSettings:
    """The [smtp] and [dkim] tables, checked; problems go to `bad` with the other config's."""
    def number(key: str, minimum: float, whole: bool = True) -> float:
        value = v[key]
        kinds = (int,) if whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:
            kind = "whole number" if whole else "number"
            bad(key, f"must be a {kind} of {minimum:g} or more",
                f"e.g. `{key.split('.')[-1]} = {SMTP_SCHEMA[key.split('.')[-1]]}`")
            return float(minimum)
        return value if whole else float(value)

    tls = string("smtp.tls").lower()
    if tls not in TLS_MODES:
        bad("smtp.tls", f"{tls!r} is not a TLS mode",
            '"starttls" (port 587), "implicit" (port 465) or "none" (a relay on this machine)')
        tls = "starttls"
    port = int(number("smtp.port", 0)) or TLS_MODES[tls]
    if port > 65535:
        bad("smtp.port", f"{port} is not a port", "use the relay's port, e.g. 587")
    host, user = string("smtp.host"), string("smtp.user")
    if tls == "none" and user and host not in ("localhost", "127.0.0.1", "::1"):
        bad("smtp.tls", '"none" would send the password unencrypted to ' + host,
            'use "starttls" or "implicit", or a relay on this machine')
    envelope = string("smtp.envelope_from") or (from_address.addr_spec if from_address else "")
    if envelope and (envelope.count("@") != 1 or any(c in envelope for c in " <>\r\n")):
        bad("smtp.envelope_from", f"{envelope!r} is not a bare address",
            'write it as "bounces@your.domain" (no name, no <>)')
    selector, key_path = string("dkim.selector"), string("dkim.private_key")
    dkim_domain = string("dkim.domain") or (from_address.domain if from_address else "")
    if bool(selector) != bool(key_path):
        bad("dkim.selector" if key_path else "dkim.private_key", "is missing",
            "DKIM needs both dkim.selector and dkim.private_key (or neither)")
    key = (site_dir / key_path) if key_path else None
    if key is not None and not key.is_file():
        bad("dkim.private_key", f"no file at {key}",
            "give the path of the PEM private key, relative to the site folder")
    return SmtpSettings(
        host=host, port=port, tls=tls, user=user, envelope_from=envelope,
        connections=int(number("smtp.connections", 1)), rate=number("smtp.rate", 0, False),
        max_per_run=int(number("smtp.max_per_run", 0)),
        timeout=number("smtp.timeout", 1, False), retry_after=number("smtp.retry_after", 0, False),
        max_attempts=int(number("smtp.max_attempts", 1)),
        dkim_selector=selector, dkim_domain=dkim_domain, dkim_key=key if selector else None)
