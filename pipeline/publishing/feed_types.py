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
