"""Feeds that validate everywhere: every feed file read by three independent parsers
(feedparser, atoma's strict parser, lxml against the RSS Board profile and RFC 4287), the same
entries in every format, per-category feeds, and WebSub (a hub on 127.0.0.1 only)."""

from __future__ import annotations

import json
import re
import socket
import threading
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs

import atoma
import feedparser
import lxml.etree
import lxml.html
import pytest
from click.testing import CliRunner

from conftest import NOW, markdown_entry, write_entry
from pipeline.cli.main import cli
from pipeline.core.config import load_config
from pipeline.entries.collect import collect_articles
from pipeline.entries.summarise import summarise
from pipeline.publishing.feeds import render_feeds

ATOM = "http://www.w3.org/2005/Atom"
NS = {"atom": ATOM, "content": "http://purl.org/rss/1.0/modules/content/",
      "dc": "http://purl.org/dc/elements/1.1/"}
RFC822 = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
                    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
                    r"\d{2}:\d{2}:\d{2} [+-]\d{4}$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
ABSOLUTE = re.compile(r"^(https?|mailto):", re.I)


def feeds_for(site: Path) -> dict[str, bytes]:
    config = load_config(site)
    articles, problems = collect_articles(config, NOW)
    assert problems == []
    return render_feeds([summarise(a) for a in articles], config)


def set_config(site: Path, table: str, line: str) -> None:
    toml = site / "newsletter.toml"
    text = toml.read_text(encoding="utf-8")
    if f"[{table}]" in text:
        text = text.replace(f"[{table}]\n", f"[{table}]\n{line}\n")
    else:
        text += f"\n[{table}]\n{line}\n"
    toml.write_text(text, encoding="utf-8")


def xml(data: bytes) -> lxml.etree._Element:
    return lxml.etree.fromstring(data, lxml.etree.XMLParser(resolve_entities=False))


def feedparser_ok(data: bytes) -> feedparser.FeedParserDict:
    parsed = feedparser.parse(data)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return parsed


@pytest.fixture
def feeds(sample_site: Path) -> dict[str, bytes]:
    return feeds_for(sample_site)


def test_every_feed_file_parses_cleanly_in_three_independent_parsers(feeds) -> None:
    assert len([name for name in feeds if name.startswith("categories/")]) >= 5
    for name, data in feeds.items():
        if name.endswith(".json"):
            parsed = atoma.parse_json_feed_bytes(data)
            assert len(parsed.items) == 9
            continue
        feedparser_ok(data)
        xml(data)  # well-formed for a strict XML parser
        if name == "atom.xml":
            assert len(atoma.parse_atom_bytes(data).entries) == 9
        else:
            assert atoma.parse_rss_bytes(data).items, name


def test_rss_atom_and_json_feed_carry_the_same_entries(feeds) -> None:
    rss = atoma.parse_rss_bytes(feeds["feed.xml"])
    atom = atoma.parse_atom_bytes(feeds["atom.xml"])
    jsonfeed = atoma.parse_json_feed_bytes(feeds["feed.json"])
    as_rss = [(i.guid, i.title, i.link, i.pub_date) for i in rss.items]
    as_atom = [(e.id_, e.title.value, e.links[0].href, e.published) for e in atom.entries]
    as_json = [(i.id_, i.title, i.url, i.date_published) for i in jsonfeed.items]
    assert len(as_rss) == 9
    assert as_rss == as_atom == as_json


def test_rss_follows_the_rss_board_profile(feeds) -> None:
    channel = xml(feeds["feed.xml"]).find("channel")
    assert channel is not None
    for required in ("title", "link", "description", "language", "lastBuildDate"):
        assert (channel.findtext(required) or "").strip(), required
    assert RFC822.match(channel.findtext("lastBuildDate") or "")
    self_links = channel.findall("atom:link[@rel='self']", NS)
    assert [(x.get("href"), x.get("type")) for x in self_links] == [
        ("https://journal.example.org/feed.xml", "application/rss+xml")]
    items = channel.findall("item")
    assert len(items) == 9
    for item in items:
        guid = item.find("guid")
        assert guid is not None and guid.get("isPermaLink") == "false"
        assert (guid.text or "").startswith("urn:uuid:")  # so not a permalink, rightly
        assert RFC822.match(item.findtext("pubDate") or ""), item.findtext("pubDate")
        assert parsedate_to_datetime(item.findtext("pubDate") or "").tzinfo is not None
        assert ABSOLUTE.match(item.findtext("link") or "")
        assert item.find("author") is None  # RSS <author> must be an email address
    authors = [item.findtext("dc:creator", namespaces=NS) for item in items]
    assert "Sarah Whitfield, Registered Dietitian" in authors


def test_atom_follows_rfc_4287(feeds) -> None:
    feed = xml(feeds["atom.xml"])
    for required in ("id", "title", "updated"):
        assert (feed.findtext(f"atom:{required}", namespaces=NS) or "").strip(), required
    assert feed.find("atom:author/atom:name", NS) is not None
    assert RFC3339.match(feed.findtext("atom:updated", namespaces=NS) or "")
    links = {(x.get("rel", "alternate"), x.get("href")) for x in feed.findall("atom:link", NS)}
    assert ("self", "https://journal.example.org/atom.xml") in links
    entries = feed.findall("atom:entry", NS)
    assert len(entries) == 9
    for entry in entries:
        for required in ("id", "title", "updated", "published"):
            assert (entry.findtext(f"atom:{required}", namespaces=NS) or "").strip(), required
        assert RFC3339.match(entry.findtext("atom:updated", namespaces=NS) or "")
        alternate = [x for x in entry.findall("atom:link", NS)
                     if x.get("rel", "alternate") == "alternate"]
        assert len(alternate) == 1 and ABSOLUTE.match(alternate[0].get("href", ""))
        content = entry.find("atom:content", NS)
        assert content is not None and content.get("type") == "html"
    ids = [e.findtext("atom:id", namespaces=NS) for e in entries]
    assert len(set(ids)) == len(ids)


def _urls_in(data: bytes, name: str) -> list[str]:
    """Every URL a reader would follow: link elements and attributes, and those inside the
    entries' HTML content."""
    urls: list[str] = []
    if name.endswith(".json"):
        feed = json.loads(data)
        urls += [feed["home_page_url"], feed["feed_url"]]
        fragments = [item["content_html"] for item in feed["items"]]
        urls += [item["url"] for item in feed["items"]]
    else:
        root = xml(data)
        urls += [el.get("href") for el in root.iter("{*}link") if el.get("href")]
        urls += [el.text for el in root.iter("link") if el.text]
        fragments = [el.text or "" for el in root.iter(f"{{{NS['content']}}}encoded",
                                                       f"{{{ATOM}}}content")]
    for fragment in fragments:
        tree = lxml.html.fragment_fromstring(fragment, create_parent="div")
        urls += [el.get(attr) for el in tree.iter() for attr in ("href", "src")
                 if el.get(attr) is not None]
    return urls


def test_no_relative_url_reaches_a_feed(site: Path) -> None:
    write_entry(site, "links.md", markdown_entry(
        title="Links", category="Heart Health",
        body="See [the guide](../guides/salt/), [our page](/about) and "
             "![a chart](images/chart.png).\n\n<a href='#notes'>notes</a>"))
    feeds = feeds_for(site)
    for name, data in feeds.items():
        urls = _urls_in(data, name)
        assert urls, name
        relative = [u for u in urls if not ABSOLUTE.match(u)]
        assert relative == [], name
    content = json.loads(feeds["feed.json"])["items"][0]["content_html"]
    assert "https://journal.example.org/journal/guides/salt/" in content
    assert "https://journal.example.org/about" in content


def test_html_that_looks_like_cdata_cannot_break_out_of_the_content(site: Path) -> None:
    body = ("The marker ]]> ends a CDATA section, and <![CDATA[ starts one; "
            "`</content:encoded></item>` and `</content>` are only text here.")
    write_entry(site, "cdata.md", markdown_entry(title="CDATA ]]> & friends", body=body))
    feeds = feeds_for(site)
    rss = feedparser_ok(feeds["feed.xml"]).entries[0]
    atom = feedparser_ok(feeds["atom.xml"]).entries[0]
    assert rss.title == atom.title == "CDATA ]]> & friends"
    for entry in (rss, atom):
        text = lxml.html.fragment_fromstring(entry.content[0].value,
                                             create_parent="div").text_content()
        assert "]]> ends a CDATA section" in text and "<![CDATA[ starts one" in text
        assert "</content:encoded></item> and </content> are only text" in text
    encoded = xml(feeds["feed.xml"]).findtext("channel/item/content:encoded", namespaces=NS)
    assert encoded and "<code>&lt;/content:encoded&gt;" in encoded  # the HTML, intact
    assert len(atoma.parse_rss_bytes(feeds["feed.xml"]).items) == 1


def test_ids_are_unique_and_shared_by_the_formats(feeds) -> None:
    rss_ids = [i.guid for i in atoma.parse_rss_bytes(feeds["feed.xml"]).items]
    assert len(set(rss_ids)) == len(rss_ids) == 9
    category_ids = {xml(data).findtext("channel/item/guid") for name, data in feeds.items()
                    if name.startswith("categories/")}
    assert category_ids <= set(rss_ids)  # an entry keeps its id in a category feed


def test_each_category_feed_has_that_categorys_entries_and_its_own_self_link(
        sample_site: Path, feeds) -> None:
    config = load_config(sample_site)
    articles, _ = collect_articles(config, NOW)
    by_category: dict[str, list[str]] = {}
    for article in articles:
        by_category.setdefault(article.category, []).append(article.url)
    category_files = sorted(name for name in feeds if name.startswith("categories/"))
    assert len(category_files) == len(by_category)
    assert "categories/childrens-health/feed.xml" in category_files
    assert "categories/heart-health/feed.xml" in category_files
    seen = set()
    for name in category_files:
        parsed = feedparser_ok(feeds[name])
        category = parsed.feed.title.split(": ", 1)[1]
        assert [e.link for e in parsed.entries] == by_category[category]
        assert all(category in [t.term for t in e.tags] for e in parsed.entries)
        self_link = xml(feeds[name]).find("channel/atom:link[@rel='self']", NS)
        assert self_link is not None
        assert self_link.get("href") == f"https://journal.example.org/{name}"
        seen.add(parsed.feed.title)
    assert len(seen) == len(category_files)


def test_categories_differing_only_in_case_share_one_feed(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry(title="A", date="2026-03-01", category="Heart health"))
    write_entry(site, "b.md", markdown_entry(title="B", date="2026-03-02", category="Heart Health"))
    feeds = feeds_for(site)
    assert [n for n in feeds if n.startswith("categories/")] == [
        "categories/heart-health/feed.xml"]
    assert len(feedparser_ok(feeds["categories/heart-health/feed.xml"]).entries) == 2


# --- WebSub ------------------------------------------------------------------------------------

HUB = "https://hub.example.net/"


def test_a_configured_hub_is_advertised_in_every_feed(sample_site: Path) -> None:
    set_config(sample_site, "feed", f'websub_hub = "{HUB}"')
    feeds = feeds_for(sample_site)
    for name, data in feeds.items():
        if name.endswith(".json"):
            assert json.loads(data)["hubs"] == [{"type": "WebSub", "url": HUB}]
            continue
        root = xml(data)
        hubs = [x.get("href") for x in root.iter(f"{{{ATOM}}}link") if x.get("rel") == "hub"]
        assert hubs == [HUB], name
        feedparser_ok(data)
    channel = xml(feeds["feed.xml"]).find("channel")
    assert channel is not None and channel.findtext("link") == "https://journal.example.org/"
    assert len(atoma.parse_atom_bytes(feeds["atom.xml"]).entries) == 9


def test_without_a_hub_no_feed_mentions_one(feeds) -> None:
    for name, data in feeds.items():
        assert b"hub" not in data.replace(b"GitHub", b""), name


def test_a_hub_that_is_not_a_url_is_a_config_error(site: Path) -> None:
    set_config(site, "feed", 'websub_hub = "hub.example.net"')
    result = CliRunner().invoke(cli, ["run", "--site", str(site)])
    assert result.exit_code == 78
    assert "feed.websub_hub" in result.stderr and "absolute URL" in result.stderr


class _Hub(BaseHTTPRequestHandler):
    pings: ClassVar[list[dict[str, list[str]]]] = []
    answer: ClassVar[int] = 204

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        assert self.headers.get("Content-Type") == "application/x-www-form-urlencoded"
        type(self).pings.append(parse_qs(self.rfile.read(length).decode()))
        self.send_response(type(self).answer)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    _Hub.pings, _Hub.answer = [], 204
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", _Hub.pings
    server.shutdown()
    server.server_close()


def run_site(site: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["run", "--site", str(site)], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_run_pings_the_hub_with_each_changed_feed_and_not_when_nothing_changed(
        site: Path, hub) -> None:
    url, pings = hub
    set_config(site, "feed", f'websub_hub = "{url}"')
    write_entry(site, "a.md", markdown_entry(title="First", category="Heart Health"))
    code, _, err = run_site(site)
    assert code == 0, err
    assert len(pings) == 1
    assert pings[0]["hub.mode"] == ["publish"]
    assert sorted(pings[0]["hub.url"]) == sorted([
        "https://journal.example.org/feed.xml", "https://journal.example.org/atom.xml",
        "https://journal.example.org/feed.json",
        "https://journal.example.org/categories/heart-health/feed.xml"])
    assert run_site(site)[0] == 0
    assert len(pings) == 1  # nothing new: the hub is left alone
    write_entry(site, "b.md", markdown_entry(title="Second", date="2026-04-01"))
    assert run_site(site)[0] == 0
    assert len(pings) == 2 and "https://journal.example.org/feed.xml" in pings[1]["hub.url"]


def test_feeds_the_hub_could_not_take_are_pinged_again_by_the_next_run(site: Path,
                                                                     hub) -> None:
    url, pings = hub
    set_config(site, "feed", f'websub_hub = "{url}"')
    write_entry(site, "a.md", markdown_entry(title="First"))
    _Hub.answer = 503  # the hub is down for maintenance
    code, _, err = run_site(site)
    assert code == 0 and "the hub" in err and "503" in err
    assert len(pings) == 1
    _Hub.answer = 204
    code, _, err = run_site(site)  # no entry changed, but the hub is still owed the news
    assert code == 0 and "hub" not in err
    assert len(pings) == 2 and sorted(pings[1]["hub.url"]) == sorted(pings[0]["hub.url"])
    assert run_site(site)[0] == 0
    assert len(pings) == 2  # told once: the debt is paid


def test_an_unreachable_hub_is_a_warning_and_the_run_still_publishes(site: Path) -> None:
    with socket.socket() as probe:  # a port on this machine with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    set_config(site, "feed", f'websub_hub = "http://127.0.0.1:{port}/"')
    write_entry(site, "a.md", markdown_entry(title="First"))
    code, out, err = run_site(site)
    assert code == 0
    assert "warning: feed.websub_hub: could not reach the hub" in err
    assert "next poll" in err
    assert "2 messages" in out and (site / "public" / "feed.xml").exists()


def test_a_dry_run_never_pings_the_hub(site: Path, hub) -> None:
    url, pings = hub
    set_config(site, "feed", f'websub_hub = "{url}"')
    write_entry(site, "a.md", markdown_entry(title="First"))
    result = CliRunner().invoke(cli, ["run", "--site", str(site), "--dry-run"])
    assert result.exit_code == 0 and "feed.xml" in result.stdout
    assert pings == []
