"""DKIM signing of outgoing messages (RFC 6376), with RSA-SHA256 or Ed25519-SHA256 (RFC 8463)
or both at once, when [dkim] names a selector and a private key ([dkim] is read and checked
by pipeline/delivery/signing.py; the signer is here, below delivery, because `run` signs).

Messages are signed when they are written: `newsletter run` writes each .eml with its
DKIM-Signature field(s) in front, so the outbox holds the bytes that go on the wire, a retry
never signs again, and `send` only sends. `send` signs what carries no signature of the
configured kind (`ensure_signed`): messages written before [dkim] was set or while a key was
broken, confirmations, and the compact outbox's messages, which are assembled as they go.
The key operations are the `cryptography` package's (OpenSSL, without the GIL); the
canonicalisation is done here with C-speed bytes methods, only as far as our own messages need.

Canonicalisation is relaxed for the headers (relays refold them) and simple for the body, as
Amazon SES signs: our bodies are quoted-printable or base64 with CRLF lines of at most 76
characters, which relays pass on unchanged, and the simple form needs no pass over the body
but the hash's. Relaxed body canonicalisation costs two scans of a 60 KB body in Python
(~0.1 ms, holding the GIL: half the time an unsigned message takes).
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
_FIELD = b"DKIM-Signature:"
MIN_RSA_BITS = 1024  # RFC 8301: verifiers must refuse smaller keys


@dataclass(frozen=True)
class DkimKey:
    selector: str
    path: Path


@dataclass(frozen=True)
class DkimSettings:
    domain: str  # d=: the domain of email.from unless dkim.domain says otherwise
    keys: tuple[DkimKey, ...]  # one signature for each, in this order


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

    def signed_as_configured(self, message: bytes) -> bool:
        """Whether the message begins with exactly our signatures as configured now: one
        per key, in order, each with this algorithm, domain, selector and header list."""
        spans = leading_signatures(message)
        return len(spans) == len(self.signatures) and all(
            message.startswith(s.head, start) for s, (start, _) in zip(
                self.signatures, spans, strict=True))

    def ensure_signed(self, message: bytes) -> bytes:
        """The message as it must go out: as it is when `run` signed it as configured now
        (never signed twice); else signed now. Signatures in front made with another
        selector, domain, key type or header list (the [dkim] settings changed while it
        waited) are taken off first and replaced: they are ours, as nothing else puts a
        DKIM-Signature in front of a message in the outbox, and no signature covers them."""
        if self.signed_as_configured(message):
            return message
        spans = leading_signatures(message)
        return self.sign(message[spans[-1][1]:] if spans else message)


def leading_signatures(message: bytes) -> list[tuple[int, int]]:
    """(start, end) of each DKIM-Signature field at the very top of the message, folded
    lines included: where `sign` puts them. Cheap: it reads only those fields."""
    spans: list[tuple[int, int]] = []
    at = 0
    while message.startswith(_FIELD, at):
        end = at
        while True:
            end = message.find(b"\r\n", end)
            if end < 0:
                return spans  # no end of line: not a field of ours
            end += 2
            if message[end:end + 1] not in (b" ", b"\t"):
                break
        spans.append((at, end))
        at = end
    return spans


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
