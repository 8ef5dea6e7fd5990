"""Find entry files, read each with the reader for its format, keep what is published."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from pipeline.config import Config
from pipeline.entry_cache import CachedEntry, EntryStore, decode, encode
from pipeline.errors import EntryError, Problem
from pipeline.models import Article, Body

Reader = Callable[[Path, str, Config], tuple[Article | None, list[Problem]]]


# Readers are imported on first use: a run where no entry changed imports neither YAML nor
# Markdown (that is most of a no-op run's time budget).
def _read_markdown(path: Path, text: str, config: Config) -> tuple[Article | None, list[Problem]]:
    from pipeline.readers.markdown import read_markdown

    return read_markdown(path, text, config)


def _read_journal_page(path: Path, text: str, config: Config
                       ) -> tuple[Article | None, list[Problem]]:
    from pipeline.readers.journal_page import read_journal_page

    return read_journal_page(path, text, config)


READERS: dict[str, Reader] = {
    ".md": _read_markdown,
    ".markdown": _read_markdown,
    ".txt": _read_journal_page,
}
MAX_ENTRY_BYTES = 1_000_000


def entry_files(config: Config) -> list[Path]:
    """Entry files under articles/, in a stable order; hidden files and other formats ignored."""
    return [config.site_dir / shown for shown, _ in _scan(config)]


def _scan(config: Config) -> list[tuple[str, os.stat_result]]:
    """(path relative to the site, stat) of each entry file, sorted. os.scandir rather than
    pathlib: on a 1,000-entry site this walk is a good part of a no-op run."""
    found: list[tuple[str, os.stat_result]] = []
    pending = ["articles"]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(config.site_dir / folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.name.startswith((".", "_")):
                continue
            shown = f"{folder}/{entry.name}"
            if entry.is_dir():
                pending.append(shown)
            elif os.path.splitext(entry.name)[1].lower() in READERS and entry.is_file():
                found.append((shown, entry.stat()))
    found.sort()
    return found


def collect_articles(config: Config, now: datetime, store: EntryStore | None = None
                     ) -> tuple[list[Article], list[Problem]]:
    """Every published entry, newest first, and every problem met on the way.

    Drafts and entries dated after `now` are left out silently: they are not errors. With a
    `store`, unchanged entries are recalled instead of read again.
    """
    cached = store.cached_entries() if store is not None else {}
    fresh: dict[str, CachedEntry] = {}
    read: list[Article] = []
    problems: list[Problem] = []
    for shown, stat in _scan(config):
        article, found = _read_or_recall(shown, stat, config, cached, fresh)
        problems.extend(found)
        if article is not None and article.published <= now:
            read.append(article)
    if store is not None and fresh:
        store.store_entries(fresh)
    # Oldest first, so that when two entries claim one slug the one already out keeps it.
    read.sort(key=lambda a: (a.published, str(a.path)))
    seen: dict[str, Path] = {}
    articles: list[Article] = []
    for article in read:
        if article.slug in seen:
            problems.append(Problem(article.path, "slug", f"{article.slug!r} is already used by "
                                    f"{seen[article.slug]}", "give one of them its own `slug:`"))
            continue
        seen[article.slug] = article.path
        articles.append(article)
    articles.reverse()
    return articles, problems


def _read_or_recall(key: str, stat: os.stat_result, config: Config,
                    cached: dict[str, CachedEntry], fresh: dict[str, CachedEntry]
                    ) -> tuple[Article | None, list[Problem]]:
    shown = Path(key)
    try:
        hit = cached.get(key)
        body = Body(lambda: load_body(config.site_dir / key, shown, config))
        if hit and (hit.size, hit.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            recalled = decode(hit.payload, shown, body, hit.checksum, config.timezone)
            if recalled is not None:
                return recalled
        path = config.site_dir / key
        data = path.read_bytes() if stat.st_size <= MAX_ENTRY_BYTES else b""
        checksum = hashlib.sha256(data).hexdigest()
        if hit and hit.checksum == checksum:  # touched, not changed
            recalled = decode(hit.payload, shown, body, checksum, config.timezone)
            if recalled is not None:
                fresh[key] = CachedEntry(stat.st_size, stat.st_mtime_ns, checksum, hit.payload)
                return recalled
        try:
            article, problems = read_entry(path, shown, config, data)
        except EntryError as exc:
            article, problems = None, [exc.problem]
        if article is not None:
            article = replace(article, checksum=checksum)
        fresh[key] = CachedEntry(stat.st_size, stat.st_mtime_ns, checksum,
                                 encode(article, problems))
        return article, problems
    except Exception as exc:  # one unreadable entry must never stop the run
        return None, [Problem(shown, "file", f"could not be read ({type(exc).__name__}: {exc})",
                              "check the file's permissions and content")]


def load_body(path: Path, shown: Path, config: Config) -> str:
    """An entry's body HTML, read again from its file: for entries recalled from the cache."""
    article, _ = read_entry(path, shown, config)
    if article is None:
        raise EntryError(Problem(shown, "file", "changed while the run was using it",
                                 "run again"))
    return article.body_html


def read_entry(path: Path, shown: Path, config: Config, data: bytes | None = None
               ) -> tuple[Article | None, list[Problem]]:
    """Read one entry file; `shown` is the path used in messages (relative to the site)."""
    size = len(data) if data else path.stat().st_size
    if size > MAX_ENTRY_BYTES:
        raise EntryError(Problem(shown, "file", f"is {size:,} bytes, over the "
                                 f"{MAX_ENTRY_BYTES:,} byte limit", "split it or trim it"))
    if data is None:
        data = path.read_bytes()
    if b"\x00" in data:
        raise EntryError(Problem(shown, "file", "is binary, not text",
                                 "move it out of articles/"))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise EntryError(Problem(shown, "file", f"is not UTF-8 (byte {exc.start})",
                                 "save it as UTF-8 in your editor", line=line)) from None
    if not text.strip():
        raise EntryError(Problem(shown, "file", "is empty", "write the entry or delete the file"))
    return READERS[path.suffix.lower()](shown, text, config)
