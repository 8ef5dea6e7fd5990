"""Key takeaways for each entry: explicit → the entry's own section → extractive fallback.

Deterministic and local: no network, no model. Always 1–3 sentences, none cut mid-word.
"""

from __future__ import annotations

import re
from dataclasses import replace

from pipeline.core.models import Article
from pipeline.entries.sanitise import plain_text

MAX_TAKEAWAYS = 3
MAX_CHARS = 320  # one takeaway; longer ones end at a word boundary with an ellipsis
MAX_FALLBACK_CHARS = 420  # all extracted sentences together

# Split at the space after . ! or ?; a closing quote or bracket after the mark stays with it.
_SENTENCE_END = re.compile(
    r"(?:(?<=[.!?])|(?<=[.!?][\"”’')\]]))\s+(?=[\"“‘'(\[]?[A-Z0-9])")
_SECTION = re.compile(
    r"<h([2-6])>\s*Key takeaways?\s*</h\1>(.*?)(?=<h[1-6][ >]|\Z)", re.I | re.S)
_ITEM = re.compile(r"<li>(.*?)</li>", re.S)
_PARAGRAPH = re.compile(r"<p>(.*?)</p>", re.S)
_FIRST_HEADING = re.compile(r"<h[1-6][ >]")
_CITATION = re.compile(r"<sup>.*?</sup>", re.S)


def summarise(article: Article) -> Article:
    """The article with its takeaways drawn on first use (collect gives every entry this)."""
    return article if article.summariser else replace(article, summariser=takeaways_for)


def takeaways_for(article: Article) -> tuple[str, ...]:
    if article.stated_takeaways:
        items = list(article.stated_takeaways)
        if len(items) == 1:
            items = sentences(items[0])
        return _bounded(items)
    if section := _SECTION.search(article.body_html):
        fragment = _CITATION.sub("", section.group(2))
        items = [_text(li) for li in _ITEM.findall(fragment)]
        if not items:
            items = [s for p in _PARAGRAPH.findall(fragment) for s in sentences(_text(p))]
        if any(items):
            return _bounded(items)
    return _extract(article)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _extract(article: Article) -> tuple[str, ...]:
    """The standfirst, then the opening sentences before the first heading."""
    opening = _FIRST_HEADING.split(_CITATION.sub("", article.body_html), maxsplit=1)[0]
    candidates = sentences(article.summary) + [
        s for p in _PARAGRAPH.findall(opening) for s in sentences(_text(p))
    ]
    if not candidates:
        candidates = sentences(_text(article.body_html)) or [article.title]
    chosen: list[str] = []
    total = 0
    for sentence in candidates:
        if chosen and (total + len(sentence) > MAX_FALLBACK_CHARS or len(chosen) == 2):
            break
        chosen.append(sentence)
        total += len(sentence)
    return _bounded(chosen)


def _bounded(items: list[str]) -> tuple[str, ...]:
    return tuple(_shorten(item) for item in items if item.strip())[:MAX_TAKEAWAYS]


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= MAX_CHARS:
        return text
    cut = text[: MAX_CHARS - 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:—–-") + "…"


def _text(fragment: str) -> str:
    return " ".join(plain_text(fragment).split())
