"""Erasure (a data-protection request): after `subscribers remove`, the address and its
unsubscribe token are nowhere in the site folder, the ledger's bytes and its WAL included.
Messages go through a real SMTP server on loopback (aiosmtpd) to fill every outbox folder."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from conftest import (
    Inbox,
    invoke,
    markdown_entry,
    outbox_folder,
    smtp_server,
    use_relay,
    write_entry,
)
from pipeline.delivery.send import send
from pipeline.mail.tokens import subscriber_token
from pipeline.run import run
from pipeline.state.ledger import open_ledger
from pipeline.state.subscribers import SubscriberBook
from pipeline.state.upkeep import erasure_count

ADA, GRACE = "ada@example.org", "grace@example.org"
KEY = b"test-secret-for-this-site-0123456789"  # conftest's NEWSLETTER_SECRET


def traces(site: Path, *needles: str) -> list[str]:
    """Every file under the site whose bytes hold one of the needles (case-insensitive)."""
    wanted = [n.lower().encode() for n in needles]
    return sorted(str(p.relative_to(site)) for p in site.rglob("*") if p.is_file()
                  and any(w in p.read_bytes().lower() for w in wanted))


def set_status(site: Path, address: str, status: str) -> None:
    with open_ledger(site / ".newsletter") as ledger:
        assert SubscriberBook(ledger).set_status(address, status, datetime.now(UTC))


def ada_everywhere(site: Path, port: int) -> str:
    """Ada's messages in every outbox folder (failed with its reason, sent, withdrawn, new)
    and rows in every ledger table that holds addresses; returns her unsubscribe token."""
    use_relay(site, port)
    inbox = Inbox()
    refused = "554 5.7.1 Message refused by policy"
    inbox.data_reply = lambda address: refused if address == ADA else None
    with smtp_server(inbox, port):
        for n, when in enumerate(("2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04")):
            write_entry(site, f"e{n}.md", markdown_entry(title=f"Entry {n}", date=when))
            assert run(site).written == 2
            if n == 0:
                assert send(site).failed == 1  # ada's refused: failed/ and its .reason
                inbox.data_reply = lambda address: None
            elif n == 1:
                assert send(site).sent == 2
            elif n == 2:
                set_status(site, ADA, "unsubscribed")
                assert send(site).withdrawn == 1
                set_status(site, ADA, "active")
            # the fourth digest stays queued in new/
    toml = site / "newsletter.toml"  # and a confirmation queued for her other address
    toml.write_text(toml.read_text() + "\n[subscribers]\ndouble_opt_in = true\n")
    assert invoke("subscribers", "add", "Ada.L@Example.org", "--site", str(site))[0] == 0
    for folder in ("new", "sent", "failed", "withdrawn"):
        assert any(ADA.encode() in (site / "outbox" / folder / name).read_bytes()
                   for name in outbox_folder(site, folder)), folder
    with open_ledger(site / ".newsletter") as ledger:
        ada = SubscriberBook(ledger).get(ADA)
        assert ada is not None and {d.address for d in ledger.deliveries()} == {ADA, GRACE}
    return subscriber_token(KEY, ada.id, ada.email)


def test_an_erased_address_is_nowhere_in_the_site(site: Path, port: int) -> None:
    token = ada_everywhere(site, port)
    found = traces(site, ADA, token)
    assert ".newsletter/state.sqlite3" in found and "subscribers.csv" in found
    assert {name.split("/")[1] for name in found if name.startswith("outbox/")} == {
        "new", "sent", "failed", "withdrawn"}
    (reason,) = (site / "outbox" / "failed").glob("*.reason")
    with open_ledger(site / ".newsletter", read_only=True) as reader:  # keeps the WAL there
        assert reader.digest_count() == 4
        code, out, err = invoke("subscribers", "remove", "ADA@example.org", "--site",
                                str(site))
        assert code == 0, err
        assert "removed ADA@example.org: 8 ledger rows, 5 outbox files, 1 subscribers.csv" \
            in out
        assert (site / ".newsletter" / "state.sqlite3-wal").exists()
        assert traces(site, ADA, token) == []
    assert traces(site, ADA, token) == [] and not reason.exists()
    code, _, _ = invoke("subscribers", "remove", "Ada.L@example.org", "--site", str(site))
    assert code == 0 and traces(site, "ada.l@example.org") == []
    # Grace is untouched; the ledger knows two erasures happened, not whose.
    assert traces(site, GRACE)
    with open_ledger(site / ".newsletter") as ledger:
        assert SubscriberBook(ledger).get(GRACE) is not None
        assert erasure_count(ledger) == 2
        assert ledger.integrity_problems() == []
    # Sending goes on without missing files or messages to her.
    inbox = Inbox()
    with smtp_server(inbox, port):
        report = send(site)
    assert report.problems == [] and report.missing == []
    assert inbox.recipients() == [GRACE]


def test_an_address_not_on_the_list_is_reported(site: Path) -> None:
    code, _, err = invoke("subscribers", "remove", "nobody@example.org", "--site", str(site))
    assert code == 1 and "not on the list" in err


def test_an_erased_address_leaves_the_record_of_returning_mail(site: Path,
                                                               tmp_path: Path) -> None:
    from returning import dsn, returns_rows

    write_entry(site, "a.md", markdown_entry())
    run(site)
    delayed = tmp_path / "delayed.eml"  # counted: Ada stays on the list, her row is kept
    delayed.write_bytes(dsn("journal@example.org", ADA, status="4.2.2", action="delayed",
                            diagnostic="452 4.2.2 Mailbox full"))
    assert invoke("bounces", "process", "--site", str(site), str(delayed))[0] == 0
    assert [row[0] for row in returns_rows(site)] == [ADA]
    assert invoke("subscribers", "remove", ADA, "--site", str(site))[0] == 0
    assert returns_rows(site) == [] and traces(site, ADA) == []


def test_returning_mail_kept_aside_that_names_the_address_is_erased_too(site: Path) -> None:
    from pipeline.core.config import load_config
    from pipeline.subscribers.returns.intake import keep_aside

    run(site)
    config = load_config(site)
    named = keep_aside(config, "a", b"Subject: failure\r\n\r\n550 <Ada@Example.org>: unknown\r\n",
                       "not tied to a current subscriber")
    other = keep_aside(config, "b", b"Subject: failure\r\n\r\n550 <grace@example.org>: gone\r\n",
                       "not tied to a current subscriber")
    assert oct(named.stat().st_mode & 0o777) == "0o600"  # subscribers' addresses: owner only
    code, out, _ = invoke("subscribers", "remove", "ada@example.org", "--site", str(site))
    assert code == 0, out
    assert not named.exists() and not named.with_suffix(".reason").exists()
    assert other.exists()  # another person's mail stays
    assert traces(site, "ada@example.org") == []
