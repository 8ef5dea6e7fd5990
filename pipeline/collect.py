"""Find entry files, read each with the reader for its format, keep what is published."""

from __future__ import annotations

import codecs
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pipeline.config import Config
from pipeline.errors import EntryError, Problem
from pipeline.models import Article
from pipeline.readers.journal_page import read_journal_page
from pipeline.readers.markdown import read_markdown

Reader = Callable[[Path, str, Config], tuple[Article | None, list[Problem]]]
READERS: dict[str, Reader] = {
    ".md": read_markdown,
    ".markdown": read_markdown,
    ".txt": read_journal_page,
}
MAX_ENTRY_BYTES = 1_000_000


def entry_files(config: Config) -> list[Path]:
    """Entry files under articles/, in a stable order; hidden files and other formats ignored."""
    if not config.articles_dir.is_dir():
        return []
    return sorted(
        path for path in config.articles_dir.rglob("*")
        if path.suffix.lower() in READERS and path.is_file()
        and not any(part.startswith((".", "_")) for part in path.relative_to(config.site_dir).parts)
    )


def collect_articles(config: Config, now: datetime) -> tuple[list[Article], list[Problem]]:
    """Every published entry, newest first, and every problem met on the way.

    Drafts and entries dated after `now` are left out silently: they are not errors.
    """
    read: list[Article] = []
    problems: list[Problem] = []
    for path in entry_files(config):
        shown = path.relative_to(config.site_dir)
        try:
            article, warnings = read_entry(path, shown, config)
        except EntryError as exc:
            problems.append(exc.problem)
            continue
        except Exception as exc:  # one unreadable entry must never stop the run
            problems.append(Problem(shown, "file", f"could not be read ({type(exc).__name__}: "
                                    f"{exc})", "check the file's permissions and content"))
            continue
        problems.extend(warnings)
        if article is not None and article.published <= now:
            read.append(article)
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


def read_entry(path: Path, shown: Path, config: Config) -> tuple[Article | None, list[Problem]]:
    """Read one entry file; `shown` is the path used in messages (relative to the site)."""
    size = path.stat().st_size
    if size > MAX_ENTRY_BYTES:
        raise EntryError(Problem(shown, "file", f"is {size:,} bytes, over the "
                                 f"{MAX_ENTRY_BYTES:,} byte limit", "split it or trim it"))
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # else "binary" below
        raise EntryError(Problem(shown, "file", "is UTF-16, not UTF-8",
                                 "save it as UTF-8 in your editor"))
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
