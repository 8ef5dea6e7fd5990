"""Make untrusted entry text safe for XML, HTML, MJML and mail: the one place that decides."""

from __future__ import annotations

import html
import math
import re

from pipeline.core.text import strip_illegal
from pipeline.entries.nesting import too_deep

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "cite", "code", "dd", "del", "dl", "dt", "em",
    "figcaption", "figure", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li",
    "mark", "ol", "p", "pre", "q", "s", "small", "strong", "sub", "sup", "table", "tbody", "td",
    "tfoot", "th", "thead", "tr", "u", "ul",
}
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height", "title"},
    "ol": {"start"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "abbr": {"title"},
}
WORDS_PER_MINUTE = 220


def safe_html(fragment: str, base_url: str) -> str:
    """Sanitise entry HTML to a subset safe in email and feeds; make relative links absolute.

    Dropped with their content: script, style and the like. Dropped as tags: everything not in
    the allow-list (iframes, forms, event handlers). Only http(s) and mailto links survive:
    a link to anything else (`javascript:`, `data:`, `vbscript:` …) is its text alone, an
    image its alt text. Stripped before and after: nh3 decodes character references, so
    `&#1;` would come out as a raw control character that breaks the feed's XML.
    """
    import nh3  # not needed on a run where nothing changed

    if too_deep(fragment) is not None:
        # Readers refuse such entries first (with a problem line); this only bounds the time
        # of any other caller, since the sanitiser is quadratic in depth: text alone.
        return html.escape(plain_text(fragment))
    cleaned = nh3.clean(
        strip_illegal(fragment),
        tags=_TAGS,
        clean_content_tags={"script", "style", "iframe", "object", "embed", "template",
                            "noscript", "textarea", "select", "title"},
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel=None,
        url_relative=("rewrite_with_base", base_url),
    )
    cleaned = _NO_URL_LINK.sub(r"\1", cleaned)
    cleaned = _NO_URL_IMAGE.sub(lambda m: html.escape(html.unescape(m.group(1) or "")), cleaned)
    return strip_illegal(cleaned).strip()


# What nh3 leaves of a link or an image whose URL it refused: no href, no src.
_NO_URL_LINK = re.compile(r'<a(?: title="[^"]*")?>(.*?)</a>', re.S)
_NO_URL_IMAGE = re.compile(r'<img(?![^>]*\ssrc=)(?:[^>]*?\salt="([^"]*)")?[^>]*>')


_TAG = re.compile(r"<[^>]+>")
_BLOCK_END = re.compile(r"</(p|h[1-6]|li|blockquote|pre|tr|dd|dt)>|<br\s*/?>", re.I)
_SPACES = re.compile(r"[ \t\r\f\v]+")


def plain_text(fragment: str) -> str:
    """Safe HTML back to readable text: block elements end lines, entities decoded."""
    text = _BLOCK_END.sub("\n", fragment)
    text = html.unescape(_TAG.sub("", text))
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def read_minutes_of(words: int) -> int:
    """Reading time at a calm adult pace; never less than one minute."""
    return max(1, math.ceil(words / WORDS_PER_MINUTE))


def one_line(text: str) -> str:
    """Collapse any whitespace, including CR/LF, to single spaces: for titles and header values."""
    text = str(text)
    # Most values are one line already. Every whitespace character but the space, and every
    # character strip_illegal removes, is unprintable: such text has nothing to change.
    if text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return text
    return " ".join(strip_illegal(text).split())


def header_text(text: str) -> str:
    """One line a mail header shows exactly as typed: for subjects and display names.

    Decoders turn `=?charset?q?…?=` back into any characters, CR/LF included, and Python's
    email package does so even inside quoted names (then cannot parse the To header at all).
    A zero-width space after every `=` of a `=?` makes it plain text; readers see no change.
    """
    return one_line(text).replace("=?", "=\u200b?")
