"""Key takeaways: explicit → the entry's own section → extractive fallback; 1–3, never mid-word."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ENTRIES, NOW, SEED, markdown_entry
from pipeline.core.config import Config
from pipeline.core.models import Article, Body
from pipeline.entries.collect import collect_articles
from pipeline.entries.readers.journal_page import read_journal_page
from pipeline.entries.readers.markdown import read_markdown
from pipeline.entries.sanitise import one_line
from pipeline.entries.summarise import MAX_CHARS, MAX_TAKEAWAYS, sentences, summarise, takeaways_for

SECTION = ("<h2>Key takeaways</h2>\n<p>The section's first point. The section's second point.</p>")
OPENING = ("<p>The opening sentence of the body. A second opening sentence. A third one.</p>\n"
           "<h2>Later</h2>\n<p>Text after the first heading is not used.</p>")


def article(body_html: str = OPENING, summary: str = "", takeaways: tuple[str, ...] = (),
            title: str = "A title") -> Article:
    return Article(path=Path("articles/a.md"), slug="a", title=title,
                   published=datetime(2026, 3, 14, tzinfo=UTC), body=Body(body_html),
                   summary=summary, stated_takeaways=takeaways)


def markdown(config: Config, body: str, **fields: str) -> Article:
    result, _ = read_markdown(Path("articles/m.md"), markdown_entry(body=body, **fields), config)
    assert result is not None
    return result


def page(config: Config, source: Path) -> Article:
    result, _ = read_journal_page(Path("articles") / source.name,
                                  source.read_text(encoding="utf-8"), config)
    assert result is not None
    return result


# --- which source wins ----------------------------------------------------------------------------


def test_explicit_list_wins_over_section_and_summary() -> None:
    explicit = ("First explicit point.", "Second explicit point.")
    result = takeaways_for(article(body_html=SECTION, summary="A standfirst.", takeaways=explicit))
    assert result == explicit


def test_explicit_list_from_front_matter_wins(config: Config) -> None:
    entry = markdown(config, "## Key takeaways\n\nNot this one.\n",
                     takeaways='["Explicit one.", "Explicit two."]')
    assert summarise(entry).takeaways == ("Explicit one.", "Explicit two.")


def test_single_explicit_string_is_split_into_sentences(config: Config) -> None:
    entry = markdown(config, "Body.", takeaways='"Drink water. Rest well! Is it flu? Maybe."')
    assert summarise(entry).takeaways == ("Drink water.", "Rest well!", "Is it flu?")


def test_single_explicit_sentence_stays_whole() -> None:
    one = "For most adults, 10 micrograms a day (400 IU) is enough; e.g. in winter it helps."
    assert takeaways_for(article(takeaways=(one,))) == (one,)


def test_key_takeaways_paragraph_section_is_used(config: Config) -> None:
    entry = markdown(config, "Opening words here.\n\n## Key takeaways\n\n"
                             "Walk after meals. Sleep seven hours.\n\n## Sources\n\nSomething.\n",
                     summary='"The standfirst."')
    assert summarise(entry).takeaways == ("Walk after meals.", "Sleep seven hours.")


def test_key_takeaway_bullet_list_section_is_used(config: Config) -> None:
    entry = markdown(config, "Opening.\n\n### Key takeaway\n\n- Point one\n- Point **two**\n"
                             "- Point three\n- Point four\n\n## After\n\nLater.\n")
    assert summarise(entry).takeaways == ("Point one", "Point two", "Point three")


def test_section_citations_are_dropped() -> None:
    body = "<h2>Key takeaway</h2><p>It helps<sup>[1]</sup>. It is safe.</p>"
    assert takeaways_for(article(body_html=body)) == ("It helps.", "It is safe.")


def test_empty_key_takeaways_section_falls_back() -> None:
    body = "<p>Opening sentence.</p><h2>Key takeaways</h2><h2>Next</h2><p>x.</p>"
    assert takeaways_for(article(body_html=body, summary="Standfirst.")) == (
        "Standfirst.", "Opening sentence.")


def test_fallback_uses_standfirst_then_opening_sentences() -> None:
    result = takeaways_for(article(summary="The standfirst sentence."))
    assert result == ("The standfirst sentence.", "The opening sentence of the body.")


def test_fallback_without_standfirst_uses_the_opening_only() -> None:
    result = takeaways_for(article())
    assert result == ("The opening sentence of the body.", "A second opening sentence.")
    assert "Text after the first heading" not in " ".join(result)


def test_fallback_of_an_empty_body_is_the_title() -> None:
    assert takeaways_for(article(body_html="")) == ("A title",)


def test_fallback_for_a_markdown_entry(config: Config) -> None:
    entry = markdown(config, "First thing said. Second thing said.\n\n## Heading\n\nLater.\n",
                     summary='"A standfirst in one sentence."')
    assert summarise(entry).takeaways == ("A standfirst in one sentence.", "First thing said.")


# --- bounds ---------------------------------------------------------------------------------------


def test_never_more_than_three() -> None:
    many = tuple(f"Point number {n}." for n in range(1, 8))
    assert takeaways_for(article(takeaways=many)) == many[:MAX_TAKEAWAYS]
    assert len(takeaways_for(article(takeaways=(" ".join(many),)))) == MAX_TAKEAWAYS


def test_blank_explicit_items_are_dropped() -> None:
    assert takeaways_for(article(takeaways=("  ", "Real point.", ""))) == ("Real point.",)


def test_long_sentence_is_shortened_at_a_word_boundary() -> None:
    words = [f"word{n:03d}" for n in range(200)]
    long = " ".join(words) + "."
    assert len(long) >= 1000
    (result,) = takeaways_for(article(takeaways=(long,)))
    assert result.endswith("…")
    assert len(result) <= MAX_CHARS
    kept = result[:-1]
    assert long.startswith(kept)
    assert long[len(kept)] == " "  # the cut falls between words
    assert kept.split()[-1] in words


def test_long_sentence_does_not_end_in_dangling_punctuation() -> None:
    long = "Intro, " + ", ".join(["alpha beta gamma"] * 60) + "."
    (result,) = takeaways_for(article(takeaways=(long,)))
    assert result.endswith("…")
    assert result[-2].isalpha()


def test_deterministic(config: Config) -> None:
    entry = page(config, ENTRIES / "hay-fever-eye-drops.txt")
    first = summarise(entry).takeaways
    assert all(summarise(entry).takeaways == first for _ in range(5))
    assert summarise(summarise(entry)).takeaways == first


def test_summarise_fills_only_takeaways() -> None:
    before = article(summary="Standfirst.")
    after = summarise(before)
    assert after.takeaways
    assert after.body_html == before.body_html
    assert after.summary == before.summary


def test_sentences_split_only_before_a_capital_or_number() -> None:
    assert sentences("It works, e.g. for adults. Then 2 more. “Quoted.” End") == [
        "It works, e.g. for adults.", "Then 2 more.", "“Quoted.”", "End"]


# --- real pages -----------------------------------------------------------------------------------


@pytest.mark.skipif(not SEED.exists(), reason="seed page not present on this machine")
def test_seed_yields_its_own_key_takeaway(config: Config) -> None:
    result = summarise(page(config, SEED)).takeaways
    assert 1 <= len(result) <= 3
    assert result[0].startswith("CAR-NK therapy takes CAR-T's winning idea")
    assert result[0].endswith("donors or stem cells.")
    seed_text = " ".join(SEED.read_text(encoding="utf-8").split())
    for item in result:
        assert item in seed_text


def test_fixture_key_takeaways_section_is_used(config: Config) -> None:
    result = summarise(page(config, ENTRIES / "walking-after-meals.txt")).takeaways
    assert result == (
        "A short, easy walk soon after eating reliably blunts the rise in blood sugar that "
        "follows a meal.",
        "The benefit appears within minutes of starting and needs no special equipment.",
        "Longer-term effects on health have not yet been measured directly.",
    )


def test_fixture_without_key_takeaway_uses_standfirst_and_opening(config: Config) -> None:
    result = summarise(page(config, ENTRIES / "hay-fever-eye-drops.txt")).takeaways
    assert result == (
        "Itchy, watery eyes are often the worst part of the pollen season.",
        "Pharmacy shelves offer several kinds of drops, and they work in different ways.",
    )


def test_every_sample_article_has_takeaways(sample_site: Path, config: Config) -> None:
    articles, problems = collect_articles(config, NOW)
    assert problems == []
    for entry in articles:
        result = summarise(entry).takeaways
        assert 1 <= len(result) <= MAX_TAKEAWAYS, entry.path
        assert all(item.strip() and len(item) <= MAX_CHARS for item in result), entry.path


# --- properties -----------------------------------------------------------------------------------

WORDS = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=" "),
                min_size=1, max_size=25)
PROSE = st.lists(WORDS | st.sampled_from([".", "! ", "? ", ". ", "\n\n", "## Key takeaways\n\n",
                                          "- ", "\n", "<sup>1</sup>", "  "]),
                 max_size=120).map(" ".join)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=PROSE, summary=PROSE, explicit=st.lists(PROSE, max_size=5))
def test_always_one_to_three_whole_word_takeaways(
        config: Config, body: str, summary: str, explicit: list[str]) -> None:
    entry = replace(markdown(config, body), summary=one_line(summary),
                    stated_takeaways=tuple(one_line(e) for e in explicit if one_line(e)))
    result = summarise(entry).takeaways
    assert result == summarise(entry).takeaways  # deterministic
    assert 1 <= len(result) <= MAX_TAKEAWAYS
    for item in result:
        assert item.strip() == item and item
        assert len(item) <= MAX_CHARS
        assert "\n" not in item


@settings(max_examples=80, deadline=None)
@given(text=st.lists(st.text(alphabet="abcdefghij", min_size=1, max_size=12),
                     min_size=1, max_size=200).map(" ".join))
def test_shortened_takeaways_end_between_words(text: str) -> None:
    (result,) = takeaways_for(article(takeaways=(text,)))
    if len(text) <= MAX_CHARS:
        assert result == text
    else:
        assert result.endswith("…") and len(result) <= MAX_CHARS
        kept = result[:-1]
        assert text.startswith(kept) and text[len(kept)] == " "
