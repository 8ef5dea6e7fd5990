"""Untrusted entry text never becomes markup: hostile entries from tests/hostile/ through a
whole `newsletter run`, read back as a mail client and a feed reader would."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import (
    feed_html,
    html_of,
    messages,
    parsed_feeds,
    text_of,
    unsafe_markup,
)
from pipeline.cli.main import cli
from pipeline.core.text import ILLEGAL as _ILLEGAL

CORPUS = Path(__file__).resolve().parents[1] / "hostile"
EMAIL_DOCUMENT = frozenset({"style", "meta"})  # what the digest template itself uses


def run_with(site: Path, *names: str) -> str:
    for name in names:
        shutil.copy(CORPUS / name, site / "articles" / name)
    result = CliRunner().invoke(cli, ["run", "--site", str(site)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def digest_card(message_html: str) -> str:
    """The HTML before the footer: where entry text goes, and no subscriber's own values."""
    return message_html.split("This message was sent to")[0]


# --- markup -----------------------------------------------------------------------------------


def test_scripts_handlers_frames_forms_and_script_urls_reach_no_email_or_feed(site: Path) -> None:
    run_with(site, "script-and-handlers.md")
    for message in messages(site):
        html = html_of(message)
        assert "<script" not in html.lower()
        assert unsafe_markup(html, allowed=EMAIL_DOCUMENT) == []
        assert "body { display: none }" not in html  # the entry's <style>, not the template's
    values = feed_html(site)
    assert values and all(unsafe_markup(v) == [] for v in values)
    for name in ("feed.xml", "atom.xml", "feed.json"):
        raw = (site / "public" / name).read_text(encoding="utf-8").lower()
        assert "<script" not in raw and "<iframe" not in raw and "<form" not in raw
        assert "display: none" not in raw and "document.write" not in raw
    content = next(v for v in values if "Click the paragraph." in v)  # text kept, tags gone
    assert "a script link" in content and "an encoded one" in content


def test_titles_takeaways_and_categories_show_as_typed_never_as_markup(site: Path) -> None:
    run_with(site, "script-and-handlers.md")
    message = messages(site)[0]
    html = digest_card(html_of(message))
    # Escaped once: a reader sees the characters, a client runs nothing, no `&amp;lt;`.
    assert "&lt;script&gt;alert('title')&lt;/script&gt; Blood &lt;b&gt;pressure&lt;/b&gt;" \
        " &amp; you" in html.replace("&#39;", "'").replace("&#x27;", "'")
    assert "&lt;em&gt;matters&lt;/em&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;Heart" in html
    assert "&amp;lt;" not in html
    text = text_of(message)
    assert "<script>alert('title')</script> Blood <b>pressure</b> & you" in text
    assert str(message["Subject"]).endswith("<script>alert('title')</script> Blood "
                                            "<b>pressure</b> & you")
    rss = parsed_feeds(site)["feed.xml"].entries[0]
    assert rss.title == "<script>alert('title')</script> Blood <b>pressure</b> & you" or \
        "alert('title')" not in rss.title  # feedparser may strip markup from titles itself
    # RSS <description> is HTML to a feed reader, so the takeaways in it are escaped.
    (description,) = [v for v in feed_html(site) if "alert('takeaway')" in v and "<p>" not in v]
    assert description.startswith("&lt;script&gt;alert('takeaway')&lt;/script&gt; Sleep")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value or "" for name, value in attrs if name in {"href", "src"}]


def links_in(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.urls


def test_relative_links_and_images_become_absolute_in_every_feed(site: Path) -> None:
    run_with(site, "relative-links.md")
    base = "https://journal.example.org/journal/relative-links/"
    expected = {
        "https://journal.example.org/guides/cholesterol/", f"{base}notes/",
        "https://journal.example.org/journal/elsewhere/", f"{base}?page=2", f"{base}chart.png",
        "https://journal.example.org/images/heart.png", f"{base}figures/one.png",
        f"{base}#section", "https://other.example.net/x", "mailto:desk@example.org",
    }
    # RSS content:encoded, Atom content, JSON content_html
    contents = [c for c in feed_html(site) if "chart.png" in c]
    assert len(contents) == 3
    for content in contents:
        assert set(links_in(content)) == expected
    for url in links_in(html_of(messages(site)[0])):
        assert urlsplit(url).scheme in {"https", "mailto"}, url


# --- characters XML cannot carry ----------------------------------------------------------------


def test_control_characters_are_removed_and_every_feed_parses(site: Path) -> None:
    run_with(site, "control-characters.md")
    feeds = parsed_feeds(site)  # well-formed XML, and feedparser without bozo
    assert feeds["feed.xml"].entries[0].title == "Bell and escape in a title"
    for path in (site / "public").rglob("*"):  # feeds, category feeds, web copies
        if path.is_file():
            assert not _ILLEGAL.search(path.read_text(encoding="utf-8")), path.name
    for message in messages(site):
        assert not _ILLEGAL.search(html_of(message) + text_of(message))
    content = " ".join(feed_html(site))
    assert "Form feed and unit separator in the body" in content


REFUSED_LINKS = """---
title: Refused links
date: 2026-03-14
---

Read [A link](javascript:alert(2)), [a data one](data:text/html,hi),
[a VBScript one](vbscript:msgbox(1)) and [a referenced one][r], or see ![a chart](javascript:x).

## Key takeaways

- Read [the leaflet](javascript:alert(5)) first.

[r]: javascript:alert(3)
"""


def test_a_refused_link_is_its_text_alone_in_feeds_digest_and_web_copy(site: Path) -> None:
    (site / "articles" / "links.md").write_text(REFUSED_LINKS, encoding="utf-8")
    run_with(site)
    (web_copy,) = (site / "public" / "digests").glob("2*.html")
    (message,) = messages(site)[:1]
    places = {"web copy": web_copy.read_text(encoding="utf-8"), "html": html_of(message),
              "text": text_of(message), **{f"feed {i}": v for i, v in enumerate(feed_html(site))}}
    places.update({name: (site / "public" / name).read_text(encoding="utf-8")
                   for name in ("feed.xml", "atom.xml", "feed.json")})
    for where, value in places.items():
        for source in ("](javascript", "](data:", "](vbscript", "[r]", "![a chart]", "[A link]"):
            assert source not in value, (where, source)
        assert "javascript:" not in value.lower(), where
    bodies = [v for v in feed_html(site) if "a VBScript one" in v]
    assert bodies and all(
        "Read A link, a data one,\na VBScript one and a referenced one, or see a chart." in v
        for v in bodies)
    assert "Read the leaflet first." in places["text"] and "Read the leaflet first." in places[
        "html"]


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=st.sampled_from(
    [" ", "a", "é", "\t", "\n", "\r", "\x00", "\x0b", "\x1c", "\x1f", "\x7f", "\x85",
     "\xa0", "\u1680", "\u2000", "\u2028", "\u202f", "\u3000", "\ufeff", "\ufffe", "\ud800",
     "😀", "-"]), max_size=12))
def test_one_line_collapses_every_kind_of_whitespace_and_strips_the_illegal(text: str) -> None:
    """One line as the long way makes it, whether or not the text takes the short way."""
    from pipeline.core.text import strip_illegal
    from pipeline.entries.sanitise import one_line

    assert one_line(text) == " ".join(strip_illegal(text).split())
