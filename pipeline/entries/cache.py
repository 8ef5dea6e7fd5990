"""What a cron run every few minutes needs to skip: reading entries that have not changed.

Each entry file's reading (its Article without the body, or its problems) is kept in the ledger
under its path, size and mtime; when those change, a content hash decides whether to parse again.
A cached Article's body is read from the file again only if it is shown.

Recalling is lazy: a run after one new entry uses ~50 of 5,000 entries in full (the feeds, the
digest), and of the rest only what chooses them (date, slug, category). So a row keeps those
apart, and the other fields in one marshal blob decoded when a RecalledArticle is first asked
for one of them.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Protocol

from pipeline.core.errors import EntryError, Problem
from pipeline.core.models import Article, Body, CachedEntry, Source
from pipeline.entries.minutes import compared, counted_minutes

# Bump when the reading of entries or the row's layout changes, so that rows made by other
# code are read again rather than trusted. 5: bodies with too much markup are refused
# (markup_budget.py); 4: the reading time may be None (not counted: it
# is counted from the file when used); 3: the fields that choose an entry apart from the
# rest, decoded only when used; 2: one flat marshal tuple; 1: JSON text.
CACHE_VERSION = 5
_MARSHAL_FORMAT = 4  # read by every Python since 3.4
_TAIL_FORMAT = 2  # no back-references: the same fields always make the same bytes
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class EntryStore(Protocol):
    def cached_entries(self) -> dict[str, CachedEntry]: ...

    def store_entries(self, rows: dict[str, CachedEntry]) -> None: ...


def instant(moment: datetime) -> int:
    """An aware datetime as microseconds since 1970 (UTC): what entries are sorted by and
    compared with the run's time, exactly as their datetimes compare."""
    return (moment - _EPOCH) // _MICROSECOND


def encode(article: Article | None, problems: list[Problem], when: int | None = None) -> bytes:
    """(version, problems) for an entry that is not published (a draft, an error), else
    (version, problems, slug, category, instant(published), published, tail) where tail is
    the marshal bytes of (title, updated, summary, author, tags, takeaways, sources,
    disclaimer, read_minutes or None if not counted yet, url): strings, numbers and tuples
    only. `when`: instant(article.published), if the caller has it.

    marshal, not pickle: reading it builds plain values and never runs code. The rows are
    the ledger's own (written here, never taken from outside); a row that cannot be read, or
    is not of this shape, is read again from the entry file."""
    row: tuple[object, ...] = (CACHE_VERSION, tuple(
        (str(p.path), p.field, p.problem, p.hint, p.line, p.warning) for p in problems))
    if article is not None:
        tail = marshal.dumps((
            article.title, article.updated.isoformat() if article.updated else None,
            article.summary, article.author, tuple(article.tags),
            tuple(article.stated_takeaways), tuple((s.title, s.url) for s in article.sources),
            article.disclaimer, counted_minutes(article), article.url), _TAIL_FORMAT)
        row += (article.slug, article.category,
                instant(article.published) if when is None else when,
                article.published.isoformat(), tail)
    return marshal.dumps(row, _MARSHAL_FORMAT)


@dataclass(frozen=True)
class Recaller:
    """What a recalled article needs to finish itself: the site's timezone, the path shown
    for an entry key, its body from its URL, and a fresh reading of its file (for a tail
    that cannot be decoded)."""

    timezone: tzinfo
    shown: Callable[[str], Path]
    body: Callable[[str, str], Body]  # (key, url)
    reread: Callable[[str], Article | None]
    summariser: Callable[[Article], tuple[str, ...]] | None = None


def decode(payload: str | bytes, key: str, checksum: str, recaller: Recaller
           ) -> tuple[int, Article | None, list[Problem]] | None:
    """(instant(published) or 0, the cached reading, its problems), or None when it was made
    by other code and must be redone. The article's other fields wait until first used."""
    if payload.__class__ is not bytes:
        return None  # JSON text: version 1
    try:
        row = marshal.loads(payload)
    except (ValueError, EOFError, TypeError):
        return None
    if row.__class__ is not tuple or len(row) not in (2, 7) or row[0] != CACHE_VERSION:
        return None
    problems = [Problem(Path(p), f, problem, hint, line, warning)
                for p, f, problem, hint, line, warning in row[1]] if row[1] else []
    if len(row) == 2:
        return 0, None, problems
    article = _new(RecalledArticle)
    _set_dict(article, {"slug": row[2], "category": row[3], "checksum": checksum,
                        "_recalled": (key, row[5], row[6], recaller)})
    return row[4], article, problems


_new = object.__new__
_set_dict = Article.__dict__["__dict__"].__set__  # no frozen __setattr__ on the way


class _Recalled:
    """A field of a RecalledArticle, filled in with all the others on first use: a non-data
    descriptor, so once filled the instance's own value is found first."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, article: RecalledArticle | None, owner: type | None = None) -> object:
        if article is None:
            return self
        article._fill()
        return article.__dict__[self.name]


class _RecalledMinutes(_Recalled):
    """`read_minutes`: from the row, or, if it was not counted then, from the file now."""

    def __get__(self, article: RecalledArticle | None, owner: type | None = None) -> object:
        if article is None:
            return self
        article._fill()
        values = article.__dict__
        if "read_minutes" not in values:
            recaller, key = values["_count"]
            fresh = recaller.reread(key)
            if fresh is None:
                raise EntryError(Problem(recaller.shown(key), "file", "changed while the run "
                                         "was using it", "run again"))
            values["read_minutes"] = fresh.read_minutes
        return values["read_minutes"]


class RecalledArticle(Article):
    """An Article recalled from its cache row: slug, category and checksum at once, the
    rest on first use. Equal to the Article read from the same file."""

    path = _Recalled()
    title = _Recalled()
    published = _Recalled()
    body = _Recalled()
    updated = _Recalled()
    summary = _Recalled()
    author = _Recalled()
    tags = _Recalled()
    sources = _Recalled()
    stated_takeaways = _Recalled()
    disclaimer = _Recalled()
    read_minutes = _RecalledMinutes()
    url = _Recalled()
    summariser = _Recalled()

    def _fill(self) -> None:
        values = self.__dict__
        if "_recalled" not in values:
            return
        key, published, tail, recaller = values["_recalled"]
        try:
            (title, updated, summary, author, tags, takeaways, sources, disclaimer, read_minutes,
             url) = marshal.loads(tail)
            if read_minutes is None:  # not counted when the row was made: counted if used
                values["_count"] = (recaller, key)
            else:
                values["read_minutes"] = read_minutes
            values.update(
                path=recaller.shown(key), title=title,
                published=datetime.fromisoformat(published).astimezone(recaller.timezone),
                updated=(datetime.fromisoformat(updated).astimezone(recaller.timezone)
                         if updated else None),
                body=recaller.body(key, url), summary=summary, author=author, tags=tags,
                stated_takeaways=takeaways,
                sources=tuple(Source(t, u) for t, u in sources) if sources else (),
                disclaimer=disclaimer, url=url,
                summariser=recaller.summariser)
        except (ValueError, EOFError, TypeError):  # not ours after all: read the file
            fresh = recaller.reread(key)
            if fresh is None:
                raise EntryError(Problem(recaller.shown(key), "file", "changed while the run "
                                         "was using it", "run again")) from None
            values.update({name: getattr(fresh, name) for name in _LAZY},
                          summariser=recaller.summariser, _reread=True)
        values.pop("_recalled", None)  # another thread may have filled it as well

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Article):
            return compared(self) == compared(other)
        return NotImplemented

    __hash__ = Article.__hash__


_LAZY = tuple(name for name, value in vars(RecalledArticle).items()
              if isinstance(value, _Recalled) and name != "summariser")
