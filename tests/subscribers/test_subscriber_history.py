"""The audit trail: every status or topic change is recorded with its time and source, in the
ledger, and `newsletter subscribers history EMAIL` shows it; no address or token in a detail."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import Inbox, invoke, markdown_entry, smtp_server, write_entry
from pipeline.mail.tokens import subscriber_token
from pipeline.run import run
from pipeline.state.ledger import open_ledger
from pipeline.state.signups import Signups
from pipeline.state.subscribers import SubscriberBook
from web_client import raw, request, serving


def history(site: Path, address: str) -> list[tuple[str, str]]:
    """(source, what) per line of `history`."""
    code, out, _ = invoke("subscribers", "history", address, "--site", str(site))
    assert code == 0, out
    return [(m[1], m[2]) for m in re.finditer(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC  (\S+(?: request)?)\s+(.+)$", out, re.M)]


def token(site: Path, address: str) -> str:
    with open_ledger(site / ".newsletter") as ledger:
        who = SubscriberBook(ledger).get(address)
    return subscriber_token(b"test-secret-for-this-site-0123456789", who.id, who.email)


def test_every_change_is_recorded_with_its_source(site: Path, tmp_path: Path) -> None:
    write_entry(site, "a.md", markdown_entry(category="Sleep"))
    run(site)  # imports subscribers.csv
    with serving(site) as server:
        ada, grace = token(site, "ada@example.org"), token(site, "grace@example.org")
        request(server, "POST", f"/preferences?token={ada}", b"category=Sleep")
        request(server, "POST", f"/unsubscribe?token={ada}", b"List-Unsubscribe=One-Click")
        request(server, "POST", f"/unsubscribe?token={grace}", b"confirm=yes")
    invoke("subscribers", "import", "--reactivate", str(_csv(tmp_path, "ada@example.org,,,"
                                                             "active\n")), "--site", str(site))
    invoke("unsubscribe", "ada@example.org", "--site", str(site))
    requests = tmp_path / "requests.txt"
    requests.write_text("bounce ada@example.org\nunsubscribe new@example.org\n")
    invoke("subscribers", "add", "new@example.org", "--categories", "Nutrition",
           "--site", str(site))
    invoke("subscribers", "process", str(requests), "--site", str(site))
    assert history(site, "ada@example.org") == [
        ("import", "status: (new) -> active (subscribers.csv)"),
        ("page", "topics: (new) -> Sleep"),
        ("one-click", "status: active -> unsubscribed"),
        ("import", "status: unsubscribed -> active (in.csv)"),
        ("cli", "status: active -> unsubscribed"),
        ("bounce", "status: unsubscribed -> bounced"),
    ]
    assert history(site, "grace@example.org")[-1] == ("page", "status: active -> unsubscribed")
    assert history(site, "new@example.org") == [
        ("cli", "status: (new) -> active"), ("mail request", "status: active -> unsubscribed")]
    code, out, _ = invoke("subscribers", "history", "nobody@example.org", "--site", str(site))
    assert code == 1 and "not on the list" in out + _


def test_a_refused_address_is_recorded_as_marked_by_sending(written: Path, port: int) -> None:
    inbox = Inbox()
    inbox.rcpt_reply = lambda a: "550 5.1.1 User unknown" if a.startswith("ada") else None
    with smtp_server(inbox, port):
        invoke("send", "--site", str(written))
    assert history(written, "ada@example.org")[-1] == ("sending", "status: active -> bounced")


def test_no_detail_holds_an_address_or_a_token(site: Path, tmp_path: Path) -> None:
    run(site)
    with serving(site) as server:
        request(server, "POST", "/subscribe", b"email=x%40example.org",
                headers={"Referer": "https://journal.example.org/p/x@example.org?t=1"})
        escape = {"Referer": "https://journal.example.org/\x1b[31mred"}
        assert request(server, "POST", "/subscribe", b"email=e%40example.org",
                       headers=escape)[0] == 400  # waitress refuses control characters
        raw(server, b"POST /subscribe HTTP/1.1\r\nHost: x\r\nReferer: https://journal.example"
            b".org/caf\xc3\xa9 x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 21\r\nConnection: close\r\n\r\nemail=y%40example.org")
        request(server, "POST", "/subscribe", b"email=z%40example.org",
                headers={"Referer": "http://[::1/broken"})
        ada = token(site, "ada@example.org")
        request(server, "POST", f"/unsubscribe?token={ada}", b"List-Unsubscribe=One-Click")
    code, out, _ = invoke("subscribers", "history", "x@example.org", "--site", str(site))
    assert code == 0 and "signup on https://journal.example.org\n" in out
    out = invoke("subscribers", "history", "y@example.org", "--site", str(site))[1]
    assert "signup on https://journal.example.org/caf%C3%83%C2%A9%20x\n" in out
    out = invoke("subscribers", "history", "z@example.org", "--site", str(site))[1]
    assert "signup on https://journal.example.org/subscribe\n" in out
    for address in ("x@example.org", "ada@example.org"):
        lines = invoke("subscribers", "history", address, "--site", str(site))[1].splitlines()
        assert not [line for line in lines[1:] if "@" in line or ada in line]


def _csv(folder: Path, rows: str) -> Path:
    path = folder / "in.csv"
    path.write_text("email,name,categories,status\n" + rows)
    return path


def test_remove_erases_the_trail_with_the_address(site: Path) -> None:
    run(site)
    with serving(site) as server:
        request(server, "POST", "/subscribe", b"email=gone%40example.org")
    assert history(site, "gone@example.org")[0] == ("signup", "status: (new) -> pending")
    assert invoke("subscribers", "remove", "gone@example.org", "--site", str(site))[0] == 0
    with open_ledger(site / ".newsletter") as ledger:
        assert Signups(ledger).claim_confirmation("gone@example.org", datetime.now(UTC),
                                       timedelta(hours=1))  # no note of the last one kept
    invoke("subscribers", "add", "gone@example.org", "--site", str(site))
    assert history(site, "gone@example.org") == [("cli", "status: (new) -> active")]


def test_a_large_import_records_each_new_subscriber_once_with_their_status(
        site: Path, tmp_path: Path) -> None:
    """Several chunks of new rows (their audit rows written a chunk at a time): each
    subscriber added has exactly one row, theirs, with the status the file gave them."""
    rows = "".join(f"r{n:04d}@example.org,,,{'unsubscribed' if n % 7 == 3 else 'active'}\n"
                   for n in range(1_234))
    code, _, _ = invoke("subscribers", "import", str(_csv(tmp_path, rows)), "--site", str(site))
    assert code == 0
    with open_ledger(site / ".newsletter") as ledger:
        book = SubscriberBook(ledger)
        added = [s for s in book.everyone() if s.email.startswith("r")]
        assert len(added) == 1_234
        for s in added:
            status = "unsubscribed" if int(s.email[1:5]) % 7 == 3 else "active"
            assert s.status == status
            assert [(e.change, e.old, e.new, e.source, e.detail)
                    for e in book.history(s.id)] == [("status", "", status, "import", "in.csv")]
