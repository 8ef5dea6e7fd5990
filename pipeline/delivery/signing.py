"""DKIM signing of outgoing messages (dkimpy), when a selector and private key are configured.

Messages are signed when they are sent, not when they are written: a key can be rotated while
messages wait in the outbox, and the signature's timestamp is the sending time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.errors import ConfigError, Problem

if TYPE_CHECKING:
    from pipeline.core.config import Config
    from pipeline.delivery.settings import Values

DKIM_SCHEMA: dict[str, object] = {"selector": "", "domain": "", "private_key": ""}

# Signed whether present or not: signing an absent header (Reply-To) stops one being added.
# `from` twice: a second From added in transit breaks the signature instead of fooling readers.
# RFC 8058 requires List-Unsubscribe and List-Unsubscribe-Post to be signed for one-click.
SIGNED_HEADERS = (
    "from", "from", "to", "subject", "date", "message-id", "reply-to", "mime-version",
    "content-type", "list-id", "list-unsubscribe", "list-unsubscribe-post",
)


@dataclass(frozen=True)
class DkimSettings:
    selector: str
    domain: str  # d=: the domain of email.from unless dkim.domain says otherwise
    key: Path


def dkim_settings(values: Values, config: Config) -> DkimSettings | None:
    """The [dkim] table, checked: None when signing is off (neither selector nor key set)."""
    selector, key_name = values.string("dkim.selector"), values.string("dkim.private_key")
    domain = values.string("dkim.domain") or config.from_address.domain
    if bool(selector) != bool(key_name):
        values.bad("dkim.selector" if key_name else "dkim.private_key", "is missing",
                   "DKIM needs both dkim.selector and dkim.private_key (or neither)")
    key = values.file("dkim.private_key", "the PEM private key")
    return DkimSettings(selector, domain, key) if selector and key else None


class DkimSigner:
    """Holds the key and signs message bytes (CRLF line ends) with rsa-sha256, relaxed/relaxed."""

    def __init__(self, selector: str, domain: str, key_path: Path) -> None:
        import dkim  # only sites that sign pay for the import

        self._dkim = dkim
        self.selector, self.domain = selector.encode(), domain.encode()
        self.key = key_path.read_bytes()
        try:  # find a bad key now, with its path, not as a failure per message
            self.sign(b"From: a@b.example\r\nTo: c@d.example\r\nSubject: t\r\n\r\nbody\r\n")
        except (dkim.DKIMException, ValueError, IndexError) as exc:
            raise ConfigError([Problem(key_path, "dkim.private_key",
                                       f"cannot sign with this key: {exc}",
                                       "give a PEM RSA private key, e.g. from "
                                       "`openssl genrsa -out dkim.pem 2048`")]) from None

    def sign(self, message: bytes) -> bytes:
        """The message with its DKIM-Signature header in front."""
        header = self._dkim.sign(message, self.selector, self.domain, self.key,
                                 canonicalize=(b"relaxed", b"relaxed"),
                                 include_headers=[h.encode() for h in SIGNED_HEADERS])
        return header + message
