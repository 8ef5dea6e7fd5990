"""The [smtp] table of newsletter.toml: how `newsletter send` reaches the relay. Apart from
smtp.py so that checking the settings does not import smtplib and ssl."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.errors import Problem

if TYPE_CHECKING:
    from pipeline.core.config import Config
    from pipeline.delivery.settings import Values

PASSWORD_ENV = "NEWSLETTER_SMTP_PASSWORD"  # the SMTP password never lives in a file we read
TLS_MODES = {"starttls": 587, "implicit": 465, "none": 25}  # and each one's usual port
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")

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
    "ca_file": "",
}


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
    ca_file: Path | None = None  # trust this CA (PEM) for the relay instead of the system's


def smtp_settings(values: Values, config: Config) -> SmtpSettings:
    """The [smtp] table, checked; problems go to `values.bad` with the rest of the config's."""
    bad = values.bad
    tls = values.string("smtp.tls").lower()
    if tls not in TLS_MODES:
        bad("smtp.tls", f"{tls!r} is not a TLS mode",
            '"starttls" (port 587), "implicit" (port 465) or "none" (a relay on this machine)')
        tls = "starttls"
    port = int(values.number("smtp.port", 0)) or TLS_MODES[tls]
    if port > 65535:
        bad("smtp.port", f"{port} is not a port", "use the relay's port, e.g. 587")
    host, user = values.string("smtp.host"), values.string("smtp.user")
    if tls == "none" and user and host not in LOCAL_HOSTS:
        bad("smtp.tls", '"none" would send the password unencrypted to ' + host,
            'use "starttls" or "implicit", or a relay on this machine')
    envelope = values.string("smtp.envelope_from") or config.from_address.addr_spec
    if envelope and (envelope.count("@") != 1 or any(c in envelope for c in " <>\r\n")):
        bad("smtp.envelope_from", f"{envelope!r} is not a bare address",
            'write it as "bounces@your.domain" (no name, no <>)')
    ca_file = values.file("smtp.ca_file", "the PEM certificate of the CA that signed the "
                          "relay's certificate")
    if ca_file is not None and b"-----BEGIN CERTIFICATE-----" not in ca_file.read_bytes():
        bad("smtp.ca_file", f"{ca_file} holds no PEM certificate",
            "give the CA's certificate in PEM form (-----BEGIN CERTIFICATE-----)")
        ca_file = None
    if ca_file is not None and tls == "none":
        bad("smtp.ca_file", 'is set but smtp.tls is "none"', 'use "starttls" or "implicit"')
    return SmtpSettings(
        host=host, port=port, tls=tls, user=user, envelope_from=envelope,
        connections=int(values.number("smtp.connections", 1)),
        rate=values.number("smtp.rate", 0, False),
        max_per_run=int(values.number("smtp.max_per_run", 0)),
        timeout=values.number("smtp.timeout", 1, False),
        retry_after=values.number("smtp.retry_after", 0, False),
        max_attempts=int(values.number("smtp.max_attempts", 1)), ca_file=ca_file)


def smtp_problems(settings: SmtpSettings, config: Config) -> list[Problem]:
    """What is missing before anything can be sent through the relay."""
    problems = []
    if not settings.host:
        problems.append(config.problem(
            "smtp.host", "is not set",
            'add [smtp] with host = "smtp.your-provider.example" (and port, tls, user)'))
    if settings.user and not os.environ.get(PASSWORD_ENV):
        problems.append(Problem("environment", PASSWORD_ENV, f"is empty, but smtp.user is "
                                f"{settings.user!r}", f"export {PASSWORD_ENV}=… in the job's "
                                "environment (never in newsletter.toml)"))
    return problems
