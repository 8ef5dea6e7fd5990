"""A run writes only the feeds whose entries changed, and what it leaves alone is what a full
render would write."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import NOW, articles_of, markdown_entry, write_entry
from pipeline.publishing import feeds
from pipeline.publishing.feeds import render_feeds
from pipeline.run import run

SITE_FEEDS = ["atom.xml", "feed.json", "feed.xml"]
SLEEP, HEART = "categories/sleep/feed.xml", "categories/heart/feed.xml"


def rendered_paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The feeds feedgen is asked to build from now on, by path."""
    paths: list[str] = []
    real = feeds._generator

    def recording(items: object, config: object, path: str, title: str = "") -> object:
        paths.append(path)
        return real(items, config, path, title)  # type: ignore[arg-type]

    monkeypatch.setattr(feeds, "_generator", recording)
    return paths


def two_categories(site: Path) -> None:
    for day, category in ((1, "Sleep"), (2, "Heart"), (3, "Sleep"), (4, "Heart")):
        write_entry(site, f"e{day}.md", markdown_entry(title=f"Entry {day}",
                                                       date=f"2026-05-0{day}",
                                                       category=f'"{category}"'))
    run(site, NOW)


def on_disk(site: Path) -> dict[str, bytes]:
    public = site / "public"
    return {str(p.relative_to(public)): p.read_bytes() for p in public.rglob("*.*")
            if p.suffix in (".xml", ".json")}


def test_a_new_entry_rewrites_the_site_feeds_and_its_category_feed_only(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    two_categories(site)
    heart = site / "public" / HEART
    before = heart.stat().st_mtime_ns
    rendered = rendered_paths(monkeypatch)
    write_entry(site, "e5.md", markdown_entry(title="Entry 5", date="2026-05-05",
                                              category='"Sleep"'))
    report = run(site, NOW + timedelta(minutes=5))
    assert sorted(report.feeds_changed) == sorted([*SITE_FEEDS, SLEEP])
    assert HEART not in rendered and SLEEP in rendered
    assert heart.stat().st_mtime_ns == before
    # What was left alone and what was written are what rendering everything gives.
    config, articles = articles_of(site)
    assert on_disk(site) == render_feeds(articles, config)


def test_a_missing_category_feed_is_written_again_by_the_next_run_that_works(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    two_categories(site)
    (site / "public" / HEART).unlink()
    rendered = rendered_paths(monkeypatch)
    csv = site / "subscribers.csv"  # a change that makes the next run look at the feeds
    os.utime(csv, ns=(csv.stat().st_atime_ns, csv.stat().st_mtime_ns + 10**9))
    report = run(site, NOW + timedelta(minutes=5))
    assert report.feeds_changed == [HEART] and rendered == [HEART]
    config, articles = articles_of(site)
    assert on_disk(site) == render_feeds(articles, config)


def test_feeds_kept_under_the_older_single_fingerprint_are_all_written_once(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.state.ledger import open_ledger

    two_categories(site)
    with open_ledger(site / ".newsletter") as ledger:
        ledger.set_state("feeds", "0" * 64)  # what an earlier version kept
    rendered = rendered_paths(monkeypatch)
    write_entry(site, "e5.md", markdown_entry(title="Entry 5", date="2026-05-05",
                                              category='"Sleep"'))
    run(site, NOW + timedelta(minutes=5))
    assert sorted(rendered) == sorted(["feed.xml", "atom.xml", SLEEP, HEART])
    rendered.clear()
    write_entry(site, "e6.md", markdown_entry(title="Entry 6", date="2026-05-06",
                                              category='"Sleep"'))
    run(site, NOW + timedelta(minutes=10))
    assert HEART not in rendered


def test_takeaways_are_kept_with_the_bodies_and_drawn_again_only_for_a_changed_entry(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The feeds' summaries of entries shown last time come from the ledger (shown_bodies.py),
    and are what drawing them again would give."""
    from pipeline.entries import collect

    two_categories(site)
    drawn: list[str] = []
    real = collect.takeaways_for
    monkeypatch.setattr(collect, "takeaways_for",
                        lambda article: drawn.append(article.title) or real(article))
    write_entry(site, "e3.md", markdown_entry(title="Entry 3", date="2026-05-03",
                                              category='"Sleep"', body="Now reworded."))
    run(site, NOW + timedelta(minutes=5))
    assert drawn == ["Entry 3"]
    monkeypatch.undo()
    config, articles = articles_of(site, NOW + timedelta(minutes=5))
    full = render_feeds(articles, config)
    for path in SITE_FEEDS:
        assert (site / "public" / path).read_bytes() == full[path]
