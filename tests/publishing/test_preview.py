"""`newsletter preview`: the next or last digest written to preview/, a real Chromium screenshot
(skipped where Chromium is not installed), and nothing recorded, sent or published."""

from __future__ import annotations

import email
import os
import stat
import sys
import time
from email import policy
from pathlib import Path

import pytest
from PIL import Image

from conftest import invoke, markdown_entry, write_entry
from pipeline.commands.screenshot import CHROMIUM_ENV, find_chromium
from pipeline.state.ledger import LEDGER_NAME

needs_chromium = pytest.mark.skipif(find_chromium() is None, reason="Chromium is not installed")


def snapshot(site: Path) -> dict[str, bytes]:
    """Every file of the site except the preview folder."""
    return {str(p.relative_to(site)): p.read_bytes() for p in sorted(site.rglob("*"))
            if p.is_file() and p.relative_to(site).parts[0] != "preview"}


def test_preview_writes_the_next_digest_and_records_sends_and_publishes_nothing(
        sample_site: Path) -> None:
    before = snapshot(sample_site)
    code, out, err = invoke("preview", "--site", str(sample_site))
    assert code == 0, err
    assert "Preview of the next digest: 9 entries" in out
    html = (sample_site / "preview" / "digest.html").read_text(encoding="utf-8")
    text = (sample_site / "preview" / "digest.txt").read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and "Read the full article" in html
    assert "Hearing Loss and Dementia" in html and "Hearing Loss and Dementia" in text
    # As a subscriber would see it: placeholders filled with a sample reader's values.
    assert "@@" not in html + text
    assert "reader@example.org" in html and "token=PREVIEW" in html and "token=PREVIEW" in text
    assert snapshot(sample_site) == before  # no ledger, no feeds, no outbox, no web copy
    assert not (sample_site / ".newsletter").exists()


def test_preview_then_run_sends_what_the_preview_showed(sample_site: Path) -> None:
    invoke("preview", "--site", str(sample_site))
    previewed = (sample_site / "preview" / "digest.html").read_text(encoding="utf-8")
    assert invoke("run", "--site", str(sample_site))[0] == 0
    path = next((sample_site / "outbox" / "new").glob("*.eml"))
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    address = message["To"].addresses[0].addr_spec
    sent = message.get_body(("html",)).get_content()
    token = sent.split("token=")[1].split('"')[0]
    expected = previewed.replace("reader@example.org", address).replace("PREVIEW", token)
    assert sent.replace("\r\n", "\n") == expected


def test_preview_last_shows_the_digest_that_went_out_and_leaves_the_ledger_alone(
        sample_site: Path) -> None:
    invoke("run", "--site", str(sample_site))
    ledger = sample_site / ".newsletter" / LEDGER_NAME
    before = ledger.read_bytes()
    code, out, err = invoke("preview", "--site", str(sample_site), "--last")
    assert code == 0, err
    assert "Preview of the last digest (#1): 9 entries" in out
    assert ledger.read_bytes() == before
    assert "Hearing Loss and Dementia" in (sample_site / "preview" / "digest.txt").read_text()


def test_preview_with_nothing_new_says_so_and_points_to_last(sample_site: Path) -> None:
    invoke("run", "--site", str(sample_site))
    code, _, err = invoke("preview", "--site", str(sample_site))
    assert code == 1
    assert "nothing new for the next digest" in err and "newsletter preview --last" in err


def test_preview_last_before_any_digest_says_so(sample_site: Path) -> None:
    code, _, err = invoke("preview", "--site", str(sample_site), "--last")
    assert code == 1 and "no digest has been built yet" in err


def test_preview_of_a_big_digest_warns_about_gmail(site: Path) -> None:
    takeaway = "A takeaway sentence long enough to make each card weigh what a real one does. "
    for n in range(40):
        write_entry(site, f"e{n:02d}.md", markdown_entry(
            title=f"Entry {n}", date=f"2026-{3 + n // 28:02d}-{n % 28 + 1:02d}",
            category="Heart Health",
            takeaways=f'["{takeaway * 2}", "{takeaway * 2}", "{takeaway * 2}"]'))
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text().replace("max_articles = 10", "max_articles = 40"))
    code, out, err = invoke("preview", "--site", str(site))
    assert code == 0
    assert "Gmail clips messages over ~102 KB" in err and "digest.max_articles" in err
    assert "40 entries" in out


def test_preview_png_without_chromium_says_how_to_install_it(
        sample_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv(CHROMIUM_ENV, raising=False)
    code, _, err = invoke("preview", "--site", str(sample_site), "--png", str(tmp_path / "x.png"))
    assert code == 1
    assert "no Chromium found" in err and "apt-get install chromium" in err
    assert not (tmp_path / "x.png").exists()
    assert (sample_site / "preview" / "digest.html").is_file()  # the HTML is still there


def _colours(image: Image.Image) -> set[tuple[int, ...]]:
    small = image.convert("RGB").resize((image.width // 4, image.height // 4))
    return {colour for _, colour in small.getcolors(maxcolors=1 << 24) or []}


@needs_chromium
def test_preview_png_is_a_full_page_screenshot_that_is_not_blank(
        sample_site: Path, tmp_path: Path) -> None:
    png = tmp_path / "digest.png"
    code, out, err = invoke("preview", "--site", str(sample_site), "--png", str(png))
    assert code == 0, err
    image = Image.open(png).convert("RGB")
    assert image.width == 600
    assert image.height > 2500  # the whole digest, not one window of it
    assert f"(600 × {image.height} px)" in out
    assert len(_colours(image)) > 100  # text, buttons, cards: not a blank page
    assert image.getpixel((5, 5)) == (0xEE, 0xF2, 0xF5)  # the page background
    assert image.getpixel((5, 300)) == (0xFF, 0xFF, 0xFF)  # a white card
    buttons = sum(1 for y in range(0, image.height, 2)
                  if image.getpixel((40, y)) == (0x0B, 0x5C, 0x8A))
    assert buttons > 9 * 10  # nine blue buttons, each ~40 px tall
    footer = image.crop((0, image.height - 200, image.width, image.height))
    assert len(_colours(footer)) > 5  # the footer text was drawn too


@needs_chromium
def test_preview_png_at_phone_width_is_narrower_and_taller(sample_site: Path,
                                                           tmp_path: Path) -> None:
    wide, narrow = tmp_path / "wide.png", tmp_path / "narrow.png"
    invoke("preview", "--site", str(sample_site), "--png", str(wide))
    code, _, err = invoke("preview", "--site", str(sample_site), "--png", str(narrow),
                            "--width", "375", "--dark")
    assert code == 0, err
    assert "warning" not in err  # nothing wider than the phone
    big, small = Image.open(wide), Image.open(narrow)
    assert small.width == 375 and small.height > big.height
    assert small.convert("RGB").getpixel((5, 5)) == (0x0F, 0x17, 0x20)  # dark mode page


def test_preview_open_hands_the_html_to_the_browser(sample_site: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser"
    browser.write_text(f"#!{sys.executable}\nimport sys\n"
                       f"open({str(opened)!r}, 'w').write(sys.argv[1])\n")
    browser.chmod(browser.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("BROWSER", str(browser))
    code, _, err = invoke("preview", "--site", str(sample_site), "--open")
    assert code == 0, err
    for _ in range(100):  # the browser is started, not waited for
        if opened.exists() and opened.read_text():
            break
        time.sleep(0.05)
    assert opened.read_text() == (sample_site / "preview" / "digest.html").as_uri()


def test_preview_width_outside_320_to_1200_is_a_usage_error(sample_site: Path) -> None:
    code, _, err = invoke("preview", "--site", str(sample_site), "--width", "200")
    assert code == 2 and "--width" in err
    assert not os.path.exists(sample_site / "preview")
