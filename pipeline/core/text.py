"""Text helpers every stage needs: characters that must never pass, URL-safe slugs."""

from __future__ import annotations

import re
import unicodedata

# Characters XML 1.0 forbids (feedgen's serialiser raises on them) plus the C1 controls
# MJML rejects. Tab, LF and CR are kept.
ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff\ud800-\udfff]")
# Every C0 and C1 control, tab and line ends included: none belongs in one cell of a list.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def strip_illegal(text: str) -> str:
    """Remove characters that XML, MJML and mail headers cannot carry."""
    return ILLEGAL.sub("", text)


_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    """ASCII, lowercase, hyphenated: stable across platforms and safe in URLs."""
    if not text.isascii():  # (ASCII is its own NFKD form: most names skip the round trip)
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NOT_SLUG.sub("-", text.lower()).strip("-")


def escaped(text: str) -> str:
    """`text` with every character a terminal or a cron mail would not show as itself (a
    newline, a tab, a bidi override) written as its Python escape: one line stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)
