"""Public signup through `newsletter serve` (real waitress on loopback): the form, JSON from
the clinic's own site, the same answer for every address, the honeypot and the limits, and
confirmation links that expire."""

from __future__ import annotations

import email
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from click.testing import CliRunner

from conftest import markdown_entry, write_entry
from pipeline.cli.main import cli
from pipeline.run import run
from pipeline.state.ledger import open_ledger
from pipeline.state.subscribers import SubscriberBook
from pipeline.subscribers.link_tokens import confirmation_token
from web_client import request, serving

CLINIC = "https://www.clinic.example"


def configure(site: Path, extra: str) -> None:
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text() + "\n[subscribers]\n" + extra)


@pytest.fixture
def signup_site(site: Path) -> Path:
    write_entry(site, "a.md", markdown_entry(title="First entry", category="Heart Health"))
    write_entry(site, "b.md", markdown_entry(title="Second", date="2026-03-15",
                                             category="Nutrition"))
    configure(site, f'allowed_origins = ["{CLINIC}"]\nsignups_per_client_hour = 100000\n')
    run(site)
    return site


@pytest.fixture
def server(signup_site: Path) -> Iterator[str]:
    with serving(signup_site) as address:
        yield address


def post(server: str, fields: dict[str, object], headers: dict[str, str] | None = None,
         ) -> tuple[int, dict[str, str], str]:
    return request(server, "POST", "/subscribe", urlencode(fields, doseq=True).encode(),
                   headers=headers)


def confirmations(site: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default)
            for p in sorted((site / "outbox" / "new").glob("confirm-*.eml"))]


def link_in(message: email.message.EmailMessage) -> str:
    url = re.search(r"https://\S+", message.get_content()).group(0)
    return "{0.path}?{0.query}".format(urlsplit(url))


def subscriber(site: Path, address: str):
    with open_ledger(site / ".newsletter") as ledger:
        return SubscriberBook(ledger).get(address)


def invoke(site: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [*args, "--site", str(site)])
    return result.exit_code, result.output


def test_the_form_page_offers_address_name_topics_and_a_hidden_honeypot(server: str) -> None:
    code, headers, page = request(server, "GET", "/subscribe")
    assert code == 200 and "text/html" in headers["Content-Type"]
    # A browser then sends its form with our Origin (no-referrer would make it `null`).
    assert headers["Referrer-Policy"] == "same-origin"
    assert 'name="email"' in page and 'name="name"' in page
    assert re.findall(r'name="topics" value="([^"]+)"', page) == ["Heart Health", "Nutrition"]
    assert re.search(r'class="hp"[^>]*>.*name="website"', page, re.S)


def test_a_form_signup_is_pending_until_the_link_is_used_and_keeps_the_consent(
        signup_site: Path, server: str) -> None:
    code, _, page = post(server, {"email": "New.Reader@Example.org", "name": "New Reader",
                                  "topics": ["nutrition", "Bogus"]},
                         {"Referer": "https://journal.example.org/subscribe?x=1",
                          "Origin": "https://journal.example.org"})
    assert code == 200 and "Check your inbox" in page
    who = subscriber(signup_site, "new.reader@example.org")
    assert who.status == "pending" and who.categories == ("Nutrition",)
    (message,) = confirmations(signup_site)
    assert message["To"].addresses[0].addr_spec == "New.Reader@example.org"
    assert message["Subject"] == "Please confirm your subscription to Test Clinic Journal"
    link = link_in(message)
    assert request(server, "GET", link)[0] == 200
    assert subscriber(signup_site, "new.reader@example.org").status == "pending"
    assert request(server, "POST", link, b"confirm=yes")[0] == 200
    assert subscriber(signup_site, "new.reader@example.org").status == "active"
    code, out = invoke(signup_site, "subscribers", "history", "new.reader@example.org")
    assert code == 0
    assert "via signup on https://journal.example.org/subscribe, confirmed" in out
    assert re.search(r"confirmation\s+status: pending -> active", out)
    code, out = invoke(signup_site, "subscribers", "export")
    row = next(line for line in out.splitlines() if line.startswith("New.Reader@"))
    assert ",signup,https://journal.example.org/subscribe," in row
    assert out.splitlines()[0].endswith("consent_at,consent_source,consent_form,confirmed_at")


def test_json_from_an_allowed_origin_with_cors_and_others_refused(signup_site: Path,
                                                                  server: str) -> None:
    code, headers, _ = request(server, "OPTIONS", "/subscribe", headers={
        "Origin": CLINIC, "Access-Control-Request-Method": "POST"})
    assert code == 204 and headers["Access-Control-Allow-Origin"] == CLINIC
    body = json.dumps({"email": "json@example.org", "topics": ["Heart Health"]}).encode()
    code, headers, text = request(server, "POST", "/subscribe", body, "application/json",
                                  {"Origin": CLINIC, "Referer": CLINIC + "/newsletter"})
    assert code == 200 and json.loads(text)["ok"] is True
    assert headers["Access-Control-Allow-Origin"] == CLINIC
    assert subscriber(signup_site, "json@example.org").status == "pending"
    for origin in ("https://evil.example", "null"):
        code, headers, _ = request(server, "POST", "/subscribe", json.dumps(
            {"email": "evil@example.org"}).encode(), "application/json", {"Origin": origin})
        assert code == 403 and "Access-Control-Allow-Origin" not in headers
        assert request(server, "OPTIONS", "/subscribe", headers={"Origin": origin})[0] == 403
    assert subscriber(signup_site, "evil@example.org") is None
    code, _, text = request(server, "POST", "/subscribe", b"[1", "application/json")
    assert code == 400 and json.loads(text)["ok"] is False


def test_the_answer_is_the_same_whoever_the_address_is(signup_site: Path, server: str) -> None:
    invoke(signup_site, "unsubscribe", "grace@example.org")
    with open_ledger(signup_site / ".newsletter") as ledger:
        book = SubscriberBook(ledger)
        book.add(book.get("ada@example.org").__class__("bounced@example.org",
                                                       status="bounced"), datetime.now(UTC))
        book.add(book.get("ada@example.org").__class__("pending@example.org",
                                                       status="pending"), datetime.now(UTC))
    answers = set()
    for address in ("brand.new@example.org", "pending@example.org", "ada@example.org",
                    "grace@example.org", "bounced@example.org"):
        code, headers, page = post(server, {"email": address})
        answers.add((code, page, headers["Content-Length"]))
        json_answer = request(server, "POST", "/subscribe", json.dumps(
            {"email": address}).encode(), "application/json")
        answers.add((json_answer[0], json_answer[2], ""))
    assert len(answers) == 2  # one HTML answer and one JSON answer, for all five
    # Those who left come back only through a confirmation; the active one stays active.
    assert subscriber(signup_site, "grace@example.org").status == "pending"
    assert subscriber(signup_site, "bounced@example.org").status == "pending"
    assert subscriber(signup_site, "ada@example.org").status == "active"
    sent_to = {m["To"].addresses[0].addr_spec for m in confirmations(signup_site)}
    assert sent_to == {"brand.new@example.org", "pending@example.org", "grace@example.org",
                       "bounced@example.org"}


def test_the_honeypot_and_a_bad_address_add_no_one(signup_site: Path, server: str) -> None:
    code, _, page = post(server, {"email": "bot@example.org", "website": "http://spam"})
    assert code == 200 and "Check your inbox" in page
    assert subscriber(signup_site, "bot@example.org") is None
    code, _, page = post(server, {"email": "not an address"})
    assert code == 400 and "does not look like an email address" in page
    assert confirmations(signup_site) == []


def test_a_thousand_signups_for_one_address_send_one_confirmation(signup_site: Path,
                                                                  server: str) -> None:
    codes: list[int] = []

    def flood(count: int) -> None:
        for n in range(count):
            codes.append(post(server, {"email": "victim@example.org", "name": f"n{n}"})[0])

    threads = [threading.Thread(target=flood, args=(125,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(codes) == 1000 and set(codes) == {200}
    assert len(confirmations(signup_site)) == 1
    # ... and across a restart: the limit lives in the ledger.
    with serving(signup_site) as again:
        assert post(again, {"email": "VICTIM@example.org"})[0] == 200
    assert len(confirmations(signup_site)) == 1


def test_one_client_is_limited_per_hour(site: Path) -> None:
    configure(site, "signups_per_client_hour = 3\n")
    run(site)
    with serving(site) as server:
        codes = [post(server, {"email": f"r{n}@example.org"})[0] for n in range(5)]
        code, headers, page = post(server, {"email": "late@example.org"})
    assert codes == [200, 200, 200, 429, 429]
    assert code == 429 and int(headers["Retry-After"]) > 3000 and "try again" in page
    assert subscriber(site, "late@example.org") is None


def test_an_expired_link_is_refused_with_a_page_that_sends_a_new_one(signup_site: Path,
                                                                     server: str) -> None:
    configure_opt_in = signup_site / "newsletter.toml"
    configure_opt_in.write_text(configure_opt_in.read_text().replace(
        "[subscribers]\n", "[subscribers]\ndouble_opt_in = true\n"))
    assert invoke(signup_site, "subscribers", "add", "slow@example.org")[0] == 0
    who = subscriber(signup_site, "slow@example.org")
    old = confirmation_token(b"test-secret-for-this-site-0123456789", who.id, who.email,
                             datetime.now(UTC) - timedelta(days=8))
    code, _, page = request(server, "GET", f"/confirm?token={old}")
    assert code == 410 and "expired" in page
    assert "Nothing has been changed" in page and 'name="resend"' in page
    assert request(server, "POST", f"/confirm?token={old}", b"confirm=yes")[0] == 410
    assert subscriber(signup_site, "slow@example.org").status == "pending"
    before = len(confirmations(signup_site))
    code, _, page = request(server, "POST", f"/confirm?token={old}", b"resend=yes")
    assert code == 200 and "new link" in page
    newest = confirmations(signup_site)
    assert len(newest) == before + 1
    assert request(server, "POST", f"/confirm?token={old}", b"resend=yes")[0] == 200
    assert len(confirmations(signup_site)) == before + 1  # at most one an hour
    fresh = [m for m in newest if link_in(m) != f"/confirm?token={old}"][-1]
    assert request(server, "POST", link_in(fresh), b"confirm=yes")[0] == 200
    assert subscriber(signup_site, "slow@example.org").status == "active"
    forged = old[:-2] + ("AA" if not old.endswith("AA") else "BB")
    assert request(server, "GET", f"/confirm?token={forged}")[0] == 400


def test_a_sites_templates_override_the_pages_and_the_confirmation(signup_site: Path) -> None:
    pages = signup_site / "templates" / "pages"
    pages.mkdir(parents=True)
    (pages / "subscribe_thanks.html.j2").write_text(
        '{% extends "pages/layout.html.j2" %}{% block title %}Merci{% endblock %}'
        "{% block body %}<p>Regardez vos messages, {{ journal.title }}.</p>{% endblock %}")
    (signup_site / "templates" / "confirmation.txt.j2").write_text(
        "Subject: Confirmez {{ journal.title }}\n\nOuvrez {{ confirm_url }}\n")
    with serving(signup_site) as server:
        code, _, page = post(server, {"email": "fr@example.org"})
    assert code == 200 and "Regardez vos messages, Test Clinic Journal." in page
    (message,) = confirmations(signup_site)
    assert message["Subject"] == "Confirmez Test Clinic Journal"
    assert link_in(message).startswith("/confirm?token=")


def test_a_broken_page_template_stops_serve_at_start_naming_the_file(signup_site: Path
                                                                    ) -> None:
    pages = signup_site / "templates" / "pages"
    pages.mkdir(parents=True)
    (pages / "subscribe.html.j2").write_text("{% block body %}{{ nope }}{% endblock %}")
    code, out = invoke(signup_site, "serve", "--port", "0")
    assert code == 78 and "templates/pages/subscribe.html.j2" in out and "nope" in out
