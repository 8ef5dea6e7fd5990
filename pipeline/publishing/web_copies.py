"""The digests on the web, under public/digests/: each digest's web copy (the target of its
"View in browser" link), its name and URL, and the archive page listing them. Bytes out;
run.py writes them.

A web copy is public: it is rendered without any subscriber (see digest.render_web_html), so
no address or unsubscribe token can end up in it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from pipeline.core.config import Config
from pipeline.core.models import DigestListing
from pipeline.core.text import slugify
from pipeline.publishing.feed_types import FEEDS
from pipeline.publishing.public_paths import ARCHIVE_DIR
from pipeline.publishing.templates import issue_date, render_template, template_environment

ARCHIVE_TEMPLATE = "archive.html.j2"


def web_copy_name(created: datetime, lead_slug: str, config: Config) -> str:
    """`2026-11-25-sleep-and-bp.html`: known before the ledger numbers the digest, unique
    because an entry (its lead) is in only one digest."""
    return f"{created.astimezone(config.timezone):%Y-%m-%d}-{slugify(lead_slug)}.html"


def web_copy_url(created: datetime, lead_slug: str, config: Config) -> str:
    return f"{config.site_url}{ARCHIVE_DIR}/{web_copy_name(created, lead_slug, config)}"


def discovery_links(config: Config) -> str:
    """`<link rel="alternate">` tags: how browsers and feed readers find the feeds from a page."""
    return "".join(
        f'<link rel="alternate" type="{feed.media_type}" '
        f'title="{html.escape(f"{config.title} ({feed.label})")}"'
        f' href="{html.escape(config.site_url + feed.name)}" />\n'
        for feed in FEEDS)


def web_copy(page: str, created: datetime, lead_slug: str, config: Config
             ) -> tuple[str, bytes]:
    """(path under public/, bytes) of a digest's web copy, from its rendered page."""
    # After rendering, so a site's own template gets the discovery tags too.
    page = page.replace("</head>", discovery_links(config) + "</head>", 1)
    return f"{ARCHIVE_DIR}/{web_copy_name(created, lead_slug, config)}", page.encode("utf-8")


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
        "feeds": [{"url": config.site_url + feed.name, "label": feed.label} for feed in FEEDS],
        "discovery": discovery_links(config),
    }
    page = render_template(template_environment(config), ARCHIVE_TEMPLATE, context)
    return page.encode("utf-8")


def _names(folder: Path) -> list[str]:
    try:
        return [path.name for path in folder.iterdir()]
    except FileNotFoundError:
        return []
