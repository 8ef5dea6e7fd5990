"""The tokens in our links: unsubscribe and confirm, made and checked with the site secret.

`<id>.<mac>`: the id finds the row at once; the MAC (HMAC-SHA256 over purpose, id and address
with the site secret) proves we made it. Neither part shows the address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

from pipeline.core.models import email_key


def subscriber_token(secret: bytes, subscriber_id: int, email: str,
                     purpose: str = "unsubscribe") -> str:
    message = f"{purpose}\0{subscriber_id}\0{email_key(email)}".encode()
    mac = hmac.digest(secret, message, "sha256")  # one-shot: the fan-out runs it per subscriber
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
    it keep working (the web app looks the address up by recomputing); new mail uses
    subscriber_token."""
    digest = hmac.new(secret, email_key(email).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def token_matches(secret: bytes, email: str, token: str) -> bool:
    return hmac.compare_digest(unsubscribe_token(secret, email), token)
