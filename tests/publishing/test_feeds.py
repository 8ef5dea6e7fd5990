"""RSS, Atom and JSON Feed from real entries, parsed back with feedparser, ElementTree and json."""

from __future__ import annotations

import calendar
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import feedgen.entry
import feedgen.feed
import feedparser
import lxml.html
import pytest

from conftest import CONFIG, NOW, REPO, articles_of, markdown_entry, write_entry
from pipeline.core.config import Config
from pipeline.core.models import Article
from pipeline.publishing.feed_types import FEEDS
from pipeline.publishing.feeds import render_feeds

ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
RFC822 = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$")


def feeds_of(site: Path, now: datetime = NOW) -> tuple[Config, list[Article], dict[str, bytes]]:
    config, articles = articles_of(site, now)
    return config, articles, render_feeds(articles, config)


def parsed(data: bytes) -> feedparser.FeedParserDict:
    result = feedparser.parse(data)
    assert not result.bozo, result.get("bozo_exception")
    return result


def utc_seconds(struct) -> int:  # feedparser's *_parsed values are UTC struct_times
    return calendar.timegm(struct)


def rss_items(data: bytes) -> list[ET.Element]:
    return ET.fromstring(data).findall("channel/item")


def atom_entries(data: bytes) -> list[ET.Element]:
    return ET.fromstring(data).findall(f"{ATOM}entry")


def modified(article: Article) -> datetime:
    return max(article.published, article.updated or article.published)


def with_site_url(site: Path, url: str, journal_id: str = "test-clinic-journal") -> None:
    text = CONFIG.replace('url = "https://journal.example.org/"', f'url = "{url}"')
    text = text.replace('id = "test-clinic-journal"', f'id = "{journal_id}"')
    (site / "newsletter.toml").write_text(text, encoding="utf-8")


def test_all_three_feeds_are_rendered(sample_site: Path) -> None:
    _, _, feeds = feeds_of(sample_site)
    site_feeds = {name for name in feeds if not name.startswith("categories/")}
    assert site_feeds == {feed.name for feed in FEEDS} == {"feed.xml", "atom.xml", "feed.json"}
    assert all(isinstance(data, bytes) and data for data in feeds.values())


def test_rss_items_match_articles_title_link_id_and_date(sample_site: Path) -> None:
    _, articles, feeds = feeds_of(sample_site)
    feed = parsed(feeds["feed.xml"])
    assert len(feed.entries) == len(articles) == 9
    for item, article in zip(feed.entries, articles, strict=True):
        assert item.title == article.title
        assert item.link == article.url
        assert item.id.startswith("urn:uuid:")
        assert utc_seconds(item.published_parsed) == int(article.published.timestamp())
    assert len({item.id for item in feed.entries}) == len(articles)


def test_atom_entries_match_articles_title_link_id_and_dates(sample_site: Path) -> None:
    _, articles, feeds = feeds_of(sample_site)
    feed = parsed(feeds["atom.xml"])
    assert len(feed.entries) == len(articles)
    rss_ids = [item.id for item in parsed(feeds["feed.xml"]).entries]
    for entry, article, rss_id in zip(feed.entries, articles, rss_ids, strict=True):
        assert entry.title == article.title
        assert entry.link == article.url
        assert entry.id == rss_id  # the same identity in both formats
        assert utc_seconds(entry.published_parsed) == int(article.published.timestamp())
        assert utc_seconds(entry.updated_parsed) == int(modified(article).timestamp())


def test_entries_are_newest_first(sample_site: Path) -> None:
    _, articles, feeds = feeds_of(sample_site)
    expected = [a.url for a in sorted(articles, key=lambda a: a.published, reverse=True)]
    for name in ("feed.xml", "atom.xml"):
        entries = parsed(feeds[name]).entries
        assert [e.link for e in entries] == expected, name
        dates = [utc_seconds(e.published_parsed) for e in entries]
        assert dates == sorted(dates, reverse=True), name
    assert [i["url"] for i in json.loads(feeds["feed.json"])["items"]] == expected


def test_guid_survives_a_change_of_domain_and_scheme(sample_site: Path) -> None:
    _, _, before = feeds_of(sample_site)
    with_site_url(sample_site, "http://news.other-domain.example.net/clinic/")
    _, articles, after = feeds_of(sample_site)
    assert all(a.url.startswith("http://news.other-domain.example.net/clinic/") for a in articles)
    for name in ("feed.xml", "atom.xml"):
        assert [e.id for e in parsed(after[name]).entries] == \
               [e.id for e in parsed(before[name]).entries]
    assert parsed(after["atom.xml"]).feed.id == parsed(before["atom.xml"]).feed.id
    assert [i["id"] for i in json.loads(after["feed.json"])["items"]] == \
           [i["id"] for i in json.loads(before["feed.json"])["items"]]


def test_guid_changes_with_the_journal_id(sample_site: Path) -> None:
    _, _, before = feeds_of(sample_site)
    with_site_url(sample_site, "https://journal.example.org/", journal_id="another-journal")
    _, _, after = feeds_of(sample_site)
    assert not {e.id for e in parsed(before["feed.xml"]).entries} & \
               {e.id for e in parsed(after["feed.xml"]).entries}


def test_rss_guid_is_not_a_permalink(sample_site: Path) -> None:
    _, articles, feeds = feeds_of(sample_site)
    guids = [item.find("guid") for item in rss_items(feeds["feed.xml"])]
    assert len(guids) == len(articles)
    for guid in guids:
        assert guid is not None
        assert guid.get("isPermaLink") == "false"
        assert guid.text and guid.text.startswith("urn:uuid:")
    assert all(not e.guidislink for e in parsed(feeds["feed.xml"]).entries)


def test_rss_pub_date_is_rfc822_with_a_zone(sample_site: Path) -> None:
    _, articles, feeds = feeds_of(sample_site)
    for item, article in zip(rss_items(feeds["feed.xml"]), articles, strict=True):
        text = item.findtext("pubDate")
        assert text and RFC822.match(text), text
        when = parsedate_to_datetime(text)
        assert when.tzinfo is not None
        assert when == article.published


def test_channel_link_is_the_site_and_self_links_point_at_each_feed(sample_site: Path) -> None:
    config, _, feeds = feeds_of(sample_site)
    channel = ET.fromstring(feeds["feed.xml"]).find("channel")
    assert channel is not None
    assert channel.findtext("link") == config.site_url == "https://journal.example.org/"
    rss_self = [link for link in channel.findall(f"{ATOM}link") if link.get("rel") == "self"]
    assert [link.get("href") for link in rss_self] == ["https://journal.example.org/feed.xml"]

    atom = ET.fromstring(feeds["atom.xml"])
    links = {link.get("rel", "alternate"): link.get("href") for link in atom.findall(f"{ATOM}link")}
    assert links == {"self": "https://journal.example.org/atom.xml",
                     "alternate": "https://journal.example.org/"}
    assert parsed(feeds["atom.xml"]).feed.link == config.site_url
    assert json.loads(feeds["feed.json"])["feed_url"] == "https://journal.example.org/feed.json"


def test_feed_dates_are_the_newest_entry_date(sample_site: Path) -> None:
    _, articles, feeds = feeds_of(sample_site)
    newest = max(modified(a) for a in articles)
    channel = ET.fromstring(feeds["feed.xml"]).find("channel")
    assert channel is not None
    assert parsedate_to_datetime(channel.findtext("lastBuildDate") or "") == newest
    updated = ET.fromstring(feeds["atom.xml"]).findtext(f"{ATOM}updated") or ""
    assert datetime.fromisoformat(updated) == newest


def test_an_updated_entry_moves_the_feed_date_to_its_update(site: Path) -> None:
    write_entry(site, "new.md", markdown_entry(title="Newest", date="2026-06-01"))
    write_entry(site, "old.md", markdown_entry(title="Old but revised", date="2026-01-01",
                                               updated="2026-09-30T10:00:00+00:00"))
    _, articles, feeds = feeds_of(site)
    revised = datetime(2026, 9, 30, 10, 0, tzinfo=UTC)
    channel = ET.fromstring(feeds["feed.xml"]).find("channel")
    assert channel is not None
    assert parsedate_to_datetime(channel.findtext("lastBuildDate") or "") == revised
    atom = parsed(feeds["atom.xml"])
    assert utc_seconds(atom.feed.updated_parsed) == int(revised.timestamp())
    old = next(e for e in atom.entries if e.title == "Old but revised")
    assert utc_seconds(old.updated_parsed) == int(revised.timestamp())
    assert [a.title for a in articles] == ["Newest", "Old but revised"]  # still by publication


class _AnyDatetime(type):
    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, datetime)


def _clock_at(moment: datetime) -> type:
    class Clock(datetime, metaclass=_AnyDatetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            return moment.astimezone(tz) if tz else moment.replace(tzinfo=None)
    return Clock


def test_rendering_again_on_another_day_gives_the_same_bytes(
        sample_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, first = feeds_of(sample_site)
    assert feeds_of(sample_site)[2] == first
    # The same entries, collected and rendered weeks later: feedgen's own clock must not leak in.
    later = NOW + timedelta(days=40, hours=7)
    clock = _clock_at(later)
    monkeypatch.setattr(feedgen.feed, "datetime", clock)
    monkeypatch.setattr(feedgen.entry, "datetime", clock)
    _, articles, second = feeds_of(sample_site, now=later)
    assert len(articles) == 9
    assert second == first


def test_max_items_limits_every_feed_to_the_newest(sample_site: Path) -> None:
    text = (sample_site / "newsletter.toml").read_text(encoding="utf-8")
    (sample_site / "newsletter.toml").write_text(text + "\n[feed]\nmax_items = 3\n",
                                                 encoding="utf-8")
    config, articles, feeds = feeds_of(sample_site)
    assert config.feed_max_items == 3 and len(articles) == 9
    newest = [a.url for a in articles[:3]]
    assert [e.link for e in parsed(feeds["feed.xml"]).entries] == newest
    assert [e.link for e in parsed(feeds["atom.xml"]).entries] == newest
    assert [i["url"] for i in json.loads(feeds["feed.json"])["items"]] == newest


def test_categories_and_tags_are_feed_categories(sample_site: Path) -> None:
    _, articles, feeds = feeds_of(sample_site)
    for name in ("feed.xml", "atom.xml"):
        for entry, article in zip(parsed(feeds[name]).entries, articles, strict=True):
            terms = [t.term for t in entry.get("tags", [])]
            assert article.category and article.category in terms, name
            assert set(article.tags) <= set(terms), name
    for item, article in zip(json.loads(feeds["feed.json"])["items"], articles, strict=True):
        assert item["tags"][0] == article.category and set(article.tags) <= set(item["tags"])


def _anchors(fragment: str) -> set[tuple[str, str]]:
    tree = lxml.html.fragment_fromstring(fragment, create_parent="div")
    return {(a.get("href"), a.text_content().strip()) for a in tree.iter("a")}


def test_sources_are_links_in_content_encoded(sample_site: Path) -> None:
    _, articles, feeds = feeds_of(sample_site)
    with_sources = [a for a in articles if any(s.url for s in a.sources)]
    assert len(with_sources) >= 7
    items = {item.findtext("link"): item for item in rss_items(feeds["feed.xml"])}
    atom = {e.link: e for e in parsed(feeds["atom.xml"]).entries}
    for article in with_sources:
        encoded = items[article.url].findtext(f"{CONTENT}encoded") or ""
        links = _anchors(encoded)
        for source in article.sources:
            if source.url:
                assert (source.url, source.title) in links, (article.slug, source)
        assert atom[article.url].content[0].type == "text/html"
        atom_links = _anchors(atom[article.url].content[0].value)
        assert {(s.url, s.title) for s in article.sources if s.url} <= atom_links


def test_atom_content_is_escaped_html_with_the_body(sample_site: Path) -> None:
    _, articles, feeds = feeds_of(sample_site)
    for entry, article in zip(atom_entries(feeds["atom.xml"]), articles, strict=True):
        content = entry.find(f"{ATOM}content")
        assert content is not None and content.get("type") == "html"
        assert (content.text or "").startswith(article.body_html)


def test_rss_description_is_the_takeaways(sample_site: Path) -> None:
    _, articles, feeds = feeds_of(sample_site)
    for item, article in zip(rss_items(feeds["feed.xml"]), articles, strict=True):
        assert article.takeaways
        assert item.findtext("description") == " ".join(article.takeaways)


def test_json_feed_is_version_1_1_with_complete_items(sample_site: Path) -> None:
    config, articles, feeds = feeds_of(sample_site)
    feed = json.loads(feeds["feed.json"].decode("utf-8"))
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["title"] == config.title
    assert feed["home_page_url"] == config.site_url
    rss_ids = [e.id for e in parsed(feeds["feed.xml"]).entries]
    assert len(feed["items"]) == len(articles)
    for item, article, rss_id in zip(feed["items"], articles, rss_ids, strict=True):
        assert {"id", "url", "title", "content_html", "date_published"} <= set(item)
        assert item["id"] == rss_id
        assert item["url"] == article.url
        assert item["title"] == article.title
        assert article.body_html in item["content_html"]
        assert datetime.fromisoformat(item["date_published"]) == article.published
        assert datetime.fromisoformat(item["date_published"]).tzinfo is not None


def test_a_title_with_markup_characters_round_trips_as_text(site: Path) -> None:
    title = "Salt <b>& sugar</b>: \"less\" is 'more' < 5g"
    write_entry(site, "salt.md", markdown_entry(title=title.replace('"', '\\"')))
    _, articles, feeds = feeds_of(site)
    assert articles[0].title == title
    item = rss_items(feeds["feed.xml"])[0]
    assert item.findtext("title") == title
    entry = atom_entries(feeds["atom.xml"])[0]
    assert entry.findtext(f"{ATOM}title") == title
    assert entry.find(f"{ATOM}title").get("type", "text") == "text"  # type: ignore[union-attr]
    assert json.loads(feeds["feed.json"])["items"][0]["title"] == title
    assert b"<b>" not in feeds["feed.xml"] and b"<b>" not in feeds["atom.xml"]
    for name in ("feed.xml", "atom.xml"):
        parsed(feeds[name])  # still well-formed


def test_an_xml_illegal_control_character_does_not_break_the_feeds(site: Path) -> None:
    # \v in a YAML double-quoted string is the control character U+000B; a .txt page carries it raw.
    write_entry(site, "vt.md", markdown_entry(
        title="Sleep\\vand blood pressure", body="A body\x0b with a vertical tab.",
        takeaways='["Sleep\\vmatters."]', category='"Heart\\vHealth"'))
    write_entry(site, "vt-page.txt", "Neurology\n\nMigraine\x0b triggers\n\nA standfirst.\n\n"
                "12 Feb 2026 · 4 min read\n\nA body paragraph.\x0b\n\nNot medical advice.\n")
    _, articles, feeds = feeds_of(site)
    assert len(articles) == 2
    for data in feeds.values():
        assert b"\x0b" not in data
        assert b"\\u000b" not in data
    rss = parsed(feeds["feed.xml"])
    # Dropped or turned into a space: either way the rest of the title survives.
    assert {e.title.replace(" ", "") for e in rss.entries} == {"Sleepandbloodpressure",
                                                               "Migrainetriggers"}
    parsed(feeds["atom.xml"])
    assert len(json.loads(feeds["feed.json"])["items"]) == 2


def test_an_empty_journal_still_gives_valid_stable_feeds(site: Path) -> None:
    _, articles, feeds = feeds_of(site)
    assert articles == []
    assert parsed(feeds["feed.xml"]).entries == []
    assert parsed(feeds["atom.xml"]).entries == []
    assert json.loads(feeds["feed.json"])["items"] == []
    assert feeds_of(site)[2] == feeds


def test_the_feed_file_names_are_spelt_once_in_the_package() -> None:
    package = Path(__file__).resolve().parents[2] / "pipeline"
    for feed in FEEDS:
        places = [p.relative_to(package).as_posix() for p in sorted(package.rglob("*.py"))
                  if feed.name in p.read_text(encoding="utf-8")]
        assert places == ["publishing/feed_types.py"], feed.name


def test_rendering_feeds_leaves_dateutils_parser_unimported_which_still_works_if_used(
        sample_site: Path) -> None:
    """feedgen is given datetimes, never date strings: its parser's import is deferred. In a
    fresh interpreter, since other tests import it."""
    code = f"""
import sys
from datetime import datetime
from pathlib import Path
NOW = datetime.fromisoformat({NOW.isoformat()!r})
from pipeline.core.config import load_config
from pipeline.entries.collect import collect_articles
from pipeline.publishing.feeds import render_feeds
config = load_config(Path({str(sample_site)!r}))
assert render_feeds(collect_articles(config, NOW)[0], config)
print(sorted(m for m in ("dateutil.parser",) if m in sys.modules))
import feedgen.entry
entry = feedgen.entry.FeedEntry()
entry.published("2026-11-02T08:00:00Z")
print(entry.published().isoformat())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "2026-11-02T08:00:00+00:00"]
