"""RSS 2.0 and Atom (feedgen) and JSON Feed 1.1: articles in, {filename: bytes} out.

Every date comes from the entries, never the clock, so the same articles give the same bytes.
"""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from feedgen.feed import FeedGenerator

from pipeline.config import Config
from pipeline.models import Article

FEED_FILES = ("feed.xml", "atom.xml", "feed.json")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # an empty feed's date: stable, and plainly "never"


def entry_id(config: Config, slug: str) -> str:
    """A guid that survives a change of domain or scheme: built from the journal's own id."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'newsletter:{config.journal_id}:{slug}')}"


def feed_id(config: Config) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'newsletter:{config.journal_id}')}"


def render_feeds(articles: Sequence[Article], config: Config) -> dict[str, bytes]:
    """All three feeds for the newest `feed.max_items` articles (given newest first)."""
    items = list(articles[: config.feed_max_items])
    return {
        "feed.xml": _generator(items, config, "feed.xml").rss_str(pretty=True),
        "atom.xml": _generator(items, config, "atom.xml").atom_str(pretty=True),
        "feed.json": _json_feed(items, config),
    }


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


def _generator(items: Sequence[Article], config: Config, filename: str) -> FeedGenerator:
    fg = FeedGenerator()
    fg.load_extension("dc")
    fg.id(feed_id(config))
    fg.title(config.title)
    fg.description(config.description or config.title)
    fg.subtitle(config.description or config.title)
    fg.language(config.language)
    fg.author({"name": config.author or config.title})
    # RSS takes the channel <link> from the last link added: self first, the site last.
    fg.link(href=config.site_url + filename, rel="self",
            type="application/rss+xml" if filename == "feed.xml" else "application/atom+xml")
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
            entry.author({"name": article.author})
        for term in filter(None, (article.category, *article.tags)):
            entry.category(term=term)
    return fg


def _json_feed(items: Sequence[Article], config: Config) -> bytes:
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": config.title,
        "home_page_url": config.site_url,
        "feed_url": config.site_url + "feed.json",
        "description": config.description or config.title,
        "language": config.language,
        "authors": [{"name": config.author or config.title}],
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
