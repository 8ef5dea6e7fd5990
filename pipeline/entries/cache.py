"""What a cron run every few minutes needs to skip: reading entries that have not changed.

Each entry file's reading (its Article without the body, or its problems) is kept in the ledger
under its path, size and mtime; when those change, a content hash decides whether to parse again.
A cached Article's body is read from the file again only if it is shown.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Protocol

from pipeline.core.errors import Problem
from pipeline.core.models import Article, Body, CachedEntry, Source

# Bump when the reading of entries or the row's layout changes, so that rows made by other
# code are read again rather than trusted. 2: a flat tuple in marshal's format (a tenth of
# JSON's cost to decode: 5,000 rows are recalled on every run that is not a no-op); rows of
# version 1 were JSON text.
CACHE_VERSION = 2
_MARSHAL_FORMAT = 4  # read by every Python since 3.4


class EntryStore(Protocol):
    def cached_entries(self) -> dict[str, CachedEntry]: ...

    def store_entries(self, rows: dict[str, CachedEntry]) -> None: ...


def encode(article: Article | None, problems: list[Problem]) -> bytes:
    """(version, problems) for an entry that is not published (a draft, an error), else
    (version, problems, slug, title, published, updated, category, summary, author, tags,
    takeaways, sources, disclaimer, read_minutes, url): strings, numbers and tuples only.

    marshal, not pickle: reading it builds plain values and never runs code. The rows are
    the ledger's own (written here, never taken from outside); a row that cannot be read, or
    is not of this shape, is read again from the entry file."""
    row: tuple[object, ...] = (CACHE_VERSION, tuple(
        (str(p.path), p.field, p.problem, p.hint, p.line, p.warning) for p in problems))
    if article is not None:
        row += (
            article.slug, article.title, article.published.isoformat(),
            article.updated.isoformat() if article.updated else None, article.category,
            article.summary, article.author, tuple(article.tags), tuple(article.stated_takeaways),
            tuple((s.title, s.url) for s in article.sources), article.disclaimer,
            article.read_minutes, article.url)
    return marshal.dumps(row, _MARSHAL_FORMAT)


def decode(payload: str | bytes, path: Path, body: Callable[[str], Body], checksum: str, tz: tzinfo,
           summariser: Callable[[Article], tuple[str, ...]] | None = None
           ) -> tuple[Article | None, list[Problem]] | None:
    """The cached reading, or None when it was made by other code and must be redone.
    `body` makes the article's (lazy) body from its URL, which relative links resolve against."""
    if not isinstance(payload, bytes):
        return None  # JSON text: version 1
    try:
        row = marshal.loads(payload)
    except (ValueError, EOFError, TypeError):
        return None
    if type(row) is not tuple or len(row) not in (2, 15) or row[0] != CACHE_VERSION:
        return None
    problems = [Problem(Path(p), f, problem, hint, line, warning)
                for p, f, problem, hint, line, warning in row[1]] if row[1] else []
    if len(row) == 2:
        return None, problems
    (_, _, slug, title, published, updated, category, summary, author, tags, takeaways,
     sources, disclaimer, read_minutes, url) = row
    article = Article(
        path=path, slug=slug, title=title,
        published=datetime.fromisoformat(published).astimezone(tz),
        updated=datetime.fromisoformat(updated).astimezone(tz) if updated else None,
        body=body(url), category=category, summary=summary, author=author, tags=tags,
        stated_takeaways=takeaways,
        sources=tuple(Source(t, u) for t, u in sources) if sources else (),
        disclaimer=disclaimer, read_minutes=read_minutes, url=url,
        checksum=checksum, summariser=summariser,
    )
    return article, problems
