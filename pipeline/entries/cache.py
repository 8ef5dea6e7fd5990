"""What a cron run every few minutes needs to skip: reading entries that have not changed.

Each entry file's reading (its Article without the body, or its problems) is kept in the ledger
under its path, size and mtime; when those change, a content hash decides whether to parse again.
A cached Article's body is read from the file again only if it is shown.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Protocol

from pipeline.core.errors import Problem
from pipeline.core.models import Article, Body, CachedEntry, Source

# Bump when the reading of entries or the row's layout changes, so that rows made by other
# code are read again rather than trusted. 2: a flat JSON array (a third of a mapping's cost
# to decode; 5,000 rows are recalled on every run that is not a no-op).
CACHE_VERSION = 2


class EntryStore(Protocol):
    def cached_entries(self) -> dict[str, CachedEntry]: ...

    def store_entries(self, rows: dict[str, CachedEntry]) -> None: ...


def encode(article: Article | None, problems: list[Problem]) -> str:
    """[version, problems] for an entry that is not published (a draft, an error), else
    [version, problems, slug, title, published, updated, category, summary, author, tags,
    takeaways, sources, disclaimer, read_minutes, url]."""
    row: list[object] = [CACHE_VERSION, [
        [str(p.path), p.field, p.problem, p.hint, p.line, p.warning] for p in problems]]
    if article is not None:
        row += [
            article.slug, article.title, article.published.isoformat(),
            article.updated.isoformat() if article.updated else None, article.category,
            article.summary, article.author, article.tags, article.stated_takeaways,
            [[s.title, s.url] for s in article.sources], article.disclaimer,
            article.read_minutes, article.url]
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def decode(payload: str, path: Path, body: Callable[[str], Body], checksum: str, tz: tzinfo,
           summariser: Callable[[Article], tuple[str, ...]] | None = None
           ) -> tuple[Article | None, list[Problem]] | None:
    """The cached reading, or None when it was made by other code and must be redone.
    `body` makes the article's (lazy) body from its URL, which relative links resolve against."""
    try:
        row = json.loads(payload)
    except ValueError:
        return None
    if type(row) is not list or row[0] != CACHE_VERSION:
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
        body=body(url), category=category, summary=summary, author=author, tags=tuple(tags),
        stated_takeaways=tuple(takeaways),
        sources=tuple(Source(t, u) for t, u in sources) if sources else (),
        disclaimer=disclaimer, read_minutes=read_minutes, url=url,
        checksum=checksum, summariser=summariser,
    )
    return article, problems
