"""The unsubscribe, preferences and confirmation pages through a real HTTP client, against
`newsletter serve`'s server running on loopback, with the links from real messages."""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from conftest import markdown_entry, write_entry
from pipeline.cli.main import cli
from pipeline.mail.tokens import subscriber_token, unsubscribe_token
from pipeline.run import run
from pipeline.state.ledger import open_ledger
from pipeline.state.subscribers import SubscriberBook
from web_client import request, serving

KEY = b"test-secret-for-this-site-0123456789"  # conftest's NEWSLETTER_SECRET


@pytest.fixture
def published(site: Path) -> Path:
    """A site whose first digest went to ada and grace."""
    write_entry(site, "a.md", markdown_entry(title="First entry", category="Heart Health"))
    write_entry(site, "b.md", markdown_entry(title="Second entry", date="2026-03-15",
                                             category="Nutrition"))
    assert run(site).written == 2
    return site


@pytest.fixture
def server(published: Path) -> Iterator[str]:
    with serving(published) as address:
        yield address


def link_in_message(site: Path, address: str) -> str:
    """The https target of List-Unsubscribe in the address's message, as path?query."""
    for path in (site / "outbox" / "new").glob("digest-*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        if message["To"].addresses[0].addr_spec == address:
            header = " ".join(str(message["List-Unsubscribe"]).split())
            url = re.search(r"<(https://[^>]+)>", header).group(1)
            return "{0.path}?{0.query}".format(urlsplit(url))
    raise AssertionError(f"no message for {address}")


def status_of(site: Path, address: str) -> str:
    with open_ledger(site / ".newsletter") as ledger:
        found = SubscriberBook(ledger).get(address)
    assert found is not None
    return found.status


def recipients_of_newest_digest(site: Path) -> set[str]:
    found = set()
    for path in (site / "outbox" / "new").glob("digest-00002-*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        found.add(message["To"].addresses[0].addr_spec)
    return found


def test_get_shows_a_button_and_does_not_unsubscribe(published: Path, server: str) -> None:
    link = link_in_message(published, "ada@example.org")
    code, headers, page = request(server, "GET", link)
    assert code == 200
    assert '<form method="post"' in page and "<button" in page
    assert "a•••@example.org" in page and "ada@example.org" not in page
    assert "Location" not in headers and "no-store" in headers["Cache-Control"]
    assert status_of(published, "ada@example.org") == "active"


def test_one_click_post_unsubscribes_at_once_without_a_redirect(published: Path,
                                                               server: str) -> None:
    link = link_in_message(published, "ada@example.org")
    code, headers, page = request(server, "POST", link, b"List-Unsubscribe=One-Click")
    assert code == 200 and "Location" not in headers
    assert "You are unsubscribed" in page
    assert status_of(published, "ada@example.org") == "unsubscribed"
    assert status_of(published, "grace@example.org") == "active"
    assert request(server, "POST", link, b"List-Unsubscribe=One-Click")[0] == 200  # repeatable


def test_one_click_post_as_multipart_form_data_unsubscribes(published: Path,
                                                           server: str) -> None:
    # RFC 8058 says the POST SHOULD be multipart/form-data, which is what Gmail sends.
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n"
            b"One-Click\r\n--XyZ--\r\n")
    link = link_in_message(published, "grace@example.org")
    code, _, _ = request(server, "POST", link, body, "multipart/form-data; boundary=XyZ")
    assert code == 200
    assert status_of(published, "grace@example.org") == "unsubscribed"


def test_the_button_on_the_page_unsubscribes(published: Path, server: str) -> None:
    link = link_in_message(published, "ada@example.org")
    _, _, page = request(server, "GET", link)
    action = re.search(r'<form method="post" action="([^"]+)"', page).group(1)
    field = re.search(r'<button type="submit" name="(\w+)" value="(\w+)"', page)
    code, _, _ = request(server, "POST", "/" + action.replace("&amp;", "&"),
                         f"{field.group(1)}={field.group(2)}".encode())
    assert code == 200 and status_of(published, "ada@example.org") == "unsubscribed"


def test_forged_and_damaged_tokens_are_refused_and_change_nothing(published: Path,
                                                                  server: str) -> None:
    with open_ledger(published / ".newsletter") as ledger:
        book = SubscriberBook(ledger)
        ada, grace = book.get("ada@example.org"), book.get("grace@example.org")
    real = subscriber_token(KEY, ada.id, ada.email)
    forged = [
        subscriber_token(b"a guessed secret", ada.id, ada.email),
        f"{grace.id}.{real.split('.')[1]}",  # ada's MAC on grace's id
        real[:-1] + ("A" if real[-1] != "A" else "B"),
        subscriber_token(KEY, ada.id, ada.email, "confirm"),  # another purpose
        "", "1", "../../etc/passwd", "9" * 40 + ".x",
    ]
    for token in forged:
        for method in ("GET", "POST"):
            code, _, page = request(server, method, f"/unsubscribe?token={token}",
                                    b"List-Unsubscribe=One-Click")
            assert code == 400, (token, method)
            assert "does not work" in page and "Nothing has been changed" in page
    assert status_of(published, "ada@example.org") == "active"
    assert status_of(published, "grace@example.org") == "active"


def test_after_unsubscribing_the_next_digest_skips_the_person(published: Path,
                                                             server: str) -> None:
    link = link_in_message(published, "ada@example.org")
    assert request(server, "POST", link, b"List-Unsubscribe=One-Click")[0] == 200
    write_entry(published, "c.md", markdown_entry(title="Third entry", date="2026-03-16"))
    assert run(published).written == 1
    assert recipients_of_newest_digest(published) == {"grace@example.org"}


def test_links_from_before_the_id_token_and_from_a_rotated_secret_still_work(
        published: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", "the-new-secret-after-a-rotation-0123456789")
    monkeypatch.setenv("NEWSLETTER_PREVIOUS_SECRETS", "test-secret-for-this-site-0123456789")
    with serving(published) as server:
        rotated = link_in_message(published, "grace@example.org")  # made with the old secret
        assert request(server, "GET", rotated)[0] == 200
        legacy = unsubscribe_token(KEY, "ada@example.org")  # the first release's
        code, _, _ = request(server, "POST", f"/unsubscribe?token={legacy}",
                             b"List-Unsubscribe=One-Click")
        assert code == 200 and status_of(published, "ada@example.org") == "unsubscribed"
        assert status_of(published, "grace@example.org") == "active"
    monkeypatch.delenv("NEWSLETTER_PREVIOUS_SECRETS")  # rotation over: old links refused
    with serving(published) as server:
        assert request(server, "GET", rotated)[0] == 400


def test_preferences_offer_the_journals_categories_and_shape_the_next_digest(
        published: Path, server: str) -> None:
    link = link_in_message(published, "grace@example.org").replace("/unsubscribe?",
                                                                    "/preferences?")
    code, _, page = request(server, "GET", link)
    assert code == 200
    assert re.findall(r'value="([^"]+)"', page) == ["Heart Health", "Nutrition"]
    code, _, page = request(server, "POST", link, b"category=Nutrition&category=Bogus")
    assert code == 200 and "Saved" in page
    assert re.findall(r'value="([^"]+)" checked', page) == ["Nutrition"]
    with open_ledger(published / ".newsletter") as ledger:
        assert SubscriberBook(ledger).get("grace@example.org").categories == ("Nutrition",)
    write_entry(published, "c.md", markdown_entry(title="More heart", date="2026-03-16",
                                                  category="Heart Health"))
    run(published)
    assert recipients_of_newest_digest(published) == {"ada@example.org"}


def test_every_value_on_a_page_is_escaped(published: Path, server: str) -> None:
    with open_ledger(published / ".newsletter") as ledger:
        book = SubscriberBook(ledger)
        ada = book.get("ada@example.org")
        book.set_categories(ada.id, ['<script>alert("x")</script>', "Tom & Jerry"],
                            datetime.now(UTC))
    token = subscriber_token(KEY, ada.id, ada.email)
    _, _, page = request(server, "GET", f"/preferences?token={token}")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "Tom &amp; Jerry" in page
    code, _, page = request(server, "GET", "/unsubscribe?token=<b>x</b>")
    assert code == 400 and "<b>x</b>" not in page
    assert "http://" not in page and "https://" not in page  # no external assets


def test_unknown_pages_are_404_and_bind_is_loopback(published: Path, server: str) -> None:
    assert request(server, "GET", "/")[0] == 404
    assert request(server, "DELETE", "/unsubscribe")[0] == 405
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert "127.0.0.1" in result.stdout


def test_double_opt_in_activates_only_after_the_confirm_post(published: Path) -> None:
    toml = published / "newsletter.toml"
    toml.write_text(toml.read_text() + "\n[subscribers]\ndouble_opt_in = true\n")
    result = CliRunner().invoke(cli, ["subscribers", "add", "new@example.org", "--site",
                                      str(published)])
    assert result.exit_code == 0 and "pending" in result.stdout
    (confirmation,) = (published / "outbox" / "new").glob("confirm-*.eml")
    message = email.message_from_bytes(confirmation.read_bytes(), policy=policy.default)
    assert message["To"].addresses[0].addr_spec == "new@example.org"
    url = re.search(r"https://\S+", message.get_content()).group(0)
    link = "{0.path}?{0.query}".format(urlsplit(url))
    assert link.startswith("/confirm?token=")
    with serving(published) as server:
        write_entry(published, "c.md", markdown_entry(title="Third entry", date="2026-03-16"))
        run(published)  # pending: no digest for them
        assert "new@example.org" not in recipients_of_newest_digest(published)
        code, _, page = request(server, "GET", link)
        assert code == 200 and "<button" in page
        assert status_of(published, "new@example.org") == "pending"
        unsubscribe_link = link.replace("/confirm?", "/unsubscribe?")
        assert request(server, "POST", unsubscribe_link, b"confirm=yes")[0] == 400
        assert request(server, "POST", link, b"confirm=yes")[0] == 200
        assert status_of(published, "new@example.org") == "active"
