"""What a token in a link may look like, and the confirmation token that carries its issue time.

A token is checked for shape before anything is looked up: only three shapes exist, and
anything else (too long, odd characters, a guess) is refused at no cost.

- `<id>.<mac>`: unsubscribe and preferences links (rules.subscriber_token);
- `<id>.<issued>.<mac>`: confirmation links, issued = Unix seconds, signed with the rest, so
  a link expires (`[subscribers] confirm_days`) and its date cannot be moved;
- `<mac>` (24 characters): the first release's unsubscribe links (rules.unsubscribe_token).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from datetime import UTC, datetime

from pipeline.core.models import email_key

_MAC = r"[A-Za-z0-9_-]{24}"
ID_TOKEN = re.compile(rf"([1-9][0-9]{{0,17}})\.{_MAC}")
TIMED_TOKEN = re.compile(rf"([1-9][0-9]{{0,17}})\.([0-9]{{10}})\.{_MAC}")
LEGACY_TOKEN = re.compile(_MAC)


def shape(token: str) -> str | None:
    """"id", "timed", "legacy", or None for a token that cannot be ours."""
    if ID_TOKEN.fullmatch(token):
        return "id"
    if TIMED_TOKEN.fullmatch(token):
        return "timed"
    if LEGACY_TOKEN.fullmatch(token):
        return "legacy"
    return None


def confirmation_token(secret: bytes, subscriber_id: int, email: str, issued: datetime) -> str:
    stamp = f"{int(issued.timestamp()):010d}"
    message = f"confirm\0{subscriber_id}\0{stamp}\0{email_key(email)}".encode()
    mac = hmac.new(secret, message, hashlib.sha256).digest()
    return f"{subscriber_id}.{stamp}.{base64.urlsafe_b64encode(mac[:18]).decode()}"


def timed_parts(token: str) -> tuple[int, datetime] | None:
    """(subscriber id, issue time) a confirmation token claims (unverified)."""
    match = TIMED_TOKEN.fullmatch(token)
    if match is None:
        return None
    return int(match[1]), datetime.fromtimestamp(int(match[2]), UTC)


def confirmation_valid(secrets: Iterable[bytes], subscriber_id: int, email: str, token: str,
                       issued: datetime) -> bool:
    """True if one of the secrets made this token (constant-time comparison)."""
    return any(hmac.compare_digest(confirmation_token(s, subscriber_id, email, issued), token)
               for s in secrets)


def fingerprint(secret: bytes) -> str:
    """Names a secret in the ledger without revealing it."""
    return hashlib.sha256(b"newsletter secret fingerprint\0" + secret).hexdigest()[:16]
