"""The digests on the web, under public/digests/: each digest's web copy (the target of its
"View in browser" link) and the archive page listing them. Bytes out; run.py writes them.

A web copy is public: it is rendered without any subscriber (see digest.render_web_html), so
no address or unsubscribe token can end up in it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from pipeline.core.config import Config
from pipeline.core.models import Article, DigestListing
from pipeline.publishing.digest import (
    ARCHIVE_DIR,
    issue_date,
    render_template,
    render_web_html,
    template_environment,
    web_copy_name,
)

ARCHIVE_TEMPLATE = "archive.html.j2"
ARCHIVE_PAGE = f"{ARCHIVE_DIR}/index.html"
# (file under public/, media type, what a feed reader's subscribe menu calls it)
FEEDS = (
    ("feed.xml", "application/rss+xml", "RSS"),
    ("atom.xml", "application/atom+xml", "Atom"),
    ("feed.json", "application/feed+json", "JSON Feed"),
)


def discovery_links(config: Config) -> str:
    """`<link rel="alternate">` tags: how browsers and feed readers find the feeds from a page."""
    return "".join(
        f'<link rel="alternate" type="{kind}" title="{html.escape(f"{config.title} ({label})")}"'
        f' href="{html.escape(config.site_url + name)}" />\n'
        for name, kind, label in FEEDS)


def render_web_copy(articles: Sequence[Article], created: datetime, config: Config
                    ) -> tuple[str, bytes]:
    """(path under public/, bytes) of the digest's web copy."""
    page = render_web_html(articles, created, config)
    # After rendering, so a site's own template gets the discovery tags too.
    page = page.replace("</head>", discovery_links(config) + "</head>", 1)
    name = web_copy_name(created, articles[0].slug, config)
    return f"{ARCHIVE_DIR}/{name}", page.encode("utf-8")


def render_archive(listings: Sequence[DigestListing], config: Config) -> bytes:
    """The archive page: every digest that has a web copy under public/, newest first."""
    folder = config.public_dir / ARCHIVE_DIR
    present = set(_names(folder))
    # Under the journal's own heading, a subject's leading "Journal: " says nothing new.
    prefix = f"{config.title}: "
    digests = [
        {"name": name, "subject": d.subject.removeprefix(prefix),
         "date": issue_date(d.created, config),
         "iso_date": f"{d.created.astimezone(config.timezone):%Y-%m-%d}", "entries": d.entries}
        for d in listings
        if (name := web_copy_name(d.created, d.lead_slug, config)) in present
    ]
    context = {
        "lang": config.language,
        "journal": {"title": config.title, "url": config.site_url,
                    "description": config.description},
        "digests": digests,
        "feeds": [{"url": config.site_url + name, "label": label} for name, _, label in FEEDS],
        "discovery": discovery_links(config),
    }
    page = render_template(template_environment(config), ARCHIVE_TEMPLATE, context)
    return page.encode("utf-8")


def _names(folder: Path) -> list[str]:
    try:
        return [path.name for path in folder.iterdir()]
    except FileNotFoundError:
        return []
