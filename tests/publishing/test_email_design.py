"""The digest as mail clients show it: one column, system fonts, explicit colours and a dark
palette, real buttons, a "View in browser" link, no tracking, and a size Gmail will not clip.
Layout checks that need a browser run in headless Chromium and are skipped without it."""

from __future__ import annotations

import re
from pathlib import Path

import lxml.html
import pytest
from PIL import Image

from conftest import NOW, markdown_entry, write_entry
from pipeline.commands.screenshot import find_chromium, screenshot
from pipeline.core.config import load_config
from pipeline.entries.collect import collect_articles
from pipeline.entries.summarise import summarise
from pipeline.publishing.digest import GMAIL_CLIP, PLACEHOLDERS, render_digest, size_problems

needs_chromium = pytest.mark.skipif(find_chromium() is None, reason="Chromium is not installed")
TAKEAWAY = ("Regular, progressive exercise reduces pain and improves function about as much "
            "as many pain medicines do, and it is safe for the joint over the long term.")


def rendered(site: Path) -> tuple[list, str, str]:
    config = load_config(site)
    found, problems = collect_articles(config, NOW)
    assert problems == []
    articles = [summarise(a) for a in found[: config.max_articles]]
    html, text = render_digest(articles, NOW, config)
    return articles, html, text


@pytest.fixture
def digest(sample_site: Path) -> tuple[list, str, str]:
    return rendered(sample_site)


def doc(html: str) -> lxml.html.HtmlElement:
    return lxml.html.document_fromstring(html)


def style_of(element: lxml.html.HtmlElement) -> str:
    return (element.get("style") or "").replace(" ", "").lower()


def ten_long_entries(site: Path, count: int = 10) -> None:
    for n in range(count):
        write_entry(site, f"e{n:02d}.md", markdown_entry(
            title=f"Entry {n}: a long title about sleep, blood pressure and what trials say",
            date=f"2026-{3 + n // 28:02d}-{n % 28 + 1:02d}", category="Heart Health",
            takeaways=f'["{TAKEAWAY}", "{TAKEAWAY}", "{TAKEAWAY}"]'))


# --- structure ---------------------------------------------------------------------------------

def test_layout_is_a_single_column_at_most_600px_wide(digest) -> None:
    _, html, _ = digest
    columns = set(re.findall(r"mj-column-per-(\d+)", html))
    assert columns == {"100"}  # every section is one full-width column
    widths = {int(w) for w in re.findall(r"max-width:\s*(\d+)px", html)}
    assert widths and max(widths) == 600
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html


def test_fonts_are_the_system_stack(digest) -> None:
    _, html, _ = digest
    families = {style.split("font-family:")[1].split(";")[0]
                for style in re.findall(r'style="([^"]*font-family:[^"]*)"', html)}
    assert families
    for family in families:
        assert "-apple-system" in family and "Segoe UI" in family
        assert family.rstrip().endswith("sans-serif")
    assert "<link" not in html.lower() and "@import" not in html and "@font-face" not in html


def _nearest(element: lxml.html.HtmlElement, prop: str) -> str | None:
    for el in (element, *element.iterancestors()):
        if el.tag == "body":
            return None
        match = re.search(rf"(?:^|;){prop}:([^;]+)", style_of(el))
        if match:
            return match.group(1)
    return None


def test_every_visible_text_has_an_explicit_colour_on_an_explicit_background(digest) -> None:
    _, html, _ = digest
    body = doc(html).find("body")
    assert body is not None and "background-color:#eef2f5" in style_of(body)
    texts = [el for el in body.iter() if isinstance(el.tag, str) and (el.text or "").strip()
             and "display:none" not in style_of(el)]
    assert len(texts) > 50
    for el in texts:
        colour = _nearest(el, "color")
        background = _nearest(el, "background-color") or _nearest(el, "background")
        assert colour and colour.startswith("#"), (el.tag, el.text)
        assert background and background.startswith("#"), (el.tag, el.text)


def test_dark_mode_is_declared_and_styles_every_kind_of_text(digest) -> None:
    _, html, _ = digest
    page = doc(html)
    metas = {m.get("name"): m.get("content") for m in page.iter("meta")}
    assert metas["color-scheme"] == "light dark"
    assert metas["supported-color-schemes"] == "light dark"
    styles = "\n".join(s.text or "" for s in page.iter("style"))
    dark = styles[styles.index("@media (prefers-color-scheme: dark)"):]
    for selector in (".card", ".page div", ".page a", ".title a", ".button a", ".muted"):
        rule = dark[dark.index(selector):].split("}")[0]
        assert "!important" in rule, selector  # beats the inlined light colours


# --- links, buttons, images --------------------------------------------------------------------

def test_read_buttons_are_bulletproof_table_buttons(digest) -> None:
    articles, html, _ = digest
    buttons = [a for a in doc(html).iter("a")
               if " ".join(a.text_content().split()).startswith("Read the full article")]
    assert [a.get("href") for a in buttons] == [a.url for a in articles]
    for a in buttons:
        cell = a.getparent()
        assert cell.tag == "td" and cell.get("bgcolor") == "#0b5c8a"
        assert "display:inline-block" in style_of(a) and "padding:10px18px" in style_of(a)
        assert "background:#0b5c8a" in style_of(a)
        assert re.search(r"(^|;)color:#fff(fff)?(;|$)", style_of(a))  # white on blue
        assert next(cell.iterancestors("table")).get("role") == "presentation"


def test_view_in_browser_leads_to_the_digests_web_copy(digest) -> None:
    articles, html, text = digest
    expected = f"https://journal.example.org/digests/2026-11-25-{articles[0].slug}.html"
    links = [a.get("href") for a in doc(html).iter("a")
             if a.text_content().strip() == "View in browser"]
    assert links and set(links) == {expected}
    assert text.splitlines()[3:5] == ["View this digest in your browser:", expected]


def test_no_tracking_pixel_and_every_link_goes_straight_to_its_page(digest) -> None:
    articles, html, _ = digest
    page = doc(html)
    assert list(page.iter("img")) == []  # no logo configured: no image at all
    allowed = {a.url for a in articles} | {PLACEHOLDERS["unsubscribe_url"]}
    for a in page.iter("a"):
        href = a.get("href") or ""
        assert href in allowed or href.startswith("https://journal.example.org/"), href
        assert "?" not in href or href == PLACEHOLDERS["unsubscribe_url"], href  # no utm_…


def test_a_configured_logo_has_width_height_and_alt(sample_site: Path) -> None:
    toml = sample_site / "newsletter.toml"
    toml.write_text(toml.read_text().replace(
        "[email]\n", '[email]\nlogo_url = "https://journal.example.org/logo.png"\n'
        "logo_width = 180\nlogo_height = 40\n"))
    _, html, _ = rendered(sample_site)
    images = list(doc(html).iter("img"))
    assert len(images) == 1
    logo = images[0]
    assert logo.get("src") == "https://journal.example.org/logo.png"
    assert (logo.get("width"), logo.get("height")) == ("180", "40")
    assert logo.get("alt") == "Test Clinic Journal"
    assert "height:40px" in style_of(logo)


# --- size --------------------------------------------------------------------------------------

def test_a_ten_entry_digest_stays_well_under_100_kb(site: Path) -> None:
    ten_long_entries(site)
    articles, html, _ = rendered(site)
    assert len(articles) == 10 and all(len(a.takeaways) == 3 for a in articles)
    assert len(html.encode()) < 100_000
    assert size_problems(html, load_config(site)) == []


def test_past_the_budget_the_warning_names_the_budget_and_the_fix(site: Path) -> None:
    ten_long_entries(site, 3)
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text().replace("max_articles = 10",
                                             "max_articles = 10\nsize_budget_kb = 5"))
    _, html, _ = rendered(site)
    [problem] = size_problems(html, load_config(site))
    assert problem.warning
    assert "digest.size_budget_kb (5 KB)" in str(problem)
    assert "digest.max_articles" in str(problem) and "takeaways" in str(problem)


def test_past_gmails_clip_the_run_warns_and_still_sends(site: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli.main import cli

    ten_long_entries(site, 34)  # past Gmail's clip with room to spare
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text().replace("max_articles = 10", "max_articles = 34"))
    result = CliRunner().invoke(cli, ["run", "--site", str(site)])
    assert result.exit_code == 0, result.stderr
    assert "Gmail clips messages over ~102 KB" in result.stderr
    assert "lower digest.max_articles or shorten the entries' takeaways" in result.stderr
    assert "2 messages written" in result.stdout
    sent = next((site / "outbox" / "new").glob("*.eml")).read_bytes()
    assert len(sent) > GMAIL_CLIP


def test_check_warns_about_a_digest_gmail_would_clip_without_failing(site: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli.main import cli

    ten_long_entries(site, 34)  # past Gmail's clip with room to spare
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text().replace("max_articles = 10", "max_articles = 34"))
    result = CliRunner().invoke(cli, ["check", "--site", str(site)])
    assert result.exit_code == 0
    assert "warning: size:" in result.stderr and "Gmail clips" in result.stderr
    assert not (site / "outbox").exists()


# --- in a browser ------------------------------------------------------------------------------

@needs_chromium
def test_the_digest_fits_320_375_and_600_px_without_sideways_scrolling(
        sample_site: Path, tmp_path: Path) -> None:
    _, html, _ = rendered(sample_site)
    page = tmp_path / "digest.html"
    page.write_text(html, encoding="utf-8")
    heights = {}
    for width in (320, 375, 600):
        shot = screenshot(page, width)
        assert shot.content_width == width, f"{shot.content_width} px wide at {width} px"
        heights[width] = shot.height
    assert heights[320] > heights[375] > heights[600]  # text rewraps: it is fluid


def _luminance(pixel: tuple[int, ...]) -> float:
    r, g, b = pixel[:3]
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


@needs_chromium
def test_in_dark_mode_the_card_text_is_light_on_dark(sample_site: Path, tmp_path: Path) -> None:
    _, html, _ = rendered(sample_site)
    page = tmp_path / "digest.html"
    page.write_text(html, encoding="utf-8")
    shot = screenshot(page, 600, dark=True)
    (tmp_path / "dark.png").write_bytes(shot.png)
    image = Image.open(tmp_path / "dark.png").convert("RGB")
    card = (0x1F, 0x29, 0x33)
    card_rows = [y for y in range(image.height) if image.getpixel((8, y)) == card]
    assert len(card_rows) > image.height / 2  # the cards turned dark
    light = sum(1 for y in card_rows[::3] for x in range(24, 576, 2)
                if _luminance(image.getpixel((x, y))) > 0.6)
    assert light > 2000, light  # titles and takeaways are light text on them


@pytest.mark.parametrize(("line", "key", "words"), [
    ('logo_url = "logo.png"', "email.logo_url", "not an absolute URL"),
    ("logo_width = 0", "email.logo_width", "whole number of 1 or more"),
    ("size_budget_kb = -5", "digest.size_budget_kb", "whole number of 1 or more"),
])
def test_a_bad_design_setting_is_a_config_error_naming_the_key(
        site: Path, line: str, key: str, words: str) -> None:
    from pipeline.core.errors import ConfigError

    table = key.split(".")[0]
    toml = site / "newsletter.toml"
    text = toml.read_text()
    toml.write_text(text.replace(f"[{table}]\n", f"[{table}]\n{line}\n"))
    with pytest.raises(ConfigError) as caught:
        load_config(site)
    assert any(p.field == key and words in p.problem for p in caught.value.problems)
