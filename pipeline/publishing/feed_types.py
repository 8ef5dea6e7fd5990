"""The site's feeds, one line each: the file under public/, its media type, what a feed
reader's subscribe menu calls it, and the function that renders it. Everything that names,
checks, renders or advertises a feed reads this table; a new feed type is one renderer and
one line here.

Renderers are named, not imported: a quiet cron run checks the files exist and must not pay
for importing feedgen.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.core.config import Config
from pipeline.core.models import Article
from pipeline.core.text import slugify

# (articles, config, path under public/) → the feed's bytes
Renderer = Callable[[Sequence[Article], Config, str], bytes]


@dataclass(frozen=True)
class FeedType:
    name: str  # the file under public/; its URL is the site's URL + name
    media_type: str
    label: str
    renderer: str  # "module:function", a Renderer

    def render(self, articles: Sequence[Article], config: Config, path: str = "") -> bytes:
        module, function = self.renderer.split(":")
        render: Renderer = getattr(importlib.import_module(module), function)
        return render(articles, config, path or self.name)


RSS = FeedType("feed.xml", "application/rss+xml", "RSS", "pipeline.publishing.feeds:rss")
FEEDS = (
    RSS,  # first: the feed the digest links to
    FeedType("atom.xml", "application/atom+xml", "Atom", "pipeline.publishing.feeds:atom"),
    FeedType("feed.json", "application/feed+json", "JSON Feed",
             "pipeline.publishing.feeds:json_feed"),
)


def category_feed_path(slug: str) -> str:
    """Where a category's own feed (RSS, the site feed's entries in that category) goes."""
    return f"categories/{slug}/{RSS.name}"


def category_feeds(articles: Sequence[Article]) -> dict[str, tuple[str, list[Article]]]:
    """{category_feed_path(slug): (category, its articles)}; categories that differ only in
    case or punctuation share a slug, and so a feed (named after the first one seen)."""
    feeds: dict[str, tuple[str, list[Article]]] = {}
    for article in articles:
        slug = slugify(article.category.replace("'", "").replace("’", ""))  # childrens-health
        if slug:
            feeds.setdefault(category_feed_path(slug), (article.category, []))[1].append(article)
    return feeds


def feed_entries(articles: Sequence[Article]) -> dict[str, Sequence[Article]]:
    """Every feed of these articles (the ones the feeds show, newest first) and the entries it
    shows, keyed by its path under public/: what each feed's bytes are made of, besides the
    config and the code."""
    return {**{feed.name: articles for feed in FEEDS},
            **{path: entries for path, (_, entries) in category_feeds(articles).items()}}
