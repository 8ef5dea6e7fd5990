"""The benchmark's entries as a Pelican site that writes feeds only: the peer bench/cold.py
compares a cold build with (`pip install -e '.[bench]'` installs Pelican and Markdown).

Same entries (bench/generate.py), the same fields in Pelican's own metadata lines (Pelican
reads no YAML front matter without a plugin), and the feeds our run writes: RSS and Atom of
the newest 50 with full content, and one RSS feed per category. Every other page Pelican
would write is switched off, and its content cache too: a cold build.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

from generate import entry

SETTINGS = """\
SITENAME = "Benchmark Clinic Journal"
SITEURL = "https://journal.example.org"
FEED_DOMAIN = SITEURL
TIMEZONE = "Europe/London"
DEFAULT_LANG = "en"
PATH = "content"
FEED_ALL_RSS = "feed.xml"
FEED_ALL_ATOM = "atom.xml"
CATEGORY_FEED_RSS = "categories/{slug}/feed.xml"
CATEGORY_FEED_ATOM = None
TRANSLATION_FEED_ATOM = None
AUTHOR_FEED_ATOM = None
AUTHOR_FEED_RSS = None
FEED_MAX_ITEMS = 50
RSS_FEED_SUMMARY_ONLY = False
DIRECT_TEMPLATES = []
PAGINATED_TEMPLATES = {}
ARTICLE_SAVE_AS = ARTICLE_LANG_SAVE_AS = DRAFT_SAVE_AS = DRAFT_LANG_SAVE_AS = ""
PAGE_SAVE_AS = PAGE_LANG_SAVE_AS = DRAFT_PAGE_SAVE_AS = DRAFT_PAGE_LANG_SAVE_AS = ""
CATEGORY_SAVE_AS = TAG_SAVE_AS = AUTHOR_SAVE_AS = ""
ARCHIVES_SAVE_AS = AUTHORS_SAVE_AS = CATEGORIES_SAVE_AS = TAGS_SAVE_AS = INDEX_SAVE_AS = ""
STATIC_PATHS = []
THEME_STATIC_PATHS = []
LOAD_CONTENT_CACHE = False
CACHE_CONTENT = False
"""


def pelican_entry(text: str) -> str:
    """Our entry (YAML front matter) as Pelican's Markdown metadata lines, same body."""
    _, front, body = text.split("---\n", 2)
    fields = {}
    for line in front.splitlines():
        if ": " in line and not line.startswith(" "):
            key, value = line.split(": ", 1)
            fields[key] = value.strip().strip('"')
    tags = fields.get("tags", "").strip("[]")
    return (f"Title: {fields['title']}\nDate: {fields['date']}\n"
            f"Category: {fields['category']}\nTags: {tags}\nAuthor: {fields['author']}\n"
            f"Summary: {fields['summary']}\n\n{body.lstrip()}")


def make_pelican_site(root: Path, entries: int) -> Path:
    """The same entries make_site writes (same seed, same order), for Pelican."""
    rng = random.Random(20261125)
    content = root / "content"
    content.mkdir(parents=True, exist_ok=True)
    (root / "pelicanconf.py").write_text(SETTINGS)
    first = date(2026, 11, 1)
    for n in range(entries):
        day = first - timedelta(days=n)
        text = pelican_entry(entry(n, rng, day))
        (content / f"{day.isoformat()}-entry-{n:05d}.md").write_text(text)
    return root
