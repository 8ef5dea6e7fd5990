"""The journal's published-page text format (`.txt`): the real seed page and our own fixtures."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ENTRIES, SEED, unsafe_markup
from pipeline.core.config import Config
from pipeline.core.errors import EntryError
from pipeline.core.models import Article
from pipeline.entries.readers.journal_page import read_journal_page
from pipeline.entries.sanitise import plain_text

needs_seed = pytest.mark.skipif(not SEED.exists(), reason="seed page not present on this machine")


def read(config: Config, source: Path, name: str | None = None) -> Article:
    article, warnings = read_journal_page(Path("articles") / (name or source.name),
                                          source.read_text(encoding="utf-8"), config)
    assert article is not None
    assert warnings == []
    return article


def blocks(text: str) -> list[str]:
    """Blank-line separated blocks, whitespace collapsed: to compare with the page's own text."""
    return [" ".join(b.split()) for b in re.split(r"\n\s*\n", text) if b.strip()]


# --- the seed page -------------------------------------------------------------------------------


@pytest.fixture
def seed(config: Config) -> Article:
    return read(config, SEED, "car-nk-cells.txt")


@needs_seed
def test_seed_header_maps_to_title_category_and_date(seed: Article) -> None:
    assert seed.title == "CAR-NK Cells: Could 'Off-the-Shelf' Immune Therapy Follow CAR-T?"
    assert seed.category == "Immune Health"
    assert seed.published.date() == date(2026, 6, 24)
    assert seed.published.tzinfo is not None
    assert seed.published.utcoffset() is not None
    assert str(seed.published.tzinfo) == "Europe/London"
    assert seed.date_label == "24 Jun 2026"
    assert seed.read_minutes == 5
    assert seed.slug == "car-nk-cells"
    assert seed.url == "https://journal.example.org/journal/car-nk-cells/"


@needs_seed
def test_seed_summary_is_the_standfirst(seed: Article) -> None:
    page = blocks(SEED.read_text(encoding="utf-8"))
    date_at = next(i for i, b in enumerate(page) if b.startswith("24 Jun 2026"))
    assert seed.summary == page[date_at - 1]
    assert seed.summary != seed.title
    assert seed.summary not in seed.body_html


@needs_seed
def test_seed_section_headings_become_h2(seed: Article) -> None:
    assert "<h2>What did the review find?</h2>" in seed.body_html
    assert "<h2>Common questions</h2>" in seed.body_html
    assert "<h2>Key takeaway</h2>" in seed.body_html
    assert "<p>What did the review find?</p>" not in seed.body_html
    # "Sources" is turned into Article.sources, not left as a heading in the body.
    assert "<h2>Sources</h2>" not in seed.body_html


@needs_seed
def test_seed_disclaimer_is_kept_apart_from_the_body(seed: Article) -> None:
    last_block = blocks(SEED.read_text(encoding="utf-8"))[-1]
    assert seed.disclaimer == last_block
    assert "not medical advice" in seed.disclaimer
    assert "not medical advice" not in seed.body_html
    assert seed.disclaimer not in plain_text(seed.body_html)


@needs_seed
def test_seed_sources_carry_the_pmc_url(seed: Article) -> None:
    assert len(seed.sources) == 1
    source = seed.sources[0]
    assert source.url.startswith("https://pmc.ncbi.nlm.nih.gov/articles/PMC")
    assert not source.url.endswith((".", ")", ","))
    assert source.title.startswith("Chimeric antigen receptor natural killer")
    assert "https://" not in source.title


@needs_seed
def test_seed_reference_lines_are_not_in_the_body(seed: Article) -> None:
    references = [b for b in blocks(SEED.read_text(encoding="utf-8")) if re.match(r"\[\d+\]", b)]
    assert references, "the seed has bracketed reference lines"
    text = plain_text(seed.body_html)
    for reference in references:
        assert reference not in text
        assert reference[4:40] not in text
    assert "pmc.ncbi.nlm.nih.gov" not in seed.body_html
    assert not re.search(r"<p>\s*\[\d+\]", seed.body_html)


@needs_seed
def test_seed_back_link_is_not_in_the_body(seed: Article) -> None:
    assert "←" not in seed.body_html
    assert "Journal" not in plain_text(seed.body_html).splitlines()[0]
    assert "←" not in seed.title + seed.category + seed.summary


@needs_seed
def test_seed_inline_citations_become_superscripts(seed: Article) -> None:
    assert "breathlessly<sup>[1]</sup>." in seed.body_html
    assert " 1." not in plain_text(seed.body_html)


# --- our own fixture pages -----------------------------------------------------------------------


@pytest.fixture
def walking(config: Config) -> Article:
    return read(config, ENTRIES / "walking-after-meals.txt")


@pytest.fixture
def hay_fever(config: Config) -> Article:
    return read(config, ENTRIES / "hay-fever-eye-drops.txt")


def test_fixture_header_maps_to_fields(walking: Article) -> None:
    assert walking.title == "A Short Walk After Dinner: Does It Really Help Blood Sugar?"
    assert walking.category == "Metabolic Health"
    assert walking.summary.startswith("A ten-minute stroll after eating")
    assert walking.summary.endswith("and what they did not.")
    assert walking.date_label == "9 Apr 2026"
    assert walking.published.date() == date(2026, 4, 9)
    assert walking.published.utcoffset().total_seconds() == 3600  # BST on the site's clock
    assert walking.read_minutes == 3
    assert walking.slug == "walking-after-meals"


def test_fixture_headings_become_h2(walking: Article) -> None:
    for heading in ("What did the researchers ask?", "What did they find?",
                    "How strong is this evidence?", "Common questions", "Key takeaways"):
        assert f"<h2>{heading}</h2>" in walking.body_html


def test_fixture_common_questions_are_bold_question_and_answer(walking: Article) -> None:
    assert "<p><strong>Does it have to be a brisk walk?</strong> No." in walking.body_html


def test_fixture_sources_on_consecutive_lines_each_become_a_source(walking: Article) -> None:
    assert [s.url for s in walking.sources] == [
        "https://example.org/studies/post-meal-walking-glucose",
        "https://example.org/studies/post-meal-activity-timing",
    ]
    assert walking.sources[0].title.startswith("Light walking after meals and post-meal glucose")
    assert walking.sources[1].title.startswith("Timing of post-meal activity")


def test_fixture_disclaimer_references_and_back_link_stay_out_of_body(walking: Article) -> None:
    assert walking.disclaimer == ("This page is general health information for readers, "
                                  "not personal medical advice.")
    text = plain_text(walking.body_html)
    assert "personal medical advice" not in text
    assert not re.search(r"<p>\s*\[\d+\]", walking.body_html)
    assert "Meta-analysis, 2024" not in text
    assert "example.org" not in walking.body_html
    assert "←" not in walking.body_html
    assert "Light walking after meals — meta-analysis" not in text


def test_fixture_citations_become_superscripts_but_counts_stay_plain(walking: Article) -> None:
    assert "eating has attracted attention<sup>[1]</sup>." in walking.body_html
    assert "an hour<sup>[2]</sup>." in walking.body_html
    # A number in running text is not a citation, even when a reference [1] exists.
    assert "Adults can take 1 short walk" in walking.body_html


def test_page_without_key_takeaway_or_references(hay_fever: Article) -> None:
    assert hay_fever.title == "Hay Fever Eye Drops: Which Kind Suits You?"
    assert hay_fever.category == "Allergy"
    assert hay_fever.date_label == "2 May 2026"
    assert hay_fever.read_minutes == 2
    assert "Key takeaway" not in hay_fever.body_html
    assert "<h2>When should you see us?</h2>" in hay_fever.body_html
    assert "<sup>" not in hay_fever.body_html
    assert len(hay_fever.sources) == 1
    assert hay_fever.sources[0].title.startswith("Topical treatments for seasonal allergic")
    assert hay_fever.sources[0].url == ""
    assert hay_fever.disclaimer.startswith("Written for general education")
    assert "general education" not in hay_fever.body_html


def test_page_ending_with_sources_has_no_disclaimer_and_keeps_its_sources(config: Config) -> None:
    text = (ENTRIES / "walking-after-meals.txt").read_text(encoding="utf-8")
    without_disclaimer = text.rsplit("\n\n", 1)[0] + "\n"
    article, _ = read_journal_page(Path("articles/w.txt"), without_disclaimer, config)
    assert article is not None
    assert article.disclaimer == ""
    assert len(article.sources) == 2
    assert article.sources[0].title.startswith("Light walking after meals")


def test_missing_date_line_is_an_error_naming_date(config: Config) -> None:
    source = ENTRIES / "no-date-line.txt"
    with pytest.raises(EntryError) as caught:
        read_journal_page(Path("articles/no-date-line.txt"), source.read_text(encoding="utf-8"),
                          config)
    problem = caught.value.problem
    assert problem.field == "date"
    assert not problem.warning
    assert str(problem).startswith("articles/no-date-line.txt:")
    assert re.fullmatch(r"articles/no-date-line\.txt:\d+: date: .+ — .+", str(problem))


def test_impossible_date_line_is_an_error_naming_date(config: Config) -> None:
    text = (ENTRIES / "hay-fever-eye-drops.txt").read_text(encoding="utf-8")
    text = text.replace("2 May 2026 · 2 min read", "31 Feb 2026 · 2 min read")
    with pytest.raises(EntryError) as caught:
        read_journal_page(Path("articles/bad.txt"), text, config)
    assert caught.value.problem.field == "date"
    assert caught.value.problem.line == 9


def test_page_without_header_is_an_error_naming_title(config: Config) -> None:
    with pytest.raises(EntryError) as caught:
        read_journal_page(Path("articles/x.txt"), "← Journal\n\n2 May 2026 · 2 min read\n\nBody.\n",
                          config)
    assert caught.value.problem.field == "title"


def test_script_text_in_a_page_is_escaped(config: Config) -> None:
    text = (ENTRIES / "hay-fever-eye-drops.txt").read_text(encoding="utf-8").replace(
        "Antihistamines block", '<script>alert(1)</script> <a href="javascript:x()">x</a> Block')
    article, _ = read_journal_page(Path("articles/x.txt"), text, config)
    assert article is not None
    assert "<script" not in article.body_html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in article.body_html  # shown, never run
    assert unsafe_markup(article.body_html) == []


HEADER = "← Journal\n\nAllergy\n\nA title\n\nA standfirst.\n\n2 May 2026 · 2 min read\n\n"
HOSTILE = st.sampled_from([
    "<script>alert(1)</script>", '<a href="javascript:alert(1)">x</a>', "<img src=x onerror=y()>",
    "[1] Ref. https://example.org/r", "  1. Item", "Sources", "Key takeaway", "Common questions",
    "Why? Because.", " 1.", "\n\n", "\n", "?", "—", "24 Jun 2026 · 5 min read",
])
PAGE_TEXT = st.lists(st.text(max_size=40) | HOSTILE, max_size=12).map("".join)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=PAGE_TEXT)
def test_any_body_under_a_good_header_reads_to_safe_html(config: Config, body: str) -> None:
    article, _ = read_journal_page(Path("articles/x.txt"), HEADER + body, config)
    assert article is not None
    assert article.title == "A title"
    assert "<script" not in article.body_html
    assert unsafe_markup(article.body_html) == []


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=PAGE_TEXT)
def test_any_text_gives_an_article_or_an_entry_error(config: Config, text: str) -> None:
    try:
        article, _ = read_journal_page(Path("articles/x.txt"), text, config)
    except EntryError as exc:
        assert exc.problem.field in {"date", "title"}
        return
    assert article is not None
    assert unsafe_markup(article.body_html) == []


def test_sources_items_without_a_reference_line_are_kept(config: Config) -> None:
    page = "\n\n".join([
        "← Journal", "Heart Health", "A title", "A standfirst.", "3 Feb 2026 · 4 min read",
        "A paragraph citing something 1.",
        "[1] First study. Trial, 2024. https://example.org/one",
        "Sources", "  1. First study — trial (2024, Example)\n  2. Second study — review (2023)",
        "For general information and education only — not medical advice.",
    ])
    article, _ = read_journal_page(Path("articles/p.txt"), page, config)
    assert article is not None
    assert [(s.title, s.url) for s in article.sources] == [
        ("First study — trial (2024, Example)", "https://example.org/one"),
        ("Second study — review (2023)", ""),
    ]
