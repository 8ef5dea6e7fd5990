"""The subscriber list (subscribers.csv for now) and unsubscribe tokens."""

from __future__ import annotations

import base64
import codecs
import csv
import hashlib
import hmac
import io
from collections.abc import Iterator
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from pipeline.errors import ConfigError, Problem
from pipeline.models import Subscriber

ACTIVE = "active"


def load_subscribers(path: Path, shown: Path | str | None = None
                     ) -> tuple[list[Subscriber], list[Problem]]:
    """Active subscribers from a CSV with columns email, name, categories, status.

    Addresses are validated (syntax only, no DNS) and de-duplicated case-insensitively;
    a bad row is reported with its line number and skipped. A file that cannot be read as a
    whole (not UTF-8, no `email` column, broken CSV) raises ConfigError: going on would build
    a digest that reaches no one and mark its entries as sent.
    """
    shown = shown or path
    if not path.exists():
        return [], [Problem(shown, "file", "not found",
                            "create it with a header line `email,name,categories,status`",
                            warning=True)]
    subscribers: list[Subscriber] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    with io.StringIO(_text_of(path, shown), newline="") as f:
        reader = csv.DictReader(f)
        if "email" not in _columns(reader, shown):
            raise ConfigError([Problem(shown, "email", "no `email` column",
                                       "start the file with `email,name,categories,status`")])
        for row in _rows(reader, shown):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()
                   if isinstance(v, str)}
            line = reader.line_num
            if not any(row.values()):
                continue
            status = row.get("status", "").lower() or ACTIVE
            if status != ACTIVE:
                continue
            try:
                # Messages are 7-bit: an accented local part would need SMTPUTF8, which we do
                # not send, and would crash message assembly; an IDN domain goes as punycode.
                checked = validate_email(row.get("email", ""), check_deliverability=False,
                                         allow_smtputf8=False)
                email = checked.ascii_email or checked.normalized
            except EmailNotValidError as exc:
                problems.append(Problem(shown, "email", f"{row.get('email', '')!r}: {exc}",
                                        "correct the address or remove the row", line=line))
                continue
            if email.lower() in seen:
                continue
            seen.add(email.lower())
            categories = tuple(c.strip() for c in row.get("categories", "").split(";") if c.strip())
            subscribers.append(Subscriber(email=email, name=" ".join(row.get("name", "").split()),
                                          categories=categories))
    return subscribers, problems


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


def unsubscribe_token(secret: bytes, email: str) -> str:
    """HMAC of the address: proves the link was ours without showing the address."""
    digest = hmac.new(secret, email.lower().encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def token_matches(secret: bytes, email: str, token: str) -> bool:
    return hmac.compare_digest(unsubscribe_token(secret, email), token)
