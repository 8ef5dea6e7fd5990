"""The sender's postal address in every digest's footer, and article links a screen reader can
tell apart; checked in real messages from a real run, and in Chromium at 600 and 375 px."""

from __future__ import annotations

from pathlib import Path

import lxml.html
import pytest

from conftest import html_of, invoke, markdown_entry, messages, text_of, use_relay, write_entry
from pipeline.commands.screenshot import find_chromium, screenshot
from pipeline.run import run

ADDRESS = "Test Clinic, 1 High Street, Testbury TB1 1AA, United Kingdom"
LONG_TITLE = ("Sleep, blood pressure and the long night: what eleven randomised trials of "
              "evening routines tell us about mornings")


def with_address(site: Path, value: str = '"""\nTest Clinic\n1 High Street\nTestbury TB1 1AA\n'
                 'United Kingdom\n"""') -> None:
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text().replace("[email]", f"[email]\npostal_address = {value}"))


def test_every_message_carries_the_postal_address(site: Path) -> None:
    with_address(site)
    write_entry(site, "a.md", markdown_entry())
    run(site)
    found = messages(site)
    assert len(found) == 2
    for message in found:
        page = lxml.html.document_fromstring(html_of(message))
        shown = " ".join(page.text_content().split())
        assert ADDRESS in shown
        assert ADDRESS in " ".join(text_of(message).split())
    web_copy = next((site / "public" / "digests").glob("2*.html")).read_text()
    assert ADDRESS in " ".join(lxml.html.document_fromstring(web_copy).text_content().split())


def test_without_an_address_the_footer_has_no_empty_line(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry())
    run(site)
    text = text_of(messages(site)[0])
    assert "\n\n\n" not in text.split("This message was sent to")[1][:40]


def test_check_warns_when_sending_is_set_up_without_an_address(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry())
    assert "postal_address" not in invoke("check", "--site", str(site))[2]  # feeds only: fine
    use_relay(site, 2525)
    code, _, err = invoke("check", "--site", str(site))
    assert code == 0  # a warning, not an error
    assert "warning: email.postal_address: is not set, but sending is (smtp.host)" in err
    assert "CAN-SPAM" in err
    with_address(site, f'"{ADDRESS}"')
    assert "postal_address" not in invoke("check", "--site", str(site))[2]


def test_each_read_link_names_its_article_in_html_and_text(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry(title="First & <best>", date="2026-03-14"))
    write_entry(site, "b.md", markdown_entry(title="Second", date="2026-03-15"))
    run(site)
    message = messages(site)[0]
    page = lxml.html.document_fromstring(html_of(message))
    names = [" ".join(a.text_content().split()) for a in page.iter("a")
             if a.text_content().startswith("Read the full article")]
    assert names == ["Read the full article: Second →", "Read the full article: First & <best> →"]
    text = " ".join(text_of(message).split())
    assert "Read the full article, “First & <best>”:" in text
    assert "Read the full article, “Second”:" in text


@pytest.mark.skipif(find_chromium() is None, reason="Chromium is not installed")
@pytest.mark.parametrize("width", [600, 375])
def test_the_hidden_titles_stay_hidden_in_chromium(site: Path, width: int) -> None:
    with_address(site)
    write_entry(site, "a.md", markdown_entry(title=LONG_TITLE))
    assert invoke("preview", "--site", str(site))[0] == 0
    page = site / "preview" / "digest.html"
    shot = screenshot(page, width)
    assert shot.content_width <= width  # a long hidden title would push the page wider
    # Without the hidden title the page is exactly as tall: it takes no room of its own.
    html = page.read_text()
    start = html.index('<span class="sr-only"')
    end = html.index("</span>", start) + len("</span>")
    bare = page.with_name("bare.html")
    bare.write_text(html[:start] + html[end:])
    assert screenshot(bare, width).height == shot.height
