"""Runs that skip unchanged work must still notice every change that matters."""

from __future__ import annotations

import marshal
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest

from conftest import markdown_entry, write_entry
from pipeline.entries import collect
from pipeline.entries.readers import READERS, markdown
from pipeline.run import run

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def feed_titles(site: Path) -> list[str]:
    return [e.title for e in feedparser.parse(site / "public" / "feed.xml").entries]


def refuse_to_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("an unchanged entry was read again")

    for suffix in list(READERS):
        monkeypatch.setitem(READERS, suffix, refuse)


def test_only_the_entries_a_feed_shows_are_read_again(site: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text() + "\n[feed]\nmax_items = 1\n")
    for day in (1, 2, 3):
        entry = markdown_entry(title=f"Entry {day}", date=f"2026-05-0{day}")
        write_entry(site, f"e{day}.md", entry)
    run(site, NOW)
    parsed: list[str] = []
    bodies: list[str] = []
    reader, load_body = markdown.read_markdown, collect.load_body

    def recording_reader(path: Path, text: str, config: object) -> object:
        parsed.append(str(path))
        return reader(path, text, config)

    def recording_body(path: Path, shown: Path, url: str, config: object) -> str:
        bodies.append(str(shown))
        return load_body(path, shown, url, config)

    monkeypatch.setattr(markdown, "read_markdown", recording_reader)
    monkeypatch.setattr(collect, "load_body", recording_body)
    (site / "public" / "feed.xml").unlink()  # the feeds must be made again
    run(site, NOW + timedelta(minutes=5))
    assert parsed == []  # every entry's fields come from the cache
    # Nor any body: the one the feed shows was kept from the last run (shown_bodies.py).
    assert bodies == []
    assert feed_titles(site) == ["Entry 3"]
    assert "An opening paragraph. It has two sentences." in (site / "public" / "feed.xml"
                                                            ).read_text()


def test_a_body_kept_from_an_earlier_run_is_not_trusted_once_its_file_changed(
        site: Path) -> None:
    write_entry(site, "e1.md", markdown_entry(title="Entry 1", body="The first wording."))
    run(site, NOW)
    write_entry(site, "e1.md", markdown_entry(title="Entry 1", body="The second wording."))
    run(site, NOW + timedelta(minutes=5))
    feed = (site / "public" / "feed.xml").read_text()
    assert "The second wording." in feed and "The first wording." not in feed


def test_a_touched_but_unchanged_entry_is_not_read_again(site: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_entry(site, "a.md", markdown_entry(title="Touched"))
    run(site, NOW)
    refuse_to_read(monkeypatch)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert run(site, NOW).problems == []


def test_a_quiet_site_still_publishes_an_entry_when_its_time_comes(site: Path) -> None:
    write_entry(site, "now.md", markdown_entry(title="Today", date="2026-11-25"))
    write_entry(site, "later.md", markdown_entry(title="Friday", date="2026-11-27T09:00:00+00:00"))
    assert run(site, NOW).new == 1
    assert run(site, NOW + timedelta(hours=1)).digest_id is None  # quiet: nothing due yet
    report = run(site, datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
    assert report.new == 1 and feed_titles(site) == ["Friday", "Today"]


def test_an_edited_entry_changes_the_feed(site: Path) -> None:
    path = write_entry(site, "a.md", markdown_entry(title="First title"))
    run(site, NOW)
    path.write_text(markdown_entry(title="Second title"))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    report = run(site, NOW)
    assert "feed.xml" in report.feeds_changed and feed_titles(site) == ["Second title"]


def test_a_deleted_feed_is_written_again(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry())
    run(site, NOW)
    (site / "public" / "atom.xml").unlink()
    run(site, NOW)
    assert (site / "public" / "atom.xml").exists()


def test_a_config_change_reaches_the_feeds(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry())
    run(site, NOW)
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text().replace("Test Clinic Journal", "Renamed Journal", 1))
    run(site, NOW)
    assert feedparser.parse(site / "public" / "feed.xml").feed.title == "Renamed Journal"


def test_a_broken_entry_is_reported_on_every_run(site: Path) -> None:
    write_entry(site, "good.md", markdown_entry())
    write_entry(site, "bad.md", "---\ntitle: [unclosed\n---\n")
    for minutes in (0, 5, 10):
        report = run(site, NOW + timedelta(minutes=minutes))
        assert [str(p.path) for p in report.problems] == ["articles/bad.md"]


def test_a_new_entry_after_quiet_runs_goes_out(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry(title="Old"))
    run(site, NOW)
    run(site, NOW)
    write_entry(site, "b.md", markdown_entry(title="New", date="2026-11-20"))
    report = run(site, NOW)
    assert report.new == 1 and report.written == 2


def test_a_body_read_again_from_the_cache_keeps_absolute_links(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry(slug="linked", body="See [the guide](../guide/)."))
    run(site, NOW)
    first = (site / "public" / "feed.xml").read_bytes()
    (site / "public" / "feed.xml").unlink()  # made again from cached fields and a fresh body
    run(site, NOW + timedelta(minutes=5))
    assert (site / "public" / "feed.xml").read_bytes() == first
    assert b"https://journal.example.org/journal/guide/" in first


def test_a_run_with_nothing_to_do_imports_no_heavy_library(site: Path) -> None:
    import subprocess
    import sys

    write_entry(site, "a.md", markdown_entry())
    command = [sys.executable, "-X", "importtime", "-m", "pipeline", "run", "--site", str(site),
               "--quiet"]
    env = {**os.environ, "NEWSLETTER_SECRET": "quiet-run-secret-0123456789-abcdefghij"}
    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    quiet = subprocess.run(command, env=env, capture_output=True, text=True)
    assert quiet.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in quiet.stderr.splitlines()
                if line.startswith("import time:")}
    heavy = {"yaml", "frontmatter", "markdown_it", "jinja2", "mjml", "premailer", "feedgen",
             "nh3", "email_validator", "email.message", "lxml", "babel"}
    assert not heavy & imported, heavy & imported


# Rows of the layouts before this one, each with the title the file had before.
OLD_ROWS = {
    # 1: a mapping in JSON text
    "json": ('{"v":1,"problems":[],"article":{"slug":"a","title":"Old title",'
             '"published":"2026-11-01T00:00:00+00:00","updated":null,"category":"",'
             '"summary":"","author":"","tags":[],"takeaways":[],"sources":[],'
             '"disclaimer":"","read_minutes":1,"url":"https://journal.example.org/a/"}}'),
    # 2: one flat marshal tuple
    "flat marshal": marshal.dumps((
        2, (), "a", "Old title", "2026-11-01T00:00:00+00:00", None, "", "", "", (), (), (),
        "", 1, "https://journal.example.org/a/"), 4),
    # 3: what chooses an entry apart, the rest one marshal blob, the reading time counted
    "lazy marshal": marshal.dumps((
        3, (), "a", "", 1793491200000000, "2026-11-01T00:00:00+00:00", marshal.dumps((
            "Old title", None, "", "", (), (), (), "", 1, "https://journal.example.org/a/"),
            2)), 4),
}


@pytest.mark.parametrize("layout", sorted(OLD_ROWS))
def test_a_cache_row_made_by_older_code_is_read_again_not_trusted(
        site: Path, monkeypatch: pytest.MonkeyPatch, layout: str) -> None:
    from pipeline.core.config import load_config
    from pipeline.core.models import CachedEntry
    from pipeline.state.ledger import open_ledger

    path = write_entry(site, "a.md", markdown_entry(title="Now titled"))
    run(site, NOW)
    config = load_config(site)
    with open_ledger(config.state_dir) as ledger:
        row = ledger.cached_entries()["articles/a.md"]
        old = OLD_ROWS[layout]
        ledger.store_entries({"articles/a.md": CachedEntry(row.size, row.mtime_ns, "x", old)})
    (site / "public" / "feed.xml").unlink()
    parsed: list[str] = []
    reader = markdown.read_markdown

    def recording_reader(shown: Path, text: str, config: object) -> object:
        parsed.append(str(shown))
        return reader(shown, text, config)

    monkeypatch.setattr(markdown, "read_markdown", recording_reader)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    run(site, NOW + timedelta(minutes=5))
    assert parsed == ["articles/a.md"] and feed_titles(site) == ["Now titled"]


def test_a_recalled_entry_whose_other_fields_cannot_be_decoded_is_read_from_its_file(
        site: Path) -> None:
    """A row's slug, category and date are decoded on every run, its other fields only when
    the entry is shown: if those turn out unreadable then, the file is read instead."""
    from pipeline.core.config import load_config
    from pipeline.core.models import CachedEntry
    from pipeline.state.ledger import open_ledger

    write_entry(site, "a.md", markdown_entry(title="From the file", category="Heart Health"))
    run(site, NOW)
    config = load_config(site)
    with open_ledger(config.state_dir) as ledger:
        row = ledger.cached_entries()["articles/a.md"]
        fields = marshal.loads(row.payload)
        damaged = marshal.dumps((*fields[:-1], b"\xffnot a marshal blob"), 4)
        ledger.store_entries({"articles/a.md": row._replace(payload=damaged)})
        assert isinstance(ledger.cached_entries()["articles/a.md"], CachedEntry)
    (site / "public" / "feed.xml").unlink()
    report = run(site, NOW + timedelta(minutes=5))
    assert report.problems == [] and feed_titles(site) == ["From the file"]
