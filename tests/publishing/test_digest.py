"""The digest rendered for real: jinja2 → MJML (mjml-python) → premailer, and the text part."""

from __future__ import annotations

import re
from pathlib import Path

import lxml.html
import pytest

from conftest import NOW, articles_of, markdown_entry, write_entry, write_template
from pipeline.core.config import Config
from pipeline.core.errors import TemplateError
from pipeline.core.models import Article
from pipeline.publishing.digest import DISCLAIMER, PLACEHOLDERS, render_digest
from pipeline.publishing.templates import WIDTH

URL_LINE = re.compile(r"^\s*(https?://|mailto:|@@UNSUBSCRIBE_URL@@)\S*$")


def digest_of(site: Path) -> tuple[Config, list[Article], str, str]:
    config, articles = articles_of(site)
    html, text = render_digest(articles, NOW, config)
    return config, articles, html, text


@pytest.fixture
def rendered(sample_site: Path) -> tuple[Config, list[Article], str, str]:
    return digest_of(sample_site)


def document(html: str) -> lxml.html.HtmlElement:
    return lxml.html.document_fromstring(html)


def visible_text(html: str) -> str:
    body = document(html).find("body")
    assert body is not None
    return " ".join(body.text_content().split())


def shown_text(a: lxml.html.HtmlElement) -> str:
    """A link's text as it looks: without what is there for screen readers only."""
    copy = lxml.html.fromstring(lxml.html.tostring(a))
    for hidden in copy.find_class("sr-only"):
        hidden.drop_tree()
    return " ".join(copy.text_content().split())


def style_blocks(html: str) -> list[str]:
    return [style.text or "" for style in document(html).iter("style")]


# --- HTML --------------------------------------------------------------------------------------

def test_html_starts_with_the_doctype_and_declares_the_language(rendered) -> None:
    _, _, html, _ = rendered
    assert html.startswith("<!doctype html>")
    assert html.lower().count("<!doctype") == 1
    assert '<html lang="en"' in html


def test_each_title_links_to_its_article(rendered) -> None:
    _, articles, html, _ = rendered
    anchors = [(a.get("href"), " ".join(a.text_content().split()))
               for a in document(html).iter("a")]
    shown = [(a.get("href"), shown_text(a)) for a in document(html).iter("a")]
    for article in articles:
        assert (article.url, article.title) in anchors, article.slug
        assert (article.url, "Read the full article →") in shown, article.slug
        # ... and to a screen reader each link names its article (the arrow is decoration)
        assert (article.url, f"Read the full article: {article.title} →") in anchors
    buttons = [a for a in document(html).iter("a") if a.find_class("sr-only")]
    assert len(buttons) == len(articles)
    for a in buttons:
        [arrow] = [s for s in a.iter("span") if s.get("aria-hidden") == "true"]
        assert arrow.text == "→"


def test_each_card_shows_category_date_read_time_and_every_takeaway(rendered) -> None:
    _, articles, html, _ = rendered
    text = visible_text(html)
    for article in articles:
        assert article.category and article.category in text
        assert f"{article.date_label} · {article.read_minutes} min read" in text
        assert article.takeaways
        for takeaway in article.takeaways:
            assert " ".join(takeaway.split()) in text, takeaway
    assert text.count("Read the full article") == len(articles) == 9
    list_items = [" ".join(li.text_content().split()) for li in document(html).iter("li")]
    assert list_items == [t for a in articles for t in a.takeaways]


def test_html_has_the_disclaimer_and_the_unsubscribe_placeholder(rendered) -> None:
    _, _, html, _ = rendered
    assert DISCLAIMER in visible_text(html)
    hrefs = [a.get("href") for a in document(html).iter("a")]
    assert PLACEHOLDERS["unsubscribe_url"] in hrefs
    unsubscribe = next(a for a in document(html).iter("a")
                       if a.get("href") == PLACEHOLDERS["unsubscribe_url"])
    assert unsubscribe.text_content().strip() == "Unsubscribe"
    assert PLACEHOLDERS["email"] in visible_text(html)


def test_html_loads_no_web_fonts(rendered) -> None:
    _, _, html, _ = rendered
    assert "fonts.googleapis" not in html
    assert "@import" not in html
    assert not [link for link in document(html).iter("link")]
    assert "<link" not in html.lower()


def test_css_is_inlined_while_media_rules_and_important_stay_in_style(rendered) -> None:
    _, _, html, _ = rendered
    doc = document(html)
    # The template's class rules reach the elements themselves.
    category = [el for el in doc.iter() if "category" in (el.get("class") or "").split()]
    assert category and all("text-transform:uppercase" in el.get("style", "").replace(" ", "")
                            for el in category)
    links = list(doc.iter("a"))
    assert links and all("color" in (a.get("style") or "") for a in links)
    styled = [el for el in doc.iter() if el.get("style")]
    assert len(styled) > 50
    blocks = "\n".join(style_blocks(html))
    assert "@media" in blocks
    assert "prefers-color-scheme: dark" in blocks
    assert "!important" in blocks
    dark = re.search(r"@media \(prefers-color-scheme: dark\)\s*\{(.*?)\}\s*\}", blocks, re.S)
    assert dark and dark.group(1).count("!important") >= 2


def test_layout_tables_are_presentation_only(rendered) -> None:
    _, _, html, _ = rendered
    tables = list(document(html).iter("table"))
    assert tables
    assert all(t.get("role") == "presentation" for t in tables)


def test_a_title_with_a_script_tag_is_escaped(site: Path) -> None:
    title = "<script>alert('x')</script> & <b>bold</b> claims"
    write_entry(site, "evil.md", markdown_entry(title=title, category='"<i>Cat</i> & dog"'))
    _, articles, html, text = digest_of(site)
    assert articles[0].title == title
    assert "<script" not in html.lower()
    assert "<b>bold" not in html and "<i>Cat" not in html
    title_links = [a for a in document(html).iter("a") if a.get("href") == articles[0].url]
    assert " ".join(title_links[0].text_content().split()) == title
    assert "<i>Cat</i> & dog" in visible_text(html)
    assert title in text  # the text part is plain text: shown as written, not escaped


# --- text --------------------------------------------------------------------------------------

def test_text_lines_fit_in_72_columns_except_bare_urls(rendered) -> None:
    _, _, _, text = rendered
    assert WIDTH == 72
    long = [line for line in text.splitlines() if len(line) > WIDTH and not URL_LINE.match(line)]
    assert long == []


def test_text_lines_fit_even_with_long_titles_and_takeaways(site: Path) -> None:
    write_entry(site, "long.md", markdown_entry(
        title="A very long title " * 8, category="Category",
        takeaways='["' + "A long takeaway sentence with many words in it. " * 8 + '"]'))
    _, _, _, text = digest_of(site)
    long = [line for line in text.splitlines() if len(line) > WIDTH and not URL_LINE.match(line)]
    assert long == []


def test_a_long_link_in_a_takeaway_is_never_broken(site: Path) -> None:
    url = "https://example.org/reviews/" + "a-very-long-path-segment-" * 4 + "end"
    write_entry(site, "link.md", markdown_entry(
        title="Links", takeaways=f'["See the review at {url} for the detail of it all."]'))
    _, _, _, text = digest_of(site)
    assert url in text.splitlines() or f"    {url}" in text.splitlines()
    long = [line for line in text.splitlines() if len(line) > WIDTH and not URL_LINE.match(line)]
    assert long == []


def test_text_writes_every_link_out(rendered) -> None:
    config, articles, _, text = rendered
    lines = [line.strip() for line in text.splitlines()]
    for article in articles:
        assert article.url in text
        assert any(line.endswith(article.url) for line in lines)
    assert any(line.endswith(PLACEHOLDERS["unsubscribe_url"]) for line in lines)
    assert config.site_url in text
    assert PLACEHOLDERS["email"] in text


def _bullets(text: str) -> list[str]:
    items: list[str] = []
    for line in text.splitlines():
        if line.startswith("  * "):
            items.append(line[4:])
        elif line.startswith("    ") and items:
            items[-1] += " " + line.strip()
    return items


def test_text_takeaways_are_star_bullets(rendered) -> None:
    _, articles, _, text = rendered
    assert _bullets(text) == [t for a in articles for t in a.takeaways]


def test_text_has_titles_categories_dates_and_disclaimer(rendered) -> None:
    _, articles, _, text = rendered
    flat = " ".join(text.split())
    for article in articles:
        assert article.title in flat
        assert article.category.upper() in text
        assert f"{article.date_label} · {article.read_minutes} min read" in text
    assert DISCLAIMER in flat
    assert "\n\n\n" not in text and text.endswith("\n") and not text.endswith("\n\n")
    assert all(line == line.rstrip() for line in text.splitlines())


# --- templates ---------------------------------------------------------------------------------

def test_a_site_text_template_overrides_the_default(site: Path) -> None:
    write_entry(site, "one.md", markdown_entry(title="Only entry"))
    write_template(site, "digest.txt.j2",
        "OUR OWN TEXT for {{ journal.title }}\n"
        "{% for article in articles %}- {{ article.title }} {{ article.url }}\n{% endfor %}"
        "Unsubscribe: {{ unsubscribe_url }}\n", encoding="utf-8")
    _, articles, html, text = digest_of(site)
    assert text == ("OUR OWN TEXT for Test Clinic Journal\n"
                    f"- Only entry {articles[0].url}\n"
                    f"Unsubscribe: {PLACEHOLDERS['unsubscribe_url']}\n")
    assert "Only entry" in visible_text(html)  # the HTML template is still the default


def test_a_site_html_template_overrides_the_default(site: Path) -> None:
    write_entry(site, "one.md", markdown_entry(title="Only entry"))
    write_template(site, "digest.mjml.j2",
        "<mjml><mj-body><mj-section><mj-column>"
        "{% for article in articles %}<mj-text>OURS: {{ article.title }}</mj-text>{% endfor %}"
        '<mj-text><a href="{{ unsubscribe_url }}">Leave</a></mj-text>'
        "</mj-column></mj-section></mj-body></mjml>\n", encoding="utf-8")
    _, _, html, _ = digest_of(site)
    assert "OURS: Only entry" in visible_text(html)
    assert "Read the full article" not in html
    assert html.startswith("<!doctype html>")


def test_a_template_naming_a_web_font_still_loads_no_fonts(site: Path) -> None:
    write_entry(site, "one.md", markdown_entry(title="Only entry"))
    write_template(site, "digest.mjml.j2",
        '<mjml><mj-head><mj-attributes><mj-all font-family="Roboto, Open Sans, Arial" />'
        "</mj-attributes></mj-head><mj-body><mj-section><mj-column>"
        "<mj-text>{{ articles[0].title }}</mj-text></mj-column></mj-section></mj-body></mjml>\n",
        encoding="utf-8")
    _, _, html, _ = digest_of(site)
    assert "Roboto" in html and "Only entry" in visible_text(html)
    assert "fonts.googleapis" not in html and "@import" not in html
    assert "<link" not in html.lower()


@pytest.mark.parametrize(("name", "source", "line", "words"), [
    ("digest.txt.j2", "Line one\nLine two\n{% for a in articles %}\n{{ a.title }\n", 4, None),
    ("digest.txt.j2", "Line one\n\n{{ no_such_value }}\n", 3, "no_such_value"),
    ("digest.txt.j2", "{% for a in articles %}\n{{ a.title }}\n{{ a.nope.deeper }}\n"
                      "{% endfor %}\n", 3, "nope"),
    ("digest.mjml.j2", "<mjml>\n<mj-body>\n{% if %}\n</mj-body></mjml>\n", 3, None),
    ("digest.mjml.j2", "<mjml><mj-body>\n\n\n<mj-text>{{ missing }}</mj-text>\n"
                       "</mj-body></mjml>\n", 4, "missing"),
])
def test_a_broken_template_override_raises_template_error_with_name_and_line(
        site: Path, name: str, source: str, line: int, words: str | None) -> None:
    write_entry(site, "one.md", markdown_entry(title="Only entry"))
    write_template(site, name, source, encoding="utf-8")
    config, articles = articles_of(site)
    with pytest.raises(TemplateError) as caught:
        render_digest(articles, NOW, config)
    message = str(caught.value)
    assert message.startswith(f"templates/{name}:{line}:"), message  # the site's own file
    if words:
        assert words in message


def test_mjml_that_does_not_compile_raises_template_error(site: Path) -> None:
    write_entry(site, "one.md", markdown_entry(title="Only entry"))
    write_template(site, "digest.mjml.j2",
        "<mjml><mj-body><mj-text>a < b</mj-text></mj-body>\n", encoding="utf-8")
    config, articles = articles_of(site)
    with pytest.raises(TemplateError, match=r"digest\.mjml\.j2"):
        render_digest(articles, NOW, config)


def test_rendering_is_deterministic(sample_site: Path) -> None:
    first = digest_of(sample_site)[2:]
    assert digest_of(sample_site)[2:] == first
