"""The subscriber list (subscribers.csv for now) and unsubscribe tokens."""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import re
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import Problem
from pipeline.models import Subscriber

ACTIVE = "active"
# A plain ASCII address (RFC 5322 dot-atom local part, LDH domain labels): the overwhelming
# majority, accepted without email-validator's ~40 µs, which would bound a large fan-out.
_PLAIN = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")


def _plain_address(raw: str) -> str | None:
    """The address with its domain lowercased, if it is plain; None sends it to the validator."""
    if len(raw) > 254 or not _PLAIN.fullmatch(raw):
        return None
    local, domain = raw.rsplit("@", 1)
    return None if len(local) > 64 else f"{local}@{domain.lower()}"


def load_subscribers(path: Path, shown: Path | str | None = None
                     ) -> tuple[list[Subscriber], list[Problem]]:
    """Every active subscriber in the CSV, and the problems with its rows."""
    problems: list[Problem] = []
    return list(read_subscribers(path, problems, shown)), problems


def read_subscribers(path: Path, problems: list[Problem], shown: Path | str | None = None
                     ) -> Iterator[Subscriber]:
    """Active subscribers from a CSV with columns email, name, categories, status, one at a
    time (a six-figure list is never held in memory); problems are appended as met.

    Addresses are validated (syntax only, no DNS) and de-duplicated case-insensitively;
    a bad row is reported with its line number and skipped.
    """
    from email_validator import EmailNotValidError, validate_email  # only when mail goes out

    shown = shown or path
    if not path.exists():
        problems.append(Problem(shown, "file", "not found",
                                "create it with a header line `email,name,categories,status`",
                                warning=True))
        return
    seen: set[str] = set()
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "email" not in [h.strip().lower() for h in reader.fieldnames]:
            problems.append(Problem(shown, "email", "no `email` column",
                                    "start the file with `email,name,categories,status`"))
            return
        for row in reader:
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()
                   if isinstance(v, str)}
            line = reader.line_num
            if not any(row.values()):
                continue
            status = row.get("status", "").lower() or ACTIVE
            if status != ACTIVE:
                continue
            raw = row.get("email", "")
            try:
                email = _plain_address(raw) or validate_email(
                    raw, check_deliverability=False, allow_smtputf8=False).normalized
            except EmailNotValidError as exc:
                problems.append(Problem(shown, "email", f"{row.get('email', '')!r}: {exc}",
                                        "correct the address or remove the row", line=line))
                continue
            if email.lower() in seen:
                continue
            seen.add(email.lower())
            categories = tuple(c.strip() for c in row.get("categories", "").split(";") if c.strip())
            yield Subscriber(email=email, name=" ".join(row.get("name", "").split()),
                             categories=categories)


def unsubscribe_token(secret: bytes, email: str) -> str:
    """HMAC of the address: proves the link was ours without showing the address."""
    digest = hmac.new(secret, email.lower().encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def token_matches(secret: bytes, email: str, token: str) -> bool:
    return hmac.compare_digest(unsubscribe_token(secret, email), token)
