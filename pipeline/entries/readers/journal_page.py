"""Entries in the journal's published-page text format (`.txt`), as the journal publishes them:

    ← Journal / category / title / standfirst / `24 Jun 2026 · 5 min read` / body with
    question-style headings / optional `Common questions` / `[1] reference` lines /
    optional `Key takeaway(s)` / `Sources` with numbered items / the closing disclaimer.

Blocks are separated by blank lines. The `Sources` section and reference lines become
Article.sources (feeds and digests render them as links); the disclaimer is kept apart.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from pathlib import Path

from pipeline.core.config import Config
from pipeline.core.errors import Problem
from pipeline.core.models import Article, Body, Source
from pipeline.core.text import slugify, strip_illegal
from pipeline.entries.readers.fields import FieldReader
from pipeline.entries.sanitise import one_line, safe_html

_DATE_LINE = re.compile(r"^(\d{1,2} [A-Z][a-z]{2} \d{4})\s*·\s*(\d+)\s*min read$")
_REFERENCE = re.compile(r"^\[(\d+)\]\s*(.+)$")
_SOURCE_ITEM = re.compile(r"^(\d+)\.\s+(.+)$")
_URL = re.compile(r"https?://\S+")
_SECTION_NAMES = {"common questions", "key takeaway", "key takeaways", "sources",
                  "what we see at the clinic"}
# Citation numbers left bare after a word once the page's superscripts became plain text.
# Only before punctuation, a dash or the end, so "take 1 tablet" keeps its number.
_CITATION = re.compile(r"(?<=[\w)]) (\d{1,2})(?=[.?!,;:](?:\s|$)|\s+[—–]|$)")


def read_journal_page(path: Path, text: str, config: Config
                      ) -> tuple[Article | None, list[Problem]]:
    fields = FieldReader(path)
    blocks = [(number, block.strip()) for number, block in _blocks(strip_illegal(text))]
    if blocks and blocks[0][1].startswith("←"):
        blocks = blocks[1:]
    date_at = next((i for i, (_, b) in enumerate(blocks[:6]) if _DATE_LINE.match(b)), None)
    if date_at is None:
        raise fields.fail("date", "no date line after the title",
                          "add a line like `24 Jun 2026 · 5 min read` after the standfirst")
    header = [one_line(b) for _, b in blocks[:date_at]]
    if not header:
        raise fields.fail("title", "missing", "put category, title and standfirst above the date")
    fields.lines = {"date": blocks[date_at][0], "title": blocks[min(1, date_at - 1)][0]}
    # Not a dict of both cases: that evaluated header[1] for a title-only header (IndexError).
    category, title, summary = (("", header[0], "") if len(header) == 1
                                else (header[0], header[1], " ".join(header[2:])))
    day, minutes = _DATE_LINE.match(blocks[date_at][1]).groups()  # type: ignore[union-attr]
    try:
        published = datetime.strptime(day, "%d %b %Y").replace(tzinfo=config.timezone)
    except ValueError:
        raise fields.fail("date", f"{day!r} is not a date", "write it as `24 Jun 2026`") from None

    body = [b for _, b in blocks[date_at + 1:]]
    disclaimer = ""
    if body and not all(_REFERENCE.match(line) or _SOURCE_ITEM.match(line)
                        for line in _lines_of_lists(body[-1:])):
        disclaimer = one_line(body.pop())
    slug = slugify(path.stem)
    url = config.url_for(slug)
    cited = sum(1 for line in _lines_of_lists(body) if _REFERENCE.match(line))
    parts, references, source_titles = _body(body, cited)
    sources = tuple(  # numbered references and Sources items, matched by number
        Source(source_titles.get(n) or _URL.sub("", references.get(n, "")).strip(" .")
               or f"Reference {n}", _first_url(references.get(n, "")))
        for n in sorted(references.keys() | source_titles.keys())
    )
    body_html = "\n".join(parts)
    return Article(
        path=path,
        slug=slug,
        title=title,
        published=published,
        body=Body(safe_html(body_html, url)),
        category=category,
        summary=summary,
        sources=sources,
        disclaimer=disclaimer,
        read_minutes=max(1, int(minutes)),
        url=url,
    ), []


def _first_url(text: str) -> str:
    match = _URL.search(text)
    return match.group(0).rstrip(".,)") if match else ""


def _blocks(text: str) -> list[tuple[int, str]]:
    """Blank-line separated blocks with the line each starts on."""
    blocks: list[tuple[int, str]] = []
    current: list[str] = []
    start = 1
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            if not current:
                start = number
            current.append(line)
        elif current:
            blocks.append((start, "\n".join(current)))
            current = []
    if current:
        blocks.append((start, "\n".join(current)))
    return blocks


def _is_heading(block: str) -> bool:
    if "\n" in block or len(block) > 100:
        return False
    if block.lower() in _SECTION_NAMES or block.endswith("?"):
        return True
    return not block.endswith((".", "!", ":", ";", ",", '"', "”", ")", "'"))


def _body(blocks: list[str], cited: int
          ) -> tuple[list[str], dict[int, str], dict[int, str]]:
    """HTML parts of the body, reference lines by number, Sources titles by number."""

    def para(text: str) -> str:
        return _cite(html.escape(text), cited)

    parts: list[str] = []
    references: dict[int, str] = {}
    source_titles: dict[int, str] = {}
    section = ""
    for text in _lines_of_lists(blocks):
        if reference := _REFERENCE.match(text):
            references[int(reference.group(1))] = reference.group(2)
        elif section == "sources" and (item := _SOURCE_ITEM.match(text)):
            source_titles[int(item.group(1))] = item.group(2)
        elif _is_heading(text):
            section = text.lower()
            if section != "sources":
                parts.append(f"<h2>{html.escape(text)}</h2>")
        elif section == "common questions" and "? " in text:
            question, answer = text.split("? ", 1)
            parts.append(f"<p><strong>{para(question)}?</strong> {para(answer)}</p>")
        else:
            parts.append(f"<p>{para(text)}</p>")
    return parts, references, source_titles


def _lines_of_lists(blocks: list[str]) -> list[str]:
    """One string per block; a block of numbered or bracketed lines gives one per line."""
    out: list[str] = []
    for block in blocks:
        lines = [line.strip() for line in block.splitlines()]
        if len(lines) > 1 and all(_REFERENCE.match(x) or _SOURCE_ITEM.match(x) for x in lines):
            out.extend(one_line(line) for line in lines)
        else:
            out.append(one_line(block))
    return out


def _cite(part: str, count: int) -> str:
    """Turn bare citation numbers back into superscripts, only for references that exist."""
    if not count:
        return part
    return _CITATION.sub(
        lambda m: f"<sup>[{m.group(1)}]</sup>" if 1 <= int(m.group(1)) <= count else m.group(0),
        part,
    )
