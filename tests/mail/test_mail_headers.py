"""Untrusted text never becomes a mail header or a subscriber's own data: hostile titles from
tests/hostile/ and hostile subscriber rows, through a whole `newsletter run`, read back with
the email package."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

from click.testing import CliRunner

from conftest import MESSAGE_HEADERS, html_of, markdown_entry, messages, text_of, write_entry
from pipeline.cli.main import cli

CORPUS = Path(__file__).resolve().parents[1] / "hostile"


def run_with(site: Path, *names: str) -> None:
    for name in names:
        shutil.copy(CORPUS / name, site / "articles" / name)
    result = CliRunner().invoke(cli, ["run", "--site", str(site)], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def header_lines(raw: bytes) -> list[bytes]:
    """The header section's own lines, continuation lines joined to their header."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    return re.split(rb"\r\n(?![ \t])", head)


def test_a_title_cannot_add_headers_to_a_message(site: Path) -> None:
    run_with(site, "header-injection.md")
    for path in sorted((site / "outbox" / "new").glob("*.eml")):
        names = [line.split(b":", 1)[0].decode() for line in header_lines(path.read_bytes())]
        assert names == MESSAGE_HEADERS
    message = messages(site)[0]
    assert list(message.keys()) == MESSAGE_HEADERS
    assert message["Bcc"] is None and message["X-Injected"] is None
    # One line, as typed; the encoded-word look-alike stays text instead of decoding to CR/LF.
    assert str(message["Subject"]) == (
        "Test Clinic Journal: Sleep Bcc: victim@example.net X-Injected: yes "
        "=\u200b?utf-8?q?=0D=0ABcc:_x@example.net?=")


def test_a_subscriber_row_cannot_add_headers_or_break_the_to_header(site: Path) -> None:
    (site / "subscribers.csv").write_text(
        "email,name,categories,status\n"
        '"one@example.org","Evil\r\nBcc: victim@example.net",,active\n'
        '"two@example.org","=?utf-8?q?Evil=0D=0ABcc:_x@example.net?=",,active\n'
        '"three@example.org","Quote "" back\\ comma, <angle> @at; semi",,active\n'
        '"four@example.org","Zoë Ünal-Øster, MD",,active\n'
        '"five@example.org\r\nBcc: victim@example.net",Five,,active\n', encoding="utf-8")
    write_entry(site, "plain.md", markdown_entry())
    result = CliRunner().invoke(cli, ["run", "--site", str(site)])
    assert result.exit_code == 1  # the fifth row's address is rejected, the rest go out
    assert re.search(r"^subscribers\.csv:8: email: .+ — correct the address", result.stderr, re.M)
    to = {}
    for message in messages(site):
        assert list(message.keys()) == MESSAGE_HEADERS
        assert not message.defects
        (address,) = message["To"].addresses
        to[address.addr_spec] = address.display_name
    assert to == {
        "one@example.org": "Evil Bcc: victim@example.net",
        "two@example.org": "=\u200b?utf-8?q?Evil=0D=0ABcc:_x@example.net?=",
        "three@example.org": 'Quote " back\\ comma, <angle> @at; semi',
        "four@example.org": "Zoë Ünal-Øster, MD",
    }


def test_a_non_ascii_title_is_an_encoded_subject_not_a_crash(site: Path) -> None:
    run_with(site, "accented-title.md")
    raw = sorted((site / "outbox" / "new").glob("*.eml"))[0].read_bytes()
    assert raw.isascii()  # 7-bit headers; the parts are quoted-printable
    subject = str(messages(site)[0]["Subject"])
    assert subject == "Test Clinic Journal: Café, Ärzte und Öl — naïve questions"


def test_a_placeholder_typed_in_an_entry_is_not_filled_in(site: Path) -> None:
    run_with(site, "placeholder-in-title.md")
    for message in messages(site):
        address = message["To"].addresses[0].addr_spec
        # Character references decoded, as a reader's client shows them (the HTML is ASCII).
        card = html.unescape(html_of(message)).split("This message was sent to")[0]
        assert address not in card and "unsubscribe?token=" not in card
        assert "Write to @\u2060@EMAIL@\u2060@ or @\u2060@UNSUBSCRIBE_URL@\u2060@" in card
        assert address not in text_of(message).split("This message was sent to")[0]
