"""The [bounces] settings of newsletter.toml (and `email.return_path`): where returning mail is
read from and how temporary failures add up to a bounce."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

IMAP_PASSWORD_ENV = "NEWSLETTER_IMAP_PASSWORD"  # never in a file we read
IMAP_TLS_MODES = {"implicit": 993, "starttls": 143, "none": 143}
LOOPBACK = ("localhost", "127.0.0.1", "::1")

BOUNCES_SCHEMA: dict[str, object] = {
    "imap_host": "",
    "imap_port": 0,  # 0: the usual port for imap_tls
    "imap_tls": "implicit",
    "imap_user": "",
    "imap_ca_file": "",  # a PEM file of CAs to trust besides the system's (an internal CA)
    "imap_folder": "INBOX",
    "processed_folder": "Processed",  # where fetched mail goes once it is recorded
    "kept_folder": "Kept",  # mail that changed nothing and needs a look
    "soft_limit": 3,  # temporary failures ...
    "soft_days": 14,  # ... within this many days make an address bounced
    "max_size_kb": 1024,  # larger returning mail is refused unread
    "sns_topics": [],  # ARNs of the SNS topics whose SES notifications /ses-notifications takes
}


@dataclass(frozen=True)
class BounceSettings:
    imap_host: str = ""
    imap_port: int = 993
    imap_tls: str = "implicit"
    imap_user: str = ""
    imap_ca_file: Path | None = None
    imap_folder: str = "INBOX"
    processed_folder: str = "Processed"
    kept_folder: str = "Kept"
    soft_limit: int = 3
    soft_days: int = 14
    max_size: int = 1024 * 1024  # bytes
    sns_topics: tuple[str, ...] = ()


def check_return_path(value: str) -> str | None:
    """What is wrong with an `email.return_path` value, or None ("" is allowed: off)."""
    if not value:
        return None
    if value.count("{token}") != 1:
        return "must contain {token} once"
    local, at, domain = value.partition("@")
    if not at or "{token}" not in local or "@" in domain or "." not in domain:
        return "must be an address with {token} before the @"
    if any(c in value for c in " <>\"\r\n\t,;()[]\\"):
        return "must be a bare address (no name, no <>, no spaces)"
    if len(local.replace("{token}", "")) > 20:
        return "the part before the @ leaves no room for the token (keep it under 20 characters)"
    return None


def bounce_settings(site_dir: Path, v: dict[str, object], string: Callable[[str], str],
                    bad: Callable[[str, str, str], None]) -> BounceSettings:
    """The [bounces] table and email.return_path, checked; problems go to `bad`."""
    def whole(key: str, minimum: int) -> int:
        value = v[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            bad(key, f"must be a whole number of {minimum} or more",
                f"e.g. `{key.split('.')[-1]} = {BOUNCES_SCHEMA[key.split('.')[-1]]}`")
            return minimum
        return value

    problem = check_return_path(string("email.return_path"))
    if problem:
        bad("email.return_path", problem, 'e.g. "bounces+{token}@your.domain", or leave it out')
    tls = string("bounces.imap_tls").lower()
    if tls not in IMAP_TLS_MODES:
        bad("bounces.imap_tls", f"{tls!r} is not a TLS mode",
            '"implicit" (port 993), "starttls" (port 143) or "none" (a server on this machine)')
        tls = "implicit"
    host = string("bounces.imap_host")
    if tls == "none" and host and host not in LOOPBACK:
        bad("bounces.imap_tls", '"none" would send the password unencrypted to ' + host,
            'use "implicit" or "starttls"; "none" is only for a server on this machine')
    port = whole("bounces.imap_port", 0) or IMAP_TLS_MODES[tls]
    if port > 65535:
        bad("bounces.imap_port", f"{port} is not a port", "use the server's port, e.g. 993")
    folders = {}
    for key in ("imap_folder", "processed_folder", "kept_folder"):
        name = string(f"bounces.{key}")
        if not name or any(c in name for c in "\r\n\"\\*%"):
            bad(f"bounces.{key}", f"{name!r} is not a folder name",
                'give the IMAP folder by name, e.g. "Processed"')
            name = str(BOUNCES_SCHEMA[key])
        folders[key] = name
    topics = v.get("bounces.sns_topics", [])
    topics = [topics] if isinstance(topics, str) else topics
    if not isinstance(topics, list) or not all(
            isinstance(t, str) and t.startswith("arn:aws") and ":sns:" in t for t in topics):
        bad("bounces.sns_topics", "must be a list of SNS topic ARNs",
            'e.g. `sns_topics = ["arn:aws:sns:eu-west-1:123456789012:ses-bounces"]`')
        topics = []
    ca_name = string("bounces.imap_ca_file")
    ca_file = (site_dir / ca_name) if ca_name else None
    if ca_file is not None and not ca_file.is_file():
        bad("bounces.imap_ca_file", f"no file at {ca_file}",
            "give the path of a PEM file of CA certificates, relative to the site folder")
    return BounceSettings(
        sns_topics=tuple(topics), imap_ca_file=ca_file,
        imap_host=host, imap_port=port, imap_tls=tls, imap_user=string("bounces.imap_user"),
        soft_limit=whole("bounces.soft_limit", 1), soft_days=whole("bounces.soft_days", 1),
        max_size=whole("bounces.max_size_kb", 1) * 1024, **folders)
