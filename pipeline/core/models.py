"""The values that flow between stages."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

from pipeline.core.errors import Problem


class Body:
    """An entry's sanitised HTML, made on first use: in a large archive most entries never
    appear in a feed or a digest, and Markdown rendering is the costly part of reading one."""

    __slots__ = ("_html", "_render")

    def __init__(self, html_or_render: str | Callable[[], str]) -> None:
        if isinstance(html_or_render, str):
            self._html: str | None = html_or_render
            self._render: Callable[[], str] | None = None
        else:
            self._html, self._render = None, html_or_render

    @property
    def html(self) -> str:
        if self._html is None:
            assert self._render is not None
            self._html, self._render = self._render(), None
        return self._html

    @property
    def rendered(self) -> bool:
        return self._html is not None

    def fill(self, html: str) -> None:
        """The HTML rendering would give, known from elsewhere (a cache): not rendered then."""
        if self._html is None:
            self._html, self._render = html, None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Body) and self.html == other.html

    def __hash__(self) -> int:
        return hash(self.html)

    def __repr__(self) -> str:
        return f"Body({'rendered' if self._html is not None else 'not rendered yet'})"


@dataclass(frozen=True)
class Source:
    title: str
    url: str


@dataclass(frozen=True)
class Article:
    """One journal entry, whatever file format it came from."""

    path: Path  # relative to the site folder, as shown in messages
    slug: str
    title: str
    published: datetime  # timezone-aware, in the site's timezone (compare freely: aware)
    body: Body  # sanitised HTML, links absolute; see body_html
    updated: datetime | None = None
    category: str = ""
    summary: str = ""  # the standfirst
    author: str = ""
    tags: tuple[str, ...] = ()
    sources: tuple[Source, ...] = ()
    # The takeaways the front matter states, as written (none: the summary draws them).
    stated_takeaways: tuple[str, ...] = ()
    disclaimer: str = ""
    read_minutes: int = 1
    url: str = ""  # absolute URL of the article on the site
    checksum: str = ""  # of the entry file's bytes: what the feeds' fingerprint is made of
    # Draws the takeaways from the entry (entries/summarise.py): given once, when the entry
    # is collected.
    summariser: Callable[[Article], tuple[str, ...]] | None = field(
        default=None, compare=False, repr=False)

    @property
    def body_html(self) -> str:
        return self.body.html

    @cached_property
    def takeaways(self) -> tuple[str, ...]:
        """The 1–3 takeaways feeds and digests show, drawn on first use: most come from the
        body, and only the entries a feed or digest shows are ever rendered."""
        return self.summariser(self) if self.summariser else self.stated_takeaways

    @property
    def date_label(self) -> str:
        """`24 Jun 2026`: the journal's own date style, on the site's calendar."""
        return f"{self.published.day} {self.published:%b %Y}"


ACTIVE, PENDING, UNSUBSCRIBED, BOUNCED = "active", "pending", "unsubscribed", "bounced"
COMPLAINED = "complained"  # a spam complaint (feedback loop, SES): never mailed again
STATUSES = (ACTIVE, PENDING, UNSUBSCRIBED, BOUNCED, COMPLAINED)
OPTED_OUT = (UNSUBSCRIBED, BOUNCED)  # statuses only the person (or their mailbox) can undo
_CATEGORY_SPLIT = re.compile(r"[;,|]")


@dataclass(frozen=True)
class Subscriber:
    email: str
    name: str = ""
    categories: tuple[str, ...] = ()  # chosen categories; none chosen = every entry
    status: str = ACTIVE  # active, pending (not confirmed yet), unsubscribed or bounced
    id: int = 0  # the ledger's row id (0: not in the ledger); unsubscribe tokens carry it


def email_key(email: str) -> str:
    """Addresses are the same person whatever their case (what providers actually do)."""
    return email.lower()


def parse_categories(text: str | Iterable[str]) -> tuple[str, ...]:
    """Categories from `Heart Health;Nutrition` (or , or | between them), de-duplicated
    case-insensitively and sorted, so one choice always has one spelling."""
    parts = _CATEGORY_SPLIT.split(text) if isinstance(text, str) else list(text)
    found: dict[str, str] = {}
    for part in parts:
        name = " ".join(part.split())
        if name:
            found.setdefault(name.casefold(), name)
    return tuple(found[key] for key in sorted(found))


def segment_key(categories: Iterable[str]) -> str:
    """Who gets the same digest: subscribers whose chosen categories match case-insensitively.
    "" is everyone who chose nothing (they get every entry)."""
    return ";".join(sorted({" ".join(c.split()).casefold() for c in categories} - {""}))


class CachedEntry(NamedTuple):
    """What the ledger keeps of one entry file (entries/cache.py makes and reads `payload`).
    A named tuple: 5,000 are made from rows on every run that reads the cache."""

    size: int
    mtime_ns: int
    checksum: str
    payload: str | bytes


# Filled per subscriber in a digest's rendition; chosen to pass through jinja2, MJML and the
# CSS inliner unchanged (publishing writes them, mail fills them in).
PLACEHOLDERS = {"unsubscribe_url": "@@UNSUBSCRIBE_URL@@", "email": "@@EMAIL@@"}


@dataclass(frozen=True)
class Digest:
    """One issue of the newsletter, rendered once and frozen in the ledger."""

    id: int
    key: str  # globally unique, used in Message-IDs
    created: datetime  # when it was built: its issue date
    subject: str
    html: str
    text: str
    slugs: tuple[str, ...]


@dataclass(frozen=True)
class DigestListing:
    """A past digest as the archive page lists it (without its HTML)."""

    id: int
    created: datetime
    subject: str
    lead_slug: str  # with `created`, names the digest's web copy
    entries: int


@dataclass
class RunReport:
    problems: list[Problem] = field(default_factory=list)
    published: int = 0
    new: int = 0  # entries in the digest this run built or finished
    written: int = 0  # messages written to the outbox by this run
    written_to: str = "outbox/new"  # or outbox/compact (outbox.mode = "compact")
    subscribers: int = 0
    feeds_changed: list[str] = field(default_factory=list)
    digest_id: int | None = None
    held_back: int = 0  # new entries waiting for the cadence to allow the next digest
    new_titles: list[str] = field(default_factory=list)
    next_digest: datetime | None = None  # when digest.cadence next allows one (None: any run)
    upcoming: list[datetime] = field(default_factory=list)  # entries waiting for their date
    # Problems not open after the last run (None: not tracked, e.g. a dry run): what --quiet
    # prints, so one typo is mailed once, not by every cron run.
    fresh_problems: list[Problem] | None = None

    @property
    def outcome(self) -> str:
        """One line for `newsletter status`."""
        from pipeline.core.wording import counted

        if self.digest_id is not None:
            done = f"digest {self.digest_id}: {counted(self.written, 'message')} written"
        elif self.held_back:
            done = f"{counted(self.held_back, 'new entry')} held back by the cadence"
        else:
            done = "nothing new"
        return done + (f"; {counted(self.rejected, 'problem')}" if self.rejected else "")

    @property
    def rejected(self) -> int:
        return sum(1 for p in self.problems if not p.warning)
