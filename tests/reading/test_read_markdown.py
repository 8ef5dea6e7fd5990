"""Markdown entries with YAML front matter: every field, every error, and hostile bodies."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ENTRIES, markdown_entry, unsafe_markup
from pipeline.core.config import Config
from pipeline.core.errors import EntryError, Problem
from pipeline.core.models import Article, Source
from pipeline.entries.readers.markdown import read_markdown

PATH = Path("articles/2026-03-14-an-entry.md")
# `path:line: field: problem — hint`
PROBLEM_FORMAT = re.compile(r"(?P<path>[^:]+):(?P<line>\d+): (?P<field>[^:]+): (?P<problem>.+) — "
                            r"(?P<hint>.+)", re.S)


def read(config: Config, text: str, path: Path = PATH) -> tuple[Article | None, list[Problem]]:
    return read_markdown(path, text, config)


def article_of(config: Config, text: str, path: Path = PATH) -> Article:
    article, warnings = read(config, text, path)
    assert article is not None
    assert warnings == []
    return article


def error_of(config: Config, text: str) -> Problem:
    with pytest.raises(EntryError) as caught:
        read(config, text)
    problem = caught.value.problem
    assert not problem.warning
    match = PROBLEM_FORMAT.fullmatch(str(caught.value))
    assert match, str(caught.value)
    assert match["path"] == str(PATH)
    assert int(match["line"]) == problem.line
    assert match["field"] == problem.field
    assert problem.hint.strip()
    return problem


# --- fields ---------------------------------------------------------------------------------------


@pytest.fixture
def full(config: Config) -> Article:
    source = ENTRIES / "all-fields.md"
    return article_of(config, source.read_text(encoding="utf-8"), Path("articles/all-fields.md"))


def test_all_fields_map(full: Article) -> None:
    assert full.title == "Cold Hands in Winter: When to Mention It"
    assert full.category == "Circulation"
    assert full.summary == ("Cold fingers are usually harmless, but colour changes or sores are "
                            "worth a check.")
    assert full.author == "Dr Ada Example"
    assert full.tags == ("circulation", "winter")
    assert full.takeaways == (
        "Most cold hands are simply a normal response to cold weather.",
        "White or blue fingers that then turn red deserve a conversation with us.",
    )
    assert full.sources == (
        Source("Primary Raynaud's phenomenon in adults — clinical review",
               "https://example.org/reviews/raynauds-adults"),
        Source("Hand warming strategies — pilot study", "https://example.org/studies/hand-warming"),
    )
    assert full.published == datetime(2026, 2, 10, 8, 45, tzinfo=UTC)
    assert full.updated is not None
    assert full.updated.date().isoformat() == "2026-02-12"
    assert str(full.updated.tzinfo) == "Europe/London"
    assert full.path == Path("articles/all-fields.md")
    assert "<h2>Why do fingers go white?</h2>" in full.body_html
    assert full.read_minutes == 1


def test_explicit_slug_is_made_url_safe_and_sets_the_url(full: Article) -> None:
    assert full.slug == "cold-hands-winter"
    assert full.url == "https://journal.example.org/journal/cold-hands-winter/"


def test_slug_defaults_to_the_file_name(config: Config) -> None:
    article = article_of(config, markdown_entry(), Path("articles/Vitamin D & You.md"))
    assert article.slug == "vitamin-d-you"
    assert article.url == "https://journal.example.org/journal/vitamin-d-you/"


def test_date_only_is_midnight_on_the_site_clock(config: Config) -> None:
    article = article_of(config, markdown_entry(date="2026-07-09"))
    assert str(article.published.tzinfo) == "Europe/London"
    assert article.published.isoformat() == "2026-07-09T00:00:00+01:00"  # BST
    winter = article_of(config, markdown_entry(date="2026-01-09"))
    assert winter.published.isoformat() == "2026-01-09T00:00:00+00:00"  # GMT


def test_datetime_with_offset_keeps_its_instant_in_site_timezone(config: Config) -> None:
    article = article_of(config, markdown_entry(date="2026-05-02T08:30:00-04:00"))
    assert article.published == datetime(2026, 5, 2, 12, 30, tzinfo=UTC)
    assert str(article.published.tzinfo) == "Europe/London"
    assert article.published.hour == 13  # 12:30 UTC is 13:30 BST


def test_naive_datetime_is_on_the_site_clock(config: Config) -> None:
    article = article_of(config, markdown_entry(date="2026-07-09 08:00:00"))
    assert article.published == datetime(2026, 7, 9, 7, 0, tzinfo=UTC)
    assert str(article.published.tzinfo) == "Europe/London"
    quoted = article_of(config, markdown_entry(date='"2026-07-09T08:00"'))
    assert quoted.published == article.published


def test_single_takeaway_string_is_kept(config: Config) -> None:
    article = article_of(config, markdown_entry(takeaways='"Sleep matters. So does light."'))
    assert article.takeaways == ("Sleep matters. So does light.",)


def test_tags_as_a_single_string_become_a_one_item_list(config: Config) -> None:
    assert article_of(config, markdown_entry(tags="sleep")).tags == ("sleep",)


def test_draft_is_skipped(config: Config) -> None:
    article, warnings = read(config, markdown_entry(draft="true"))
    assert article is None
    assert warnings == []


def test_draft_false_is_published(config: Config) -> None:
    assert article_of(config, markdown_entry(draft="false")).title == "A test entry"


def test_draft_that_is_not_true_or_false_is_an_error(config: Config) -> None:
    problem = error_of(config, markdown_entry(draft='"maybe"'))
    assert problem.field == "draft"
    assert problem.line == 4


# --- body -----------------------------------------------------------------------------------------


def test_relative_links_become_absolute_against_the_article_url(config: Config) -> None:
    body = ("See the [guide](/guides/cholesterol/), [notes](notes/) and "
            "![chart](chart.png). [Elsewhere](https://other.example.net/x) stays.")
    article = article_of(config, markdown_entry(body=body))
    base = "https://journal.example.org/journal/2026-03-14-an-entry/"
    assert 'href="https://journal.example.org/guides/cholesterol/"' in article.body_html
    assert f'href="{base}notes/"' in article.body_html
    assert f'src="{base}chart.png"' in article.body_html
    assert 'href="https://other.example.net/x"' in article.body_html
    assert 'href="/' not in article.body_html


def test_raw_script_onclick_and_javascript_links_do_not_survive(config: Config) -> None:
    body = (
        "Hello <script>document.cookie</script> there.\n\n"
        '<p onclick="steal()">Click</p>\n\n'
        '<a href="javascript:alert(1)">bad link</a> and <a href=" JaVaScRiPt:alert(2)">two</a>\n\n'
        '<img src="x.png" onerror="alert(3)"> <iframe src="https://evil.example"></iframe>\n\n'
        "<style>body{display:none}</style>"
    )
    article = article_of(config, markdown_entry(body=body))
    html = article.body_html
    assert "<script" not in html
    assert "document.cookie" not in html
    assert "onclick" not in html
    assert "onerror" not in html
    assert "javascript:" not in html.lower()
    assert "<iframe" not in html
    assert "display:none" not in html
    assert unsafe_markup(html) == []
    assert "Click" in html and "bad link" in html  # the text itself is kept


def test_body_is_rendered_as_markdown(config: Config) -> None:
    body = "Some *emphasis*.\n\n## A question?\n\n- one\n- two\n"
    html = article_of(config, markdown_entry(body=body)).body_html
    assert "<em>emphasis</em>" in html
    assert "<h2>A question?</h2>" in html
    assert "<li>one</li>" in html


# --- warnings and errors --------------------------------------------------------------------------


def test_unknown_field_is_a_warning_with_its_line(config: Config) -> None:
    text = markdown_entry(category="Sleep", catgeory="Sleep")
    article, warnings = read(config, text)
    assert article is not None  # still published
    assert len(warnings) == 1
    warning = warnings[0]
    assert warning.warning
    assert warning.field == "catgeory"
    assert warning.line == 5
    assert str(warning).startswith(f"{PATH}:5: warning: catgeory: unknown field — ")


def test_missing_title_is_an_error(config: Config) -> None:
    problem = error_of(config, "---\ndate: 2026-03-14\n---\n\nBody.\n")
    assert problem.field == "title"


def test_blank_title_is_an_error(config: Config) -> None:
    assert error_of(config, markdown_entry(title="   ")).field == "title"


def test_missing_date_is_an_error(config: Config) -> None:
    problem = error_of(config, '---\ntitle: "A title"\n---\n\nBody.\n')
    assert problem.field == "date"
    assert "2026-01-31" in problem.hint


def test_impossible_date_is_an_error_on_its_line(config: Config) -> None:
    problem = error_of(config, markdown_entry(date="2025-02-30"))
    assert problem.field == "date"
    assert problem.line == 3
    assert "impossible" in problem.problem


def test_impossible_updated_date_names_updated(config: Config) -> None:
    problem = error_of(config, markdown_entry(updated="2025-02-30"))
    assert problem.field == "updated"
    assert problem.line == 4


def test_unparseable_date_string_is_an_error(config: Config) -> None:
    problem = error_of(config, markdown_entry(date='"last Tuesday"'))
    assert problem.field == "date"
    assert problem.line == 3


def test_date_out_of_range_is_an_error_not_a_crash(config: Config) -> None:
    assert error_of(config, markdown_entry(date="9999-12-31T23:00:00-05:00")).field == "date"


def test_malformed_yaml_is_an_error_on_its_line(config: Config) -> None:
    text = '---\ntitle: "A title"\ndate: 2026-03-14\ncategory: Sleep: and more\n---\n\nBody.\n'
    problem = error_of(config, text)
    assert problem.field == "front matter"
    assert problem.line == 4
    assert "YAML" in problem.problem


def test_odd_yaml_tag_is_an_error_not_a_crash(config: Config) -> None:
    assert error_of(config, markdown_entry(date="!!timestamp soon")).field == "front matter"


def test_unclosed_front_matter_is_an_error(config: Config) -> None:
    problem = error_of(config, '---\ntitle: "A title"\ndate: 2026-03-14\n\nBody text.\n')
    assert problem.field == "front matter"
    assert "not closed" in problem.problem


def test_no_front_matter_is_an_error(config: Config) -> None:
    problem = error_of(config, "# Just a heading\n\nSome text.\n")
    assert problem.field == "front matter"
    assert problem.problem == "missing"
    assert problem.line == 1


def test_tags_as_a_number_is_an_error(config: Config) -> None:
    problem = error_of(config, markdown_entry(tags="42"))
    assert problem.field == "tags"
    assert problem.line == 4
    assert "a number" in problem.problem


def test_takeaways_as_a_mapping_is_an_error(config: Config) -> None:
    problem = error_of(config, markdown_entry(takeaways="{first: one, second: two}"))
    assert problem.field == "takeaways"
    assert problem.line == 4
    assert "mapping" in problem.problem


def test_title_as_a_number_is_an_error(config: Config) -> None:
    problem = error_of(config, '---\ntitle: 2026\ndate: 2026-03-14\n---\n\nBody.\n')
    assert problem.field == "title"
    assert problem.line == 2


def test_source_without_absolute_url_is_an_error(config: Config) -> None:
    problem = error_of(config, markdown_entry(sources='[{title: "A", url: "/relative"}]'))
    assert problem.field == "sources"


# --- properties -----------------------------------------------------------------------------------

HOSTILE = st.sampled_from([
    "<script>alert(1)</script>", "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    '<a href="javascript:alert(1)">x</a>', "<a href='jav&#x09;ascript:alert(1)'>x</a>",
    '<a href="&#106;avascript:alert(1)">x</a>', "<img src=x onerror=alert(1)>",
    '<p onclick="x()">p</p>', "<svg onload=alert(1)>", "<iframe src=//x>", "[x](javascript:y)",
    "<javascript:alert(1)>", '<div style="x" onmouseover="y">', "\n\n", "\n---\n", '"', ": ",
    "<!--", "-->", "<![CDATA[", "&", "<", ">", "`", "\x00", "\u2028",
])
TEXT = st.lists(st.text(max_size=30) | HOSTILE, max_size=12).map("".join)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=TEXT, body=TEXT)
def test_any_title_and_body_give_an_article_or_an_entry_error(
        config: Config, title: str, body: str) -> None:
    for text in (markdown_entry(title=title, body=body),  # pasted raw: may break the YAML
                 markdown_entry(body=body).replace('"A test entry"', json.dumps(title))):
        try:
            article, _ = read(config, text)
        except EntryError as exc:
            assert PROBLEM_FORMAT.fullmatch(str(exc)), str(exc)
            assert exc.problem.field in {"front matter", "title", "date"}
            continue
        assert article is not None
        assert "\n" not in article.title and article.title.strip() == article.title
        assert "<script" not in article.body_html.lower()
        assert unsafe_markup(article.body_html) == []


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=TEXT)
def test_any_body_gives_safe_html(config: Config, body: str) -> None:
    article = article_of(config, markdown_entry(body=body))
    html = article.body_html
    assert "<script" not in html.lower()
    assert not re.search(r"<[a-z][^>]*\son[a-z]+\s*=", html, re.I), html
    # Inside a tag only: `&lt;a href="javascript:…"&gt;` shown as code is text, not a link.
    assert not re.search(r"""<[a-z][^>]*\s(href|src)\s*=\s*["']?\s*javascript:""", html,
                         re.I), html
    assert unsafe_markup(html) == []


@pytest.mark.parametrize("front", ["- title\n- date\n", "just a sentence\n"])
def test_front_matter_that_is_not_fields_is_an_error(config: Config, front: str) -> None:
    with pytest.raises(EntryError) as caught:
        read_markdown(Path("articles/x.md"), f"---\n{front}---\nBody.\n", config)
    assert caught.value.problem.field == "front matter"
    assert "field: value" in caught.value.problem.problem


# --- nesting --------------------------------------------------------------------------------------


def test_html_nested_deeper_than_the_limit_is_refused_with_its_line_and_the_run_goes_on(
        site: Path) -> None:
    """199,000 nested <div>s (under the size limit) took the sanitiser 155 s, quadratic in
    depth with the site lock held: refused now, by a linear count before it."""
    from conftest import NOW, write_entry
    from pipeline.core.config import load_config
    from pipeline.entries.collect import collect_articles
    from pipeline.entries.nesting import MAX_DEPTH

    body = "Intro.\n\n" + "<div>" * 199_000 + "deep"  # 995 KB, as the issue measured
    write_entry(site, "deep.md", markdown_entry(title="Deep", body=body))
    write_entry(site, "fine.md", markdown_entry(title="Fine", date="2026-03-15"))
    nested = "<div>" * (MAX_DEPTH - 8) + "kept" + "</div>" * (MAX_DEPTH - 8)
    write_entry(site, "nested.md", markdown_entry(title="Nested", date="2026-03-16",
                                                  body=f"<blockquote>{nested}</blockquote>"))
    articles, problems = collect_articles(load_config(site), NOW)
    assert [a.title for a in articles] == ["Nested", "Fine"]
    assert "kept" in articles[0].body_html
    [problem] = problems
    assert (str(problem.path), problem.field, problem.line) == ("articles/deep.md", "body", 8)
    assert f"more than {MAX_DEPTH} levels" in problem.problem and "nested tags" in problem.hint


# Bodies of ~1 MB that are nearly all markup: markdown-it-py took 2-14 s to render each
# (linear, but ~10-18 µs a markup character; bench/nesting.py).
DENSE = {
    "images": "![a](b) ",
    "list items": "- a\n",
    "inline tags 48 deep": "<b>" * 48 + "x" + "</b>" * 48 + " ",
    "brackets": "[",
    "table rows": "|a|b|\n|-|-|\n",
}


@pytest.mark.parametrize("unit", DENSE.values(), ids=list(DENSE))
def test_a_body_with_more_markup_than_the_budget_is_refused_and_the_run_goes_on(
        site: Path, unit: str) -> None:
    from conftest import NOW, write_entry
    from pipeline.core.config import load_config
    from pipeline.entries.collect import collect_articles
    from pipeline.entries.markup_budget import MAX_MARKUP

    body = "Intro.\n\n" + unit * (990_000 // len(unit))
    write_entry(site, "dense.md", markdown_entry(title="Dense", body=body))
    write_entry(site, "fine.md", markdown_entry(title="Fine", date="2026-03-15"))
    articles, problems = collect_articles(load_config(site), NOW)
    assert [a.title for a in articles] == ["Fine"]
    assert "opening paragraph" in articles[0].body_html
    [problem] = problems
    assert (str(problem.path), problem.field, problem.line) == ("articles/dense.md", "body", 5)
    assert f"more than {MAX_MARKUP:,}" in problem.problem and "refused" in problem.problem
    assert "split it into several entries" in problem.hint


def test_a_megabyte_of_prose_with_ordinary_markup_is_published_and_rendered(site: Path) -> None:
    from conftest import NOW, write_entry
    from pipeline.core.config import load_config
    from pipeline.entries.collect import collect_articles
    from pipeline.entries.markup_budget import MAX_MARKUP, markup_count

    paragraph = ("Blood pressure readings vary through the day, and a single reading says "
                 "little. " * 12 + "See [the guideline](https://example.org/g) and *rest*.\n\n")
    body = paragraph * (1_000_000 // len(paragraph))
    assert len(body) > 900_000 and markup_count(body) <= MAX_MARKUP
    write_entry(site, "long.md", markdown_entry(title="Long", body=body))
    [article], problems = collect_articles(load_config(site), NOW)
    assert problems == []
    assert article.body_html.count('<a href="https://example.org/g"') == body.count("[the")


def test_the_markup_budget_counts_what_markdown_it_steps_through_one_by_one() -> None:
    from pipeline.entries.markup_budget import MARKUP, MAX_MARKUP, markup_count, too_much_markup
    from pipeline.entries.readers.markdown import _markdown

    terminators = _markdown().inline.terminator_re
    assert {chr(c) for c in range(128) if terminators.match(chr(c))} == set(MARKUP)
    assert markup_count("word " * 200_000) == 0
    assert markup_count("A *b* [c](d), e-f\n") == 6
    assert markup_count("é[" * MAX_MARKUP) == MAX_MARKUP  # non-ASCII text counts nothing
    assert too_much_markup("[" * MAX_MARKUP) is None
    assert too_much_markup("[" * (MAX_MARKUP + 1)) == MAX_MARKUP + 1


def test_html_nested_deep_through_a_table_cell_or_closed_by_other_tags_is_still_counted(
        config: Config) -> None:
    from pipeline.entries.nesting import MAX_DEPTH, too_deep

    # An end tag does not close past a table cell; a stray end tag closes nothing.
    tricks = ("<div><td>" + "<span></div>" * MAX_DEPTH,
              "<div>" + "<b></i>" * MAX_DEPTH,
              "<ul>" + "<li><ol>" * MAX_DEPTH)
    for html in tricks:
        assert too_deep(html) is not None, html
    # Siblings that close each other do not add up, whatever their number.
    assert too_deep("<ul>" + "<li>x" * 5000 + "</ul>" + "<p>y" * 5000) is None
    assert too_deep("<table>" + "<tr><td>a<td>b" * 5000 + "</table>") is None
