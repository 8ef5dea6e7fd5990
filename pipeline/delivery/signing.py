"""DKIM signing of outgoing messages (RFC 6376), with RSA-SHA256 or Ed25519-SHA256 (RFC 8463)
or both at once, when [dkim] names a selector and a private key.

Messages are signed when they are sent, not when they are written: a key can be rotated while
messages wait in the outbox, and the signature's timestamp is the sending time. The key
operations are the `cryptography` package's (OpenSSL, without the GIL); the canonicalisation
is done here with C-speed bytes methods, only as far as our own messages need.

Canonicalisation is relaxed for the headers (relays refold them) and simple for the body, as
Amazon SES signs: our bodies are quoted-printable or base64 with CRLF lines of at most 76
characters, which relays pass on unchanged, and the simple form needs no pass over the body
but the hash's. Relaxed body canonicalisation costs two scans of a 60 KB body in Python
(~0.1 ms, holding the GIL: half the time an unsigned message takes) and would bring a signed
send down to ~0.6 of the unsigned rate.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.errors import ConfigError, Problem

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    from pipeline.core.config import Config
    from pipeline.delivery.settings import Values

DKIM_SCHEMA: dict[str, object] = {"selector": "", "domain": "", "private_key": "",
                                  "second_selector": "", "second_private_key": ""}

# Signed whether present or not: signing an absent header (Reply-To) stops one being added.
# `from` twice: a second From added in transit breaks the signature instead of fooling readers.
# RFC 8058 requires List-Unsubscribe and List-Unsubscribe-Post to be signed for one-click.
SIGNED_HEADERS = (
    "from", "from", "to", "subject", "date", "message-id", "reply-to", "mime-version",
    "content-type", "list-id", "list-unsubscribe", "list-unsubscribe-post",
)
_H_TAG = ":".join(SIGNED_HEADERS)
_SIGNED = tuple(name.encode() for name in SIGNED_HEADERS)
_WANTED = frozenset(_SIGNED)
MIN_RSA_BITS = 1024  # RFC 8301: verifiers must refuse smaller keys


@dataclass(frozen=True)
class DkimKey:
    selector: str
    path: Path


@dataclass(frozen=True)
class DkimSettings:
    domain: str  # d=: the domain of email.from unless dkim.domain says otherwise
    keys: tuple[DkimKey, ...]  # one signature for each, in this order


def dkim_settings(values: Values, config: Config) -> DkimSettings | None:
    """The [dkim] table, checked: None when signing is off (no selector and no key set)."""
    keys = []
    for prefix in ("", "second_"):
        selector_key, path_key = f"dkim.{prefix}selector", f"dkim.{prefix}private_key"
        selector, key_name = values.string(selector_key), values.string(path_key)
        if bool(selector) != bool(key_name):
            values.bad(selector_key if key_name else path_key, "is missing",
                       f"DKIM needs both {selector_key} and {path_key} (or neither)")
        if selector and any(c in selector for c in " ;=\\\"'"):
            values.bad(selector_key, f"{selector!r} is not a selector",
                       'use the label of the DNS name, e.g. "news2026"')
        path = values.file(path_key, "the PEM private key")
        if selector and path:
            keys.append(DkimKey(selector, path))
    if values.string("dkim.second_selector") and not values.string("dkim.selector"):
        values.bad("dkim.selector", "is missing", "set the first key before the second")
    domain = values.string("dkim.domain") or config.from_address.domain
    return DkimSettings(domain, tuple(keys)) if keys else None


class _Signature:
    """One key: its DKIM-Signature header's fixed part, and how to sign the header hash."""

    def __init__(self, selector: str, domain: str, path: Path, key_name: str) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise _bad_key(path, key_name, str(exc).splitlines()[0]) from None
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < MIN_RSA_BITS:
                raise _bad_key(path, key_name, f"an RSA key of {key.key_size} bits is too "
                               "small for DKIM verifiers")
            self.algorithm, self.key = "rsa-sha256", key
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            self.algorithm, self.key = "ed25519-sha256", key
        else:
            raise _bad_key(path, key_name, f"a {type(key).__name__} cannot sign DKIM")
        self.head = (f"DKIM-Signature: v=1; a={self.algorithm}; c=relaxed/simple; "
                     f"d={domain}; s={selector};\r\n\th={_H_TAG};\r\n\tt=").encode()

    def sign(self, signed_headers: bytes, body_hash: bytes, now: int) -> bytes:
        """The whole DKIM-Signature field for a message with this body hash and headers."""
        unsigned = self.head + b"%d; bh=%s;\r\n\tb=" % (now, body_hash)
        data = signed_headers + relaxed_header(unsigned)[:-2]  # no CRLF after the last
        if self.algorithm == "rsa-sha256":
            signature = _rsa_sign(self.key, data)  # type: ignore[arg-type]
        else:  # RFC 8463: Ed25519 signs the SHA-256 digest of the data
            signature = self.key.sign(hashlib.sha256(data).digest())  # type: ignore[call-arg]
        b = base64.b64encode(signature)
        return unsigned + b"\r\n\t ".join(b[i:i + 72] for i in range(0, len(b), 72)) + b"\r\n"


def _rsa_sign(key: RSAPrivateKey, data: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _bad_key(path: Path, key_name: str, why: str) -> ConfigError:
    return ConfigError([Problem(path, key_name, f"cannot sign with this key: {why}",
                                "give a PEM private key: RSA (`openssl genrsa -out dkim.pem "
                                "2048`) or Ed25519 (`openssl genpkey -algorithm ed25519 -out "
                                "dkim-ed.pem`)")])


class DkimSigner:
    """Holds the keys and signs message bytes (CRLF line ends): one DKIM-Signature per key."""

    def __init__(self, settings: DkimSettings) -> None:
        names = ("dkim.private_key", "dkim.second_private_key")
        self.signatures = [_Signature(k.selector, settings.domain, k.path, name)
                           for k, name in zip(settings.keys, names, strict=False)]
        self.sign(b"From: a@b.example\r\nTo: c@d.example\r\nSubject: t\r\n\r\nbody\r\n")

    def sign(self, message: bytes) -> bytes:
        """The message with its DKIM-Signature header(s) in front."""
        end = message.find(b"\r\n\r\n")
        if end < 0:
            head, body = message, memoryview(b"")
        else:
            head, body = message[:end + 2], memoryview(message)[end + 4:]
        bh = body_hash(body)
        signed = signed_headers(head)
        now = int(time.time())
        return b"".join(s.sign(signed, bh, now) for s in self.signatures) + message


def relaxed_header(field: bytes) -> bytes:
    """One header field (name, colon, value, possibly folded, with or without its final
    CRLF) in relaxed canonical form, ending in CRLF (RFC 6376 3.4.2)."""
    name, _, value = field.partition(b":")
    value = _one_space(value.replace(b"\r\n", b""))
    return name.rstrip(b" \t").lower() + b":" + value.strip(b" ") + b"\r\n"


def signed_headers(head: bytes) -> bytes:
    """The canonical form of the fields that SIGNED_HEADERS names, in its order, each name's
    instances taken from the bottom up; a name without (another) instance adds nothing.
    The whole header block is unfolded and its spaces squeezed at once (C-speed bytes
    methods), then split into fields."""
    head = _one_space(head.replace(b"\r\n ", b" ").replace(b"\r\n\t", b" "))
    found: dict[bytes, list[bytes]] = {}
    for line in head.split(b"\r\n"):
        colon = line.find(b":")
        name = line[:colon].rstrip(b" ").lower()
        if name in _WANTED:
            found.setdefault(name, []).append(line[colon + 1:].strip(b" "))
    parts = []
    for name in _SIGNED:
        values = found.get(name)
        if values:
            parts.append(name + b":" + values.pop() + b"\r\n")
    return b"".join(parts)


def body_hash(body: bytes | memoryview) -> bytes:
    """bh=: base64 of the SHA-256 of the body in simple canonical form (RFC 6376 3.4.3): as
    it is, but ending in exactly one CRLF. Hashed in place (no copy of the body), and hashlib
    lets go of the GIL while it hashes."""
    end = len(body)
    while end >= 2 and body[end - 2:end] == b"\r\n":
        end -= 2
    digest = hashlib.sha256(memoryview(body)[:end])
    digest.update(b"\r\n")
    return base64.b64encode(digest.digest())


def _one_space(text: bytes) -> bytes:
    """Every run of spaces and tabs made one space. A regex does this at ~35 ns a byte, as
    much as all the rest of signing; splitting at double spaces runs at C speed and leaves
    parts that never end with a space (the split is leftmost), so each part's leading spaces
    are the rest of the run it follows."""
    if b"\t" in text:
        text = text.replace(b"\t", b" ")
    if b"  " not in text:
        return text
    parts = text.split(b"  ")
    rest = [part.lstrip(b" ") for part in parts[1:]]
    return parts[0] + b"".join([b" " + part for part in rest if part])
