"""VERP return paths: an envelope sender per message that names the message and its subscriber,
so a bounce is tied to them without reading the bounce's prose.

`email.return_path = "bounces+{token}@example.org"` makes a digest message to subscriber 42 go
out with MAIL FROM `bounces+d7-42-<mac>@example.org` (a confirmation: `c0-42-<mac>`). The MAC is
an HMAC-SHA256 of the message, the subscriber id and their address with the site secret,
16 characters of lowercase base32: only digits, letters and `-`, so it survives MTAs that
lowercase local parts, and it cannot be made without the secret. A forged or damaged token
names no one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

PURPOSE = b"return-path"
KINDS = {"d": "digest", "c": "confirmation"}
# kind, message id (the digest's; 0 for a confirmation), subscriber id, MAC
_TOKEN = re.compile(r"([dc])(\d{1,12})-(\d{1,12})-([a-z2-7]{16})")
PLACEHOLDER = "{token}"


@dataclass(frozen=True)
class ReturnToken:
    """What a verified return-path token says: which message went to whom."""

    kind: str  # "digest" or "confirmation"
    digest_id: int | None  # None for a confirmation
    subscriber_id: int


def _mac(secret: bytes, kind: str, message_id: int, subscriber_id: int, email: str) -> str:
    text = f"{kind}\0{message_id}\0{subscriber_id}\0{email.lower()}".encode()
    digest = hmac.new(secret, PURPOSE + b"\0" + text, hashlib.sha256).digest()
    return base64.b32encode(digest[:10]).decode().lower()


def make_token(secret: bytes, digest_id: int | None, subscriber_id: int, email: str) -> str:
    kind = "c" if digest_id is None else "d"
    message_id = digest_id or 0
    mac = _mac(secret, kind, message_id, subscriber_id, email)
    return f"{kind}{message_id}-{subscriber_id}-{mac}"


def return_path(template: str, secret: bytes, digest_id: int | None, subscriber_id: int,
                email: str) -> str:
    """The envelope sender for one message (template from `email.return_path`)."""
    return template.replace(PLACEHOLDER, make_token(secret, digest_id, subscriber_id, email))


def claimed(template: str, address: str) -> tuple[str, int | None, int] | None:
    """(kind letter, digest id, subscriber id) that an address made from `template` claims,
    unverified; None if the address is not one of ours. Compared case-insensitively."""
    if PLACEHOLDER not in template:
        return None
    head, _, tail = template.lower().partition(PLACEHOLDER)
    address = address.strip().strip("<>").lower()
    if len(address) > 254 or not (address.startswith(head) and address.endswith(tail)):
        return None
    found = _TOKEN.fullmatch(address[len(head): len(address) - len(tail)])
    if found is None:
        return None
    kind, message_id, subscriber_id = found[1], int(found[2]), int(found[3])
    return kind, (message_id if kind == "d" else None), subscriber_id


def verify(template: str, secrets: Iterable[bytes], address: str, email: str
           ) -> ReturnToken | None:
    """The token in `address` if one of the secrets made it for the subscriber whose current
    address is `email`; None for anything else (forged, damaged, another subscriber's)."""
    what = claimed(template, address)
    if what is None:
        return None
    kind, digest_id, subscriber_id = what
    mac = address.strip().strip("<>").lower()
    mac = mac[: len(mac) - len(template.partition(PLACEHOLDER)[2])][-16:]
    for secret in secrets:
        expected = _mac(secret, kind, digest_id or 0, subscriber_id, email)
        if hmac.compare_digest(expected, mac):
            return ReturnToken(KINDS[kind], digest_id, subscriber_id)
    return None
