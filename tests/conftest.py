"""Shared fixtures: a real temporary site with real files, a real SQLite ledger."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pipeline.collect import collect_articles
from pipeline.config import Config, load_config
from pipeline.models import Article
from pipeline.summarise import summarise

REPO = Path(__file__).resolve().parent.parent
ENTRIES = Path(__file__).resolve().parent / "entries"
SEED = REPO.parent / "shared" / "seed" / "000_49d78995710967fa.txt"
# A fixed "now" for stage tests; end-to-end CLI tests use the real clock.
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

CONFIG = """\
[site]
title = "Test Clinic Journal"
url = "https://journal.example.org/"
id = "test-clinic-journal"
description = "A journal for tests."
timezone = "Europe/London"
author = "Test Clinic"

[digest]
max_articles = 10

[email]
from = "Test Clinic Journal <journal@example.org>"
unsubscribe_mailto = "unsubscribe@example.org"
"""

SUBSCRIBERS = """\
email,name,categories,status
ada@example.org,Ada Lovelace,,active
grace@example.org,Grace Hopper,,active
left@example.org,Left Already,,unsubscribed
"""


def write_entry(site: Path, name: str, text: str) -> Path:
    path = site / "articles" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def markdown_entry(title: str = "A test entry", date: str = "2026-03-14", body: str = "",
                   **fields: str) -> str:
    """A Markdown entry; extra fields are written as given (already YAML)."""
    lines = ["---", f'title: "{title}"', f"date: {date}"]
    lines += [f"{key}: {value}" for key, value in fields.items()]
    lines += ["---", "", body or "An opening paragraph. It has two sentences.", ""]
    return "\n".join(lines)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty site: config and subscribers, no articles yet."""
    root = tmp_path / "site"
    (root / "articles").mkdir(parents=True)
    (root / "newsletter.toml").write_text(CONFIG, encoding="utf-8")
    (root / "subscribers.csv").write_text(SUBSCRIBERS, encoding="utf-8")
    monkeypatch.setenv("NEWSLETTER_SECRET", "test-secret")
    return root


@pytest.fixture
def config(site: Path) -> Config:
    return load_config(site)


@pytest.fixture
def sample_site(site: Path) -> Path:
    """The repository's own sample articles in a temporary site."""
    shutil.copytree(REPO / "articles", site / "articles", dirs_exist_ok=True)
    return site


def articles_of(site: Path, now: datetime = NOW) -> tuple[Config, list[Article]]:
    """The site's config and its published articles, summarised; fails on any problem."""
    config = load_config(site)
    found, problems = collect_articles(config, now)
    assert problems == []
    return config, [summarise(a) for a in found]


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.unsafe: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style", "iframe", "object", "embed", "svg", "math", "form"}:
            self.unsafe.append(tag)
        for name, value in attrs:
            squashed = "".join((value or "").split()).lower()
            if name.startswith("on") or squashed.startswith(("javascript:", "vbscript:", "data:")):
                self.unsafe.append(f"{tag} {name}={value!r}")


def unsafe_markup(fragment: str) -> list[str]:
    """Script elements, event-handler attributes and script URLs that a browser would act on."""
    parser = _Markup()
    parser.feed(fragment)
    parser.close()
    return parser.unsafe
