"""Addresses, checked strictly: those written in the config (From, Reply-To, the unsubscribe
mailto) and subscribers' (normalised as the list stores them)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Mailbox:
    """An address from the config. A plain one is parsed without the email package and
    email-validator: a no-op run must not pay for importing them."""

    display_name: str
    addr_spec: str

    @property
    def domain(self) -> str:
        return self.addr_spec.rsplit("@", 1)[1]

    def __str__(self) -> str:
        from email.utils import formataddr

        return formataddr((self.display_name, self.addr_spec))


# `Plain Name <local@domain>` or `local@domain`: a name of letters, digits, spaces and . ' -
# only, nothing that could hide a second address or need quoting. No bounded repeats (`{0,61}`):
# they cost ~14 ms to compile, on every run; label lengths are checked in Python instead.
_PLAIN_MAILBOX = re.compile(r"(?:([A-Za-z0-9 .'-]*?) *<)?([^<>\s\"]+@[^<>\s\"]+)(?(1)>|)")
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# Dot-separated labels of letters, digits and inner hyphens, the last one letters only (≥ 2).
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z]+")


def _plain_addr(addr: str) -> bool:
    local, _, domain = addr.rpartition("@")
    return (len(local) <= 64 and len(domain) <= 253 and bool(_DOT_ATOM.fullmatch(local))
            and bool(_DOMAIN.fullmatch(domain))
            and (len(domain) <= 63 or all(len(label) <= 63 for label in domain.split("."))))


def parse_address(value: str) -> tuple[Mailbox | None, str]:
    """Exactly one `Name <local@domain>` or bare address, checked as strictly as a subscriber's
    (ASCII before the @: messages are not sent with SMTPUTF8); else (None, why not)."""
    if not value:
        return None, "it is empty"
    plain = _PLAIN_MAILBOX.fullmatch(value)
    if plain and _plain_addr(plain.group(2)):
        return Mailbox((plain.group(1) or "").strip(), plain.group(2)), ""
    from email.utils import getaddresses

    from email_validator import EmailNotValidError, validate_email

    if any(c in value for c in "\r\n"):
        return None, "it spans lines"
    found = getaddresses([value])
    if len(found) != 1:
        return None, f"{len(found)} addresses"
    name, addr = found[0]
    try:
        checked = validate_email(addr, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        return None, str(exc).rstrip(".")
    local, domain = (checked.ascii_email or checked.normalized).rsplit("@", 1)
    return Mailbox(name, f"{local}@{domain}"), ""


def normalise_address(raw: str) -> str:
    """A subscriber's address as we store it (syntax checked, no DNS); ValueError says what is
    wrong. A plain ASCII address (the overwhelming majority) is accepted without
    email-validator's ~40 µs, which would bound the import of a large list."""
    raw = raw.strip()
    if len(raw) <= 254 and _plain_addr(raw):
        local, domain = raw.rsplit("@", 1)
        return f"{local}@{domain.lower()}"
    from email_validator import EmailNotValidError, validate_email  # only off the no-op path

    try:
        # Messages are 7-bit: an accented local part would need SMTPUTF8, which we do not
        # send; an international domain goes as punycode.
        checked = validate_email(raw, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return checked.ascii_email or checked.normalized
