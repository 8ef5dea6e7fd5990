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
from pipeline.core.models import Article, Body, Source
from pipeline.state.entry_cache import CachedEntry

__all__ = ["CACHE_VERSION", "CachedEntry", "EntryStore", "decode", "encode"]

# Bump when the reading of entries changes, so caches made by older code are not trusted.
CACHE_VERSION = 1


class EntryStore(Protocol):
    def cached_entries(self) -> dict[str, CachedEntry]: ...

    def store_entries(self, rows: dict[str, CachedEntry]) -> None: ...


def encode(article: Article | None, problems: list[Problem]) -> str:
    data: dict[str, object] = {"v": CACHE_VERSION, "problems": [
        [str(p.path), p.field, p.problem, p.hint, p.line, p.warning] for p in problems]}
    if article is not None:
        data["article"] = {
            "slug": article.slug, "title": article.title,
            "published": article.published.isoformat(),
            "updated": article.updated.isoformat() if article.updated else None,
            "category": article.category, "summary": article.summary, "author": article.author,
            "tags": list(article.tags), "takeaways": list(article.takeaways),
            "sources": [[s.title, s.url] for s in article.sources],
            "disclaimer": article.disclaimer, "read_minutes": article.read_minutes,
            "url": article.url,
        }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def decode(payload: str, path: Path, body: Callable[[str], Body], checksum: str, tz: tzinfo
           ) -> tuple[Article | None, list[Problem]] | None:
    """The cached reading, or None when it was made by other code and must be redone.
    `body` makes the article's (lazy) body from its URL, which relative links resolve against."""
    data = json.loads(payload)
    if data.get("v") != CACHE_VERSION:
        return None
    problems = [Problem(Path(p), f, problem, hint, line, warning)
                for p, f, problem, hint, line, warning in data["problems"]]
    a = data.get("article")
    if a is None:
        return None, problems
    article = Article(
        path=path, slug=a["slug"], title=a["title"],
        published=datetime.fromisoformat(a["published"]).astimezone(tz),
        updated=datetime.fromisoformat(a["updated"]).astimezone(tz) if a["updated"] else None,
        body=body(a["url"]), category=a["category"], summary=a["summary"], author=a["author"],
        tags=tuple(a["tags"]), takeaways=tuple(a["takeaways"]),
        sources=tuple(Source(t, u) for t, u in a["sources"]),
        disclaimer=a["disclaimer"], read_minutes=a["read_minutes"], url=a["url"],
        checksum=checksum,
    )
    return article, problems
