"""The rendered bodies of the entries the feeds show, and their takeaways, kept from one run
to the next.

A run after one new entry shows ~50 entries in the feeds; rendering their Markdown again
(~2 ms each) was a fifth of that run, drawing their takeaways from the HTML ~4 ms. Each body
is kept under the code's version, the entry file's checksum and its URL (what the HTML and the
takeaways are made of), for the entries shown last time only, so the store stays the size of
one feed: `[html, [takeaway, ...]]` (a version that kept the HTML alone wrote just the HTML).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Protocol

from pipeline import __version__
from pipeline.core.models import Article

STATE_KEY = "shown_bodies"


class StateStore(Protocol):
    def get_state(self, key: str) -> str | None: ...

    def set_state(self, key: str, value: str) -> None: ...


def _key(article: Article) -> str | None:
    return f"{__version__}\0{article.checksum}\0{article.url}" if article.checksum else None


def recall_bodies(articles: Sequence[Article], store: StateStore) -> None:
    """Give each article whose body was kept that body, unrendered ones only."""
    try:
        kept = json.loads(store.get_state(STATE_KEY) or "{}")
    except ValueError:
        return  # unreadable: render again, and keep_bodies rewrites it
    for article in articles:
        found = kept.get(_key(article))
        if isinstance(found, str):
            article.body.fill(found)
        elif (isinstance(found, list) and len(found) == 2 and isinstance(found[0], str)
              and isinstance(found[1], list) and all(isinstance(t, str) for t in found[1])):
            article.body.fill(found[0])
            # Article.takeaways is a cached_property: this is where it keeps what it drew.
            article.__dict__.setdefault("takeaways", tuple(found[1]))


def keep_bodies(articles: Sequence[Article], store: StateStore) -> None:
    """Keep the rendered bodies of `articles` (and only those) with their takeaways, if that
    changes anything."""
    kept = {key: [article.body_html, list(article.takeaways)] for article in articles
            if article.body.rendered and (key := _key(article)) is not None}
    value = json.dumps(kept, ensure_ascii=False, sort_keys=True)
    if value != (store.get_state(STATE_KEY) or "{}"):
        store.set_state(STATE_KEY, value)
