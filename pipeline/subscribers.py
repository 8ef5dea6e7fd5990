"""The subscriber list (subscribers.csv for now) and unsubscribe tokens."""

from __future__ import annotations

import base64
import codecs
import csv
import hashlib
import hmac
import io
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from pipeline.atomic import write_atomic
from pipeline.errors import Problem
from pipeline.models import Subscriber

ACTIVE = "active"
BOUNCING = "bouncing"  # set by `newsletter send` when the relay refuses the address


def load_subscribers(path: Path, shown: Path | str | None = None
                     ) -> tuple[list[Subscriber], list[Problem]]:
    """Active subscribers from a CSV with columns email, name, categories, status.

    Addresses are validated (syntax only, no DNS) and de-duplicated case-insensitively;
    a bad row is reported with its line number and skipped.
    """
    shown = shown or path
    if not path.exists():
        return [], [Problem(shown, "file", "not found",
                            "create it with a header line `email,name,categories,status`",
                            warning=True)]
    subscribers: list[Subscriber] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "email" not in [h.strip().lower() for h in reader.fieldnames]:
            return [], [Problem(shown, "email", "no `email` column",
                                "start the file with `email,name,categories,status`")]
        for row in reader:
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()
                   if isinstance(v, str)}
            line = reader.line_num
            if not any(row.values()):
                continue
            status = row.get("status", "").lower() or ACTIVE
            if status != ACTIVE:
                continue
            try:
                email = validate_email(row.get("email", ""), check_deliverability=False).normalized
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


def unsubscribe_token(secret: bytes, email: str) -> str:
    """HMAC of the address: proves the link was ours without showing the address."""
    digest = hmac.new(secret, email.lower().encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def token_matches(secret: bytes, email: str, token: str) -> bool:
    return hmac.compare_digest(unsubscribe_token(secret, email), token)


def mark_bouncing(path: Path, addresses: set[str]) -> set[str]:
    """Set status "bouncing" on these addresses' rows (they then get no digest), rewriting
    only those lines: the rest of the operator's file stays byte for byte. Returns the
    addresses whose rows were found."""
    wanted = {a.lower() for a in addresses}
    raw = path.read_bytes()
    bom = codecs.BOM_UTF8 if raw.startswith(codecs.BOM_UTF8) else b""
    lines = raw[len(bom):].decode("utf-8").splitlines(keepends=True)
    reader = csv.reader(lines)
    header = next(reader, None)
    names = [h.strip().lower() for h in header or []]
    if "email" not in names:
        return set()
    email_at = names.index("email")
    if "status" not in names:  # add the column; rows without the field stay "active"
        ending = lines[0][len(lines[0].rstrip("\r\n")):]
        lines[0] = lines[0].rstrip("\r\n") + ",status" + ending
        names.append("status")
    status_at = names.index("status")
    found: set[str] = set()
    start = reader.line_num
    for row in reader:
        end = reader.line_num
        if len(row) > email_at and row[email_at].strip().lower() in wanted:
            found.add(row[email_at].strip().lower())
            row += [""] * (status_at + 1 - len(row))
            row[status_at] = BOUNCING
            ending = lines[end - 1][len(lines[end - 1].rstrip("\r\n")):] or "\n"
            out = io.StringIO()
            csv.writer(out, lineterminator=ending).writerow(row)
            lines[start:end] = [out.getvalue()] + [""] * (end - start - 1)
        start = end
    if found:
        write_atomic(path, bom + "".join(lines).encode("utf-8"))
    return found
