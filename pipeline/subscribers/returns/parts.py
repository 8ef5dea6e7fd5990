"""Reading the parts of returning mail: the header blocks of RFC 3464 and RFC 5965 reports,
the returned original's headers, where the mail was delivered, and the bounce's own text."""

from __future__ import annotations

import re
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr

STATUS = re.compile(r"\b([45])\.(\d{1,3})\.(\d{1,3})\b")
# Where a returning message was delivered: one of them is our VERP address, if any.
DELIVERED_TO = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to",
                "x-delivered-to", "to", "x-rcpt-to", "original-recipient")


def find_part(message: Message, content_type: str) -> Message | None:
    for part in message.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def header_blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    if isinstance(payload, str):  # not parsed as blocks: parse them ourselves
        return [HeaderParser().parsestr(b.strip() + "\n") for b in re.split(r"\n\s*\n", payload)
                if b.strip()]
    return []


def recipient_of(block: Message) -> str:
    for name in ("original-recipient", "final-recipient", "x-actual-recipient"):
        value = str(block.get(name, ""))
        kind, _, address = value.partition(";")
        if address and kind.strip().lower() == "rfc822":
            address = parseaddr(address.strip())[1] or address.strip().strip("<>")
            if "@" in address:
                return address
    return ""


def original_headers(message: Message) -> Message | None:
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                return inner[0]
        elif kind == "text/rfc822-headers":
            text = part.get_payload(decode=True) or b""
            return HeaderParser().parsestr(text.decode("utf-8", "replace"))
    return None


def delivered_to(message: Message) -> list[str]:
    found = []
    for name in DELIVERED_TO:
        for _, address in getaddresses([str(v) for v in message.get_all(name, [])]):
            if "@" in address:
                found.append(address)
    return list(dict.fromkeys(found))


def own_text(message: Message) -> str:
    """The bounce's own text parts (not the returned original), for status codes."""
    texts = []
    for part in _own_parts(message):
        if part.get_content_maintype() == "text" and part.get_content_type() != \
                "text/rfc822-headers":
            payload = part.get_payload(decode=True) or b""
            try:
                texts.append(payload.decode(part.get_content_charset() or "latin-1", "replace"))
            except LookupError:  # a charset Python does not know
                texts.append(payload.decode("latin-1"))
    return "\n".join(texts)[:200_000]


def _own_parts(message: Message) -> list[Message]:
    if message.get_content_type() == "message/rfc822":
        return []
    if not message.is_multipart():
        return [message]
    parts: list[Message] = []
    for part in message.get_payload():
        if isinstance(part, Message):
            parts += _own_parts(part)
    return parts


def status_of(text: str) -> str:
    found = STATUS.search(text)
    return ".".join(found.groups()) if found else ""
