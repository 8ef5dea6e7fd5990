"""The bodies the feeds will show, rendered right after a large read: every other one by the
fork that read entries, the rest here at the same time (both cores), each exactly as its
Body would render it later."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.config import Config
from pipeline.core.models import Article
from pipeline.entries.cache import RecalledArticle
from pipeline.entries.entry_file import (
    MAX_ENTRY_BYTES,
    load_body,
    read_data,
    read_file,
    shown_path,
)
from pipeline.entries.fork import Ask
from pipeline.entries.minutes import CountedArticle
from pipeline.entries.readers import READERS, LazyReader

if TYPE_CHECKING:
    from pipeline.entries.collect import _Later as Later


def render_shown(shown: list[Article], later: Later, config: Config) -> None:
    """Render the bodies of `shown` (what the feeds will show) now, every other one in the
    fork that read entries and the rest here at the same time, once the cache rows are
    stored; each exactly as its Body would render it later (a body the fork cannot vouch
    for is left to do so)."""
    assert later.fork is not None
    asks: list[Ask] = []
    asked: list[Article] = []
    here: list[Article] = []
    for article in shown:
        ask = _ask(article)
        if ask is not None and len(asked) <= len(here):
            asks.append(ask)
            asked.append(article)
        else:
            here.append(article)
    later.store_rows()  # first: measured, the store is ~3x slower while the fork renders
    later.fork.ask(asks)
    for article in here:
        # A body that cannot be rendered raises again where it is used, as it always did.
        with contextlib.suppress(Exception):
            article.body.html  # noqa: B018 (rendered now, kept by the Body)
    for article, html in zip(asked, later.fork.answers(), strict=True):
        if html is not None:
            article.body.fill(html)


def _ask(article: Article) -> Ask | None:
    """How the fork renders `article`'s body exactly as its Body would: a recalled entry's
    body from its file (load_body); one read in this run from its file's bytes read again
    as they were (same checksum); else None."""
    if article.__class__ is RecalledArticle:
        url = article.url  # decodes the rest of it
        # _reread: its tail could not be decoded, so its body is a fresh reading's
        if article.__dict__.get("_reread") or article.body.rendered:
            return None
        return ("file", _key_of(article), url)
    if (article.__class__ in (Article, CountedArticle) and article.checksum
            and not article.body.rendered):
        return ("entry", _key_of(article), article.checksum)
    return None


def _key_of(article: Article) -> str:
    return article.path.as_posix()


def warm_renderers(config: Config) -> None:
    """A first body rendered by each reader (importing its Markdown library), so that their
    first-use costs are not paid with the bodies the feeds show: in the fork while this
    process sorts the entries, here while the fork reads."""
    for reader in set(READERS.values()):
        read_body = reader.body_reader() if isinstance(reader, LazyReader) else None
        if read_body is not None:
            read_body("---\ntitle: x\n---\n\nA *first* [body](x/).\n", config.site_url)


def render_in_fork(ask: Ask, config: Config) -> str | None:
    """In the fork: the body HTML `ask` (from _ask) stands for."""
    if ask[0] == "file":
        _, key, url = ask
        return load_body(config.site_dir / key, Path(key), url, config)
    _, key, checksum = ask
    data = read_file(os.path.join(config.site_dir, key), MAX_ENTRY_BYTES)
    if hashlib.sha256(data).hexdigest() != checksum:
        return None  # changed since: rendered where it is used, from what was read then
    article, _ = read_data(shown_path(key), os.path.splitext(key)[1].lower(), config, len(data),
                            data)
    return article.body_html if article is not None else None
