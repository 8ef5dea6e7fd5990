"""RSS 2.0 and Atom (feedgen) and JSON Feed 1.1: articles in, {path: bytes} out.

Every date comes from the entries, never the clock, so the same articles give the same bytes.
Besides the site feeds (feed_types.FEEDS), an RSS feed per category carries the site feed's
entries in that category.
"""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from functools import lru_cache

from feedgen.ext.base import BaseExtension

from pipeline.core.config import Config
from pipeline.core.models import Article
from pipeline.publishing.feed_types import FEEDS, RSS, category_feeds
from pipeline.publishing.premailer_setup import import_deferring

# feedgen parses dates with dateutil.parser only when given strings; it is given datetimes
# here, so the parser (~4 ms to import) stands deferred (premailer_setup.Deferred).
FeedGenerator = import_deferring("feedgen.feed", ("dateutil.parser",)).FeedGenerator

ATOM_NS = "http://www.w3.org/2005/Atom"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # an empty feed's date: stable, and plainly "never"


def entry_id(config: Config, slug: str) -> str:
    """A guid that survives a change of domain or scheme: built from the journal's own id."""
    return _entry_id(config.journal_id, slug)


@lru_cache(maxsize=4096)  # each entry's id is written ~5 times a run (id and guid, per feed)
def _entry_id(journal_id: str, slug: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'newsletter:{journal_id}:{slug}')}"


def feed_id(config: Config) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'newsletter:{config.journal_id}')}"


def render_feeds(articles: Sequence[Article], config: Config,
                 only: Collection[str] | None = None) -> dict[str, bytes]:
    """All feeds (or those whose paths are in `only`) for the newest `feed.max_items` articles
    (given newest first): the site feeds, then one RSS feed per category, keyed by their path
    under public/."""
    items = list(articles[: config.feed_max_items])
    feeds = {feed.name: feed.render(items, config) for feed in FEEDS
             if only is None or feed.name in only}
    for path, (category, entries) in category_feeds(items).items():
        if only is None or path in only:
            fg = _generator(entries, config, path, f"{config.title}: {category}")
            feeds[path] = fg.rss_str(pretty=True)
    return feeds


def rss(items: Sequence[Article], config: Config, path: str) -> bytes:
    return _generator(items, config, path).rss_str(pretty=True)


def atom(items: Sequence[Article], config: Config, path: str) -> bytes:
    return _generator(items, config, path).atom_str(pretty=True)


def content_html(article: Article) -> str:
    """The full article for feed readers: body, sources as links, the disclaimer."""
    parts = [article.body_html]
    if article.sources:
        links = "".join(
            f'<li><a href="{html.escape(s.url)}">{html.escape(s.title)}</a></li>' if s.url
            else f"<li>{html.escape(s.title)}</li>"
            for s in article.sources)
        parts.append(f"<h2>Sources</h2><ol>{links}</ol>")
    if article.disclaimer:
        parts.append(f"<p><em>{html.escape(article.disclaimer)}</em></p>")
    return "\n".join(parts)


def summary_text(article: Article) -> str:
    return " ".join(article.takeaways)


def _modified(article: Article) -> datetime:
    return max(article.published, article.updated or article.published)


def _newest(items: Sequence[Article]) -> datetime:
    return max((_modified(a) for a in items), default=_EPOCH)


class _WebSubHub(BaseExtension):
    """feedgen writes only the self link into RSS: this adds `<atom:link rel="hub">`."""

    href = ""

    def extend_ns(self) -> dict[str, str]:
        return {}  # feedgen declares the atom prefix itself

    def extend_rss(self, rss_feed):  # type: ignore[no-untyped-def]  (feedgen's lxml element)
        if self.href:
            channel = rss_feed[0]
            channel.append(channel.makeelement(f"{{{ATOM_NS}}}link", href=self.href, rel="hub"))
        return rss_feed


def _generator(items: Sequence[Article], config: Config, path: str,
               title: str = "") -> FeedGenerator:
    fg = FeedGenerator()
    fg.load_extension("dc", atom=False)  # dc:creator names RSS items' authors
    fg.register_extension("websub", _WebSubHub, atom=False)
    # A category feed's id is its own: readers must not take it for the site feed.
    site_feed = next((feed for feed in FEEDS if feed.name == path), None)
    fg.id(feed_id(config) if site_feed else _feed_path_id(config, path))
    fg.title(title or config.title)
    fg.description(config.description or config.title)
    fg.subtitle(config.description or config.title)
    fg.language(config.language)
    fg.author({"name": config.author or config.title})
    # RSS takes the channel <link> from the last link added: self first, the site last.
    fg.link(href=config.site_url + path, rel="self",
            type=site_feed.media_type if site_feed else RSS.media_type)
    if config.websub_hub:
        fg.link(href=config.websub_hub, rel="hub")  # Atom; RSS gets it from _WebSubHub
        fg.websub.href = config.websub_hub
    fg.link(href=config.site_url, rel="alternate")
    fg.lastBuildDate(_newest(items))
    fg.updated(_newest(items))
    fg.generator("clinic-newsletter")
    for article in items:  # newest first; feedgen prepends unless told to append
        entry = fg.add_entry(order="append")
        entry.id(entry_id(config, article.slug))
        entry.guid(entry_id(config, article.slug), permalink=False)
        entry.title(article.title)
        entry.link(href=article.url, rel="alternate")
        entry.published(article.published)
        entry.updated(_modified(article))
        # RSS readers treat <description> as HTML: takeaways are text and must stay text.
        entry.description(html.escape(summary_text(article), quote=False))
        entry.summary(summary_text(article))
        entry.content(content_html(article), type="html")
        if article.author:
            entry.author({"name": article.author})  # Atom; RSS <author> must be an address
            entry.dc.dc_creator(article.author)
        for term in filter(None, (article.category, *article.tags)):
            entry.category(term=term)
    return fg


def _feed_path_id(config: Config, path: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'newsletter:{config.journal_id}:{path}')}"


def json_feed(items: Sequence[Article], config: Config, path: str) -> bytes:
    hubs = [{"type": "WebSub", "url": config.websub_hub}] if config.websub_hub else []
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": config.title,
        "home_page_url": config.site_url,
        "feed_url": config.site_url + path,
        "description": config.description or config.title,
        "language": config.language,
        "authors": [{"name": config.author or config.title}],
        **({"hubs": hubs} if hubs else {}),
        "items": [
            {
                "id": entry_id(config, a.slug),
                "url": a.url,
                "title": a.title,
                "content_html": content_html(a),
                "summary": summary_text(a),
                "date_published": a.published.isoformat(),
                "date_modified": _modified(a).isoformat(),
                "tags": [t for t in (a.category, *a.tags) if t],
                **({"authors": [{"name": a.author}]} if a.author else {}),
            }
            for a in items
        ],
    }
    text = json.dumps(feed, ensure_ascii=False, indent=2)
    # Titles and summaries are plain text that may quote markup: escaped, `<script` cannot
    # appear even to a reader that renders them as HTML or inlines the JSON in a page.
    # Outside strings, JSON has no < > &, so this changes no structure; parsers read it back.
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .encode() + b"\n")
