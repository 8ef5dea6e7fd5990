"""Find entry files, read each with the reader for its format, keep what is published."""

from __future__ import annotations

import gc
import hashlib
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pipeline.core.config import Config
from pipeline.core.errors import EntryError, Problem
from pipeline.core.models import Article, Body, CachedEntry
from pipeline.entries.cache import (
    EntryStore,
    Recaller,
    decode,
    encode,
    instant,
)
from pipeline.entries.entry_file import (
    MAX_ENTRY_BYTES,
    load_body,
    read_data,
    read_entry,
    read_file,
    shown_path,
)
from pipeline.entries.fork import ReadingFork
from pipeline.entries.readers import READERS, LazyReader
from pipeline.entries.scan import scan
from pipeline.entries.shown_render import render_in_fork, render_shown, warm_renderers
from pipeline.entries.summarise import takeaways_for

PARALLEL_FROM = 300  # entries to read before a process pool pays for itself (bench/README.md)


def collect_articles(config: Config, now: datetime, store: EntryStore | None = None,
                     files: list[tuple[str, os.stat_result]] | None = None,
                     upcoming: list[datetime] | None = None,
                     meanwhile: Callable[[], object] | None = None
                     ) -> tuple[list[Article], list[Problem]]:
    """Every published entry, newest first, its takeaways drawn on first use (summarise),
    and every problem met on the way.

    Drafts and entries dated after `now` are left out silently: they are not errors (their
    dates are added to `upcoming` if given). With a `store`, unchanged entries are recalled
    instead of read again. `files` is a `scan()` already made. `meanwhile` is called once
    while a fork reads entries, if many are read (see _read_all).
    """
    problems: list[Problem] = []
    if files is None:
        files = scan(config, problems)
    later = _Later()
    try:
        articles = _collected(config, now, store, files, upcoming, problems, later, meanwhile)
        if later.fork is not None:  # a large batch was read: the fork renders bodies too
            render_shown(articles[: config.feed_max_items], later, config)
        later.store_rows()
    finally:
        if later.fork is not None:
            later.fork.finish()
    return articles, problems


class _Later:
    """What reading leaves until the entries are sorted: the fork that read part of them,
    if any (to render bodies the feeds show), and the new cache rows (stored meanwhile)."""

    def __init__(self) -> None:
        self.fork: ReadingFork | None = None
        self.store: EntryStore | None = None
        self.rows: dict[str, CachedEntry] = {}

    def store_rows(self) -> None:
        if self.store is not None and self.rows:
            self.store.store_entries(self.rows)
        self.rows = {}


def _collected(config: Config, now: datetime, store: EntryStore | None,
               files: list[tuple[str, os.stat_result]], upcoming: list[datetime] | None,
               problems: list[Problem], later: _Later,
               meanwhile: Callable[[], object] | None = None) -> list[Article]:
    # Thousands of long-lived objects are made here and none is garbage: the collector's
    # passes over them were a fifth of recalling 5,000 entries.
    collecting = gc.isenabled()
    gc.disable()
    try:
        found = _found(config, store, files, later, meanwhile)
    finally:
        if len(files) >= PARALLEL_FROM and threading.active_count() == 1:
            # A large site's articles live as long as the run, and the collector's first
            # passes after this would scan every one of them again (~12 ms of a cold build,
            # ~10 of a run after one new entry). Frozen, they are skipped (refcounting still
            # frees them). Never in a threaded process such as `serve`, whose garbage of
            # other requests would be frozen with them.
            gc.freeze()
        if collecting:
            gc.enable()
    due = instant(now)
    read: list[tuple[int, str, Article]] = []
    for when, key, article, entry_problems in found:
        if entry_problems:
            problems.extend(entry_problems)
        if article is None:
            continue
        if when <= due:
            read.append((when, key, article))
        elif upcoming is not None:
            upcoming.append(article.published)
    # Oldest first, so that when two entries claim one slug the one already out keeps it.
    # Keys are unique: two articles are never compared.
    read.sort()
    seen: dict[str, str] = {}
    articles: list[Article] = []
    for _, key, article in read:
        slug = article.slug
        if slug in seen:
            problems.append(Problem(article.path, "slug",
                                    f"{slug!r} is already used by {shown_path(seen[slug])}",
                                    "give one of them its own `slug:`"))
            continue
        seen[slug] = key
        articles.append(article)
    articles.reverse()
    return articles


# (instant the entry is published or 0, its key, its article or None, its problems)
Found = tuple[int, str, Article | None, list[Problem]]
# The same without the key
Reading = tuple[int, Article | None, list[Problem]]


def _found(config: Config, store: EntryStore | None, files: list[tuple[str, os.stat_result]],
           later: _Later, meanwhile: Callable[[], object] | None = None) -> list[Found]:
    """Each entry file's reading, by its key: recalled from `store` if it vouches for the
    file, else read (and its row left in `later` for the store)."""
    cached = store.cached_entries() if store is not None else {}
    fresh: dict[str, CachedEntry] = {}
    found: list[Found] = []
    misses: list[tuple[str, os.stat_result]] = []
    recaller = _recaller(config)
    for key, stat in files:
        hit = cached.get(key)
        recalled = None
        if hit and hit.size == stat.st_size and hit.mtime_ns == stat.st_mtime_ns:
            recalled = decode(hit.payload, key, hit.checksum, recaller)
        if recalled is None:
            misses.append((key, stat))
        else:
            found.append((recalled[0], key, recalled[1], recalled[2]))
    found += [(when, key, article, problems) for (key, _), (when, article, problems)
              in zip(misses, _read_all(misses, config, cached, fresh, recaller, later,
                                                 meanwhile),
                     strict=True)]
    later.store, later.rows = store, fresh
    return found


def published_categories(config: Config, now: datetime, store: EntryStore | None = None
                         ) -> list[str]:
    """The categories of the published entries, sorted; unchanged entries are recalled from
    `store`'s cache if given (nothing is written to it)."""
    articles, _ = collect_articles(config, now, _Recall(store) if store else None)
    return sorted({a.category for a in articles if a.category}, key=str.casefold)


class _Recall:
    """A store's cache, read only: a command that only looks must not write the ledger."""

    def __init__(self, store: EntryStore) -> None:
        self.store = store

    def cached_entries(self) -> dict[str, CachedEntry]:
        return self.store.cached_entries()

    def store_entries(self, rows: dict[str, CachedEntry]) -> None:
        pass


def _recaller(config: Config) -> Recaller:
    def body(key: str, url: str) -> Body:
        return Body(lambda: load_body(config.site_dir / key, Path(key), url, config))

    def reread(key: str) -> Article | None:
        article, _ = read_entry(config.site_dir / key, shown_path(key), config)
        return article

    return Recaller(config.timezone, shown_path, body, reread, takeaways_for)


def _read_all(misses: list[tuple[str, os.stat_result]], config: Config,
              cached: dict[str, CachedEntry], fresh: dict[str, CachedEntry],
              recaller: Recaller, later: _Later | None = None,
              meanwhile: Callable[[], object] | None = None) -> list[Reading]:
    """Read the entries the cache could not vouch for: on two cores when there are many (a
    first run over a large archive), this process and a fork of it each taking the next
    chunk of them until none is left, the fork handing back its rows in one piece; this
    process first does `meanwhile`, if given (work of its own, e.g. imports it will need).
    The fork is left in `later`, whose owner must finish it; without `later` it is finished
    here."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # Never forked from a threaded process (`serve`): the fork would keep only this thread,
    # and any lock another one held would stay locked in it.
    if not (len(misses) >= PARALLEL_FROM and (cores or 1) >= 2 and hasattr(os, "fork")
            and threading.active_count() == 1):
        results: list[Reading] = []
        for key, stat in misses:
            entry, when, article, problems = _read_one(key, stat, config, cached.get(key),
                                                       recaller)
            fresh[key] = entry
            results.append((when, article, problems))
        return results
    # Imported once, before the fork: this process reads entries too.
    for suffix in {os.path.splitext(key)[1].lower() for key, _ in misses}:
        reader = READERS[suffix]
        if isinstance(reader, LazyReader):
            reader.load()

    def read(miss: tuple[str, os.stat_result]) -> tuple[int, int, str, bytes]:
        key, stat = miss
        row = _read_one(key, stat, config, cached.get(key), recaller, row_only=True)[0]
        return row.size, row.mtime_ns, row.checksum, row.payload

    forked = ReadingFork(misses, read, lambda ask: render_in_fork(ask, config),
                         lambda: warm_renderers(config))
    if later is not None:
        later.fork = forked
    mine: dict[int, tuple[CachedEntry, Reading]] = {}
    try:
        if meanwhile is not None:
            meanwhile()
        warm_renderers(config)  # this process renders some of the shown bodies after
        for start in forked.chunks():
            for index in range(start, min(start + forked.chunk, len(misses))):
                key, stat = misses[index]
                entry, when, article, problems = _read_one(key, stat, config, cached.get(key),
                                                           recaller)
                mine[index] = entry, (when, article, problems)
        theirs = forked.rows()
    except BaseException:
        forked.finish()  # reaped, not left blocked on its pipe
        raise
    if later is None:
        forked.finish()
    results = []
    for index, (key, stat) in enumerate(misses):
        if index in mine:
            entry, reading = mine[index]
        else:
            row = theirs.get(index)
            entry = CachedEntry(*row) if row is not None else None
            recalled = (decode(entry.payload, key, entry.checksum, recaller)
                        if entry is not None else None)
            if entry is None or recalled is None:  # the fork failed: read it here
                entry, when, article, problems = _read_one(key, stat, config, cached.get(key),
                                                           recaller)
                recalled = (when, article, problems)
            reading = recalled
        fresh[key] = entry
        results.append(reading)
    return results


def _read_one(key: str, stat: os.stat_result, config: Config, hit: CachedEntry | None,
              recaller: Recaller, row_only: bool = False
              ) -> tuple[CachedEntry, int, Article | None, list[Problem]]:
    """Read one entry file (or recall it when only its mtime changed) and its cache row;
    `row_only`: the row is all the caller uses (a worker: the parent decodes the row)."""
    shown = shown_path(key)
    checksum = ""
    try:
        data = (read_file(os.path.join(config.site_dir, key), stat.st_size)
                if stat.st_size <= MAX_ENTRY_BYTES else None)
        checksum = hashlib.sha256(data or b"").hexdigest()
        if hit and hit.checksum == checksum:  # touched, not changed
            entry = CachedEntry(stat.st_size, stat.st_mtime_ns, checksum, hit.payload)
            recalled = decode(entry.payload, key, checksum, recaller)
            if recalled is not None:
                return entry, *recalled
        try:
            article, problems = read_data(shown, os.path.splitext(key)[1].lower(), config,
                                           stat.st_size if data is None else len(data), data)
        except EntryError as exc:
            article, problems = None, [exc.problem]
        if article is not None and not row_only:
            # The reader's article is new and seen by no one yet: filled in place, not
            # copied (dataclasses.replace was a twentieth of reading an entry).
            _set_field(article, "checksum", checksum)
            _set_field(article, "summariser", takeaways_for)
    except Exception as exc:  # one unreadable entry must never stop the run
        article, problems = None, [Problem(
            shown, "file", f"could not be read ({type(exc).__name__}: {exc})",
            "check the file's permissions and content")]
    when = instant(article.published) if article is not None else 0
    entry = CachedEntry(stat.st_size, stat.st_mtime_ns, checksum, encode(article, problems, when))
    return entry, when, article, problems


_set_field = object.__setattr__  # past the frozen dataclass's guard
