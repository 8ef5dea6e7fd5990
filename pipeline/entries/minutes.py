"""An entry's reading time, counted when first asked for.

Only a digest shows it (ten entries or so a run), and counting the words of every entry read
was about an eighth of reading one. An Article read in this run is a CountedArticle: its
`read_minutes` is counted from its body's source on first use, and its cache row says "not
counted" (None) until then, so a recalled entry counts it from its file when asked.
"""

from __future__ import annotations

from dataclasses import fields

from pipeline.core.models import Article
from pipeline.entries.sanitise import read_minutes_of

_SOURCE = "_words_in"  # the instance's key for the text its words are counted in


def minutes_in(source: str) -> int:
    """The reading time of a body's source: spaces and line ends count the words within a
    few per cent at a quarter of split()'s cost."""
    return read_minutes_of(source.count(" ") + source.count("\n"))


class _CountedOnUse:
    """`read_minutes`, counted on first use and kept (a non-data descriptor: once kept, the
    instance's own value is found first)."""

    def __get__(self, article: Article | None, owner: type | None = None) -> object:
        if article is None:
            return self
        values = article.__dict__
        minutes = minutes_in(values[_SOURCE])
        values["read_minutes"] = minutes
        return minutes


class CountedArticle(Article):
    """An Article whose reading time waits until it is asked for; equal to the Article with
    it counted at once."""

    read_minutes = _CountedOnUse()  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Article):
            return compared(self) == compared(other)
        return NotImplemented

    __hash__ = Article.__hash__


def count_later(article: CountedArticle, source: str) -> CountedArticle:
    """`article` (new, seen by no one yet) with its reading time counted from `source` when
    first asked for, whatever its constructor was given."""
    values = article.__dict__
    values.pop("read_minutes", None)
    values[_SOURCE] = source
    return article


def counted_minutes(article: Article) -> int | None:
    """The article's reading time if it is known without counting, else None."""
    if isinstance(article, CountedArticle):
        minutes = article.__dict__.get("read_minutes")
        return minutes if isinstance(minutes, int) else None
    return article.read_minutes


_COMPARED = tuple(f.name for f in fields(Article) if f.compare)


def compared(article: Article) -> tuple[object, ...]:
    """What dataclass equality compares, read through each field's descriptor."""
    return tuple(getattr(article, name) for name in _COMPARED)
