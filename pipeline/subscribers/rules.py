"""Subscribers: the CSV import/export format, address validation, categories, and tokens.

The list itself lives in the ledger (see ledger_subscribers.py); subscribers.csv is what an
operator edits, imports and exports.
"""

from __future__ import annotations

import base64
import codecs
import csv
import hashlib
import hmac
import io
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from pipeline.core.errors import ConfigError, Problem
from pipeline.core.models import Subscriber

ACTIVE, PENDING, UNSUBSCRIBED, BOUNCED = "active", "pending", "unsubscribed", "bounced"
COMPLAINED = "complained"  # issue 15: a spam complaint; never mailed again
STATUSES = (ACTIVE, PENDING, UNSUBSCRIBED, BOUNCED, COMPLAINED)
# Other spellings met in real files (and "bouncing", which the send branch writes).
_STATUS_ALIASES = {"": ACTIVE, "subscribed": ACTIVE, "bouncing": BOUNCED}
COLUMNS = ("email", "name", "categories", "status")
# A plain ASCII address (RFC 5322 dot-atom local part, LDH domain labels): the overwhelming
# majority, accepted without email-validator's ~40 µs, which would bound a large fan-out.
_PLAIN = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
_CATEGORY_SPLIT = re.compile(r"[;,|]")


def _plain_address(raw: str) -> str | None:
    """The address with its domain lowercased, if it is plain; None sends it to the validator."""
    if len(raw) > 254 or not _PLAIN.fullmatch(raw):
        return None
    local, domain = raw.rsplit("@", 1)
    return None if len(local) > 64 else f"{local}@{domain.lower()}"


def normalise_address(raw: str) -> str:
    """The address as we store it (syntax checked, no DNS); ValueError says what is wrong."""
    from email_validator import EmailNotValidError, validate_email  # only off the no-op path

    raw = raw.strip()
    try:
        plain = _plain_address(raw)
        if plain:
            return plain
        # Messages are 7-bit: an accented local part would need SMTPUTF8, which we do not
        # send; an international domain goes as punycode.
        checked = validate_email(raw, check_deliverability=False, allow_smtputf8=False)
        return checked.ascii_email or checked.normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


def email_key(email: str) -> str:
    """Addresses are the same person whatever their case (what providers actually do)."""
    return email.lower()


def parse_categories(text: str | Iterable[str]) -> tuple[str, ...]:
    """Categories from `Heart Health;Nutrition` (or , or | between them), de-duplicated
    case-insensitively and sorted, so one choice always has one spelling."""
    parts = _CATEGORY_SPLIT.split(text) if isinstance(text, str) else list(text)
    found: dict[str, str] = {}
    for part in parts:
        name = " ".join(part.split())
        if name:
            found.setdefault(name.casefold(), name)
    return tuple(found[key] for key in sorted(found))


def segment_key(categories: Iterable[str]) -> str:
    """Who gets the same digest: subscribers whose chosen categories match case-insensitively.
    "" is everyone who chose nothing (they get every entry)."""
    return ";".join(sorted({" ".join(c.split()).casefold() for c in categories} - {""}))


def parse_status(text: str) -> str | None:
    status = text.strip().lower()
    status = _STATUS_ALIASES.get(status, status)
    return status if status in STATUSES else None


def load_subscribers(path: Path, shown: Path | str | None = None
                     ) -> tuple[list[Subscriber], list[Problem]]:
    """Every active subscriber in the CSV, and the problems with its rows."""
    problems: list[Problem] = []
    return list(read_subscribers(path, problems, shown)), problems


def read_subscribers(path: Path, problems: list[Problem], shown: Path | str | None = None
                     ) -> Iterator[Subscriber]:
    """The active rows of a subscribers CSV (see read_rows)."""
    return (s for s in read_rows(path, problems, shown) if s.status == ACTIVE)


def read_rows(path: Path, problems: list[Problem], shown: Path | str | None = None
              ) -> Iterator[Subscriber]:
    """Every valid row of a CSV with columns email, name, categories, status, one at a time
    (a six-figure list is never held in memory); problems are appended as met.

    Copes with what spreadsheets write: a BOM, `;` or tab between columns, headers in any
    case, blank lines. Addresses are validated and de-duplicated case-insensitively (the first
    row wins); a bad row is reported with its line number and skipped. A file that cannot be
    read as a whole (not UTF-8, no `email` column, broken CSV) raises ConfigError: going on
    would build a digest that reaches no one and mark its entries as sent.
    """
    shown = shown or path
    if not path.exists():
        problems.append(Problem(shown, "file", "not found",
                                "create it with a header line `email,name,categories,status`",
                                warning=True))
        return
    seen: set[str] = set()
    text = _text_of(path, shown)
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f, delimiter=_delimiter(text.partition("\n")[0]))
        if "email" not in _columns(reader, shown):
            raise ConfigError([Problem(shown, "email", "no `email` column",
                                       "start the file with `email,name,categories,status`")])
        for row in _rows(reader, shown):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()
                   if isinstance(v, str)}
            line = reader.line_num
            if not any(row.values()):
                continue
            raw = row.get("email", "")
            status = parse_status(row.get("status", ""))
            if status is None:
                problems.append(Problem(shown, "status", f"{raw}: unknown status "
                                        f"{row.get('status')!r}",
                                        f"use one of: {', '.join(STATUSES)}", line=line))
                continue
            try:
                email = normalise_address(raw)
            except ValueError as exc:
                problems.append(Problem(shown, "email", f"{raw!r}: {exc}",
                                        "correct the address or remove the row", line=line))
                continue
            if email_key(email) in seen:
                continue
            seen.add(email_key(email))
            yield Subscriber(email=email, name=" ".join(row.get("name", "").split()),
                             categories=parse_categories(row.get("categories", "")),
                             status=status)


def _text_of(path: Path, shown: Path | str) -> str:
    data = path.read_bytes()
    hint = "export it as \"CSV UTF-8\" (Excel) or save it as UTF-8"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ConfigError([Problem(shown, "file", "is UTF-16, not UTF-8", hint)])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:  # guessing (Latin-1? Windows-1252?) would garble names
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError([Problem(shown, "file", f"is not UTF-8 (byte {exc.start})", hint,
                                   line=line)]) from None


def _columns(reader: csv.DictReader[str], shown: Path | str) -> list[str]:
    try:
        return [h.strip().lower() for h in reader.fieldnames or ()]
    except csv.Error as exc:
        raise _broken(exc, reader, shown) from None


def _rows(reader: csv.DictReader[str], shown: Path | str) -> Iterator[dict[str, str | None]]:
    try:
        yield from reader
    except csv.Error as exc:
        raise _broken(exc, reader, shown) from None


def _broken(exc: csv.Error, reader: csv.DictReader[str], shown: Path | str) -> ConfigError:
    # The reader cannot resume after a syntax error, so the rest of the file is suspect too.
    return ConfigError([Problem(shown, "file", f"is not valid CSV ({exc})",
                                "fix that line or export the list again", line=reader.line_num)])


def _delimiter(header: str) -> str:
    """The column separator, judged by the header line alone: csv.Sniffer guesses from data
    rows too, where `;` also separates categories, and then splits a row wrongly."""
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def write_csv(out: TextIO, subscribers: Iterable[Subscriber]) -> int:
    """Export in the import format; returns the number of rows."""
    count = 0
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for s in subscribers:
        writer.writerow((s.email, s.name, ";".join(s.categories), s.status))
        count += 1
    return count


# Tokens. `<id>.<mac>`: the id finds the row at once; the MAC (HMAC-SHA256 over purpose, id
# and address with the site secret) proves we made it. Neither part shows the address.
def subscriber_token(secret: bytes, subscriber_id: int, email: str,
                     purpose: str = "unsubscribe") -> str:
    message = f"{purpose}\0{subscriber_id}\0{email_key(email)}".encode()
    mac = hmac.new(secret, message, hashlib.sha256).digest()
    return f"{subscriber_id}.{base64.urlsafe_b64encode(mac[:18]).decode()}"


def token_id(token: str) -> int | None:
    """The subscriber id a token claims (unverified), or None if it is not a token of ours."""
    head, dot, mac = token.partition(".")
    if not dot or not head.isascii() or not head.isdigit() or len(head) > 18 or len(mac) != 24:
        return None
    return int(head)


def token_valid(secrets: Iterable[bytes], subscriber_id: int, email: str, token: str,
                purpose: str = "unsubscribe") -> bool:
    """True if one of the secrets (the current one, then the previous ones during a rotation)
    made this token; compared in constant time."""
    return any(hmac.compare_digest(subscriber_token(s, subscriber_id, email, purpose), token)
               for s in secrets)


def unsubscribe_token(secret: bytes, email: str) -> str:
    """The first release's token: an HMAC of the address alone. Links already delivered with
    it keep working (web.py looks the address up by recomputing); new mail uses
    subscriber_token."""
    digest = hmac.new(secret, email.lower().encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def token_matches(secret: bytes, email: str, token: str) -> bool:
    return hmac.compare_digest(unsubscribe_token(secret, email), token)
