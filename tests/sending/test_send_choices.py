"""Sending honours what subscribers chose after their messages were written: a digest goes
only to someone still on the list, a double opt-in confirmation only to someone still waiting
to confirm. Against a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest

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
from pipeline.run import run
from pipeline.state.ledger import open_ledger
from pipeline.state.notices import Notices
from pipeline.state.subscribers import SubscriberBook
from pipeline.subscribers.manage import unsubscribe


def deliveries(site: Path, state: str | None = None) -> list[tuple[str, str, str]]:
    """(address, state, reply) of the digest messages the ledger has outcomes for."""
    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        return [(d.address, d.state, d.reply) for d in ledger.deliveries()
                if state is None or d.state == state]


def notices(site: Path) -> list[tuple[str, str, int]]:
    """(address, state, attempts) of every confirmation in the ledger."""
    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        return [(n.address, n.state, n.attempts) for n in Notices(ledger).all()]


def delivered(site: Path) -> list[bool]:
    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        return [ledger.is_delivered(d.id) for d in ledger.digest_listing()]


def set_status(site: Path, address: str, status: str) -> None:
    with open_ledger(site / ".newsletter") as ledger:
        SubscriberBook(ledger).set_status(address, status, datetime.now(UTC))


@pytest.fixture(name="opt_in")
def opt_in_site(site: Path, port: int) -> Path:
    return opt_in(site, port)


def opt_in(site: Path, port: int) -> Path:
    """A double opt-in site where new@example.org was just added: pending, confirmation queued."""
    use_relay(site, port)
    run(site)  # ada and grace, on the list before double opt-in was turned on
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text() + "\n[subscribers]\ndouble_opt_in = true\n")
    code, out, _ = invoke("subscribers", "add", "new@example.org", "--site", str(site))
    assert code == 0 and "pending" in out
    assert len(outbox_folder(site, "new")) == 1
    return site


def test_an_unsubscribe_after_the_run_withdraws_that_message(written: Path, port: int) -> None:
    with open_ledger(written / ".newsletter") as ledger:  # the one-click POST does this
        assert unsubscribe(ledger, "Grace@Example.org", datetime.now(UTC)) is not None
    inbox = Inbox()
    with smtp_server(inbox, port):
        code, out, _ = invoke("send", "--site", str(written))
        assert code == 0
        assert inbox.recipients() == ["ada@example.org"]
        assert "Sent 1" in out and "1 withdrawn" in out
        (gone,) = outbox_folder(written, "withdrawn")
        assert b"grace@example.org" in (written / "outbox" / "withdrawn" / gone).read_bytes()
        assert outbox_folder(written, "new") == []
        assert deliveries(written, "withdrawn") == [
            ("grace@example.org", "withdrawn", "not sent: grace@example.org is unsubscribed now")]
        again = send(written)  # nothing left, and the digest counts as delivered
        assert (again.due, again.withdrawn) == (0, 0) and len(inbox.received) == 1
    assert delivered(written) == [True]
    _, status, _ = invoke("status", "--site", str(written))
    assert "1 sent, 1 withdrawn" in status


@pytest.mark.parametrize("status", ["bounced", "pending"])
def test_a_message_for_someone_no_longer_active_is_withdrawn(written: Path, port: int,
                                                            status: str) -> None:
    set_status(written, "ada@example.org", status)
    inbox = Inbox()
    with smtp_server(inbox, port):
        report = send(written)
    assert (report.sent, report.withdrawn) == (1, 1)
    assert inbox.recipients() == ["grace@example.org"]


def test_a_cap_counts_only_messages_still_wanted(written: Path, port: int) -> None:
    # Without a cap the list is checked only just before each page goes; with one, the
    # unwanted are withdrawn first, so that the cap's one message is a wanted one.
    set_status(written, "ada@example.org", "unsubscribed")  # ada's message comes first
    inbox = Inbox()
    with smtp_server(inbox, port):
        report = send(written, limit=1)
    assert (report.due, report.sent, report.withdrawn, report.left) == (1, 1, 1, 0)
    assert inbox.recipients() == ["grace@example.org"]


def test_a_message_for_someone_removed_from_the_list_is_erased_not_sent(written: Path,
                                                                        port: int) -> None:
    code, _, _ = invoke("subscribers", "remove", "ada@example.org", "--site", str(written))
    assert code == 0
    assert not any(b"ada@example.org" in (written / "outbox" / "new" / name).read_bytes()
                   for name in outbox_folder(written, "new"))
    inbox = Inbox()
    with smtp_server(inbox, port):
        report = send(written)
    assert inbox.recipients() == ["grace@example.org"]
    assert (report.sent, report.withdrawn, report.missing, report.problems) == (1, 0, [], [])
    assert [address for address, _, _ in deliveries(written)] == ["grace@example.org"]


def test_dry_run_counts_the_withdrawals_and_moves_nothing(written: Path) -> None:
    set_status(written, "ada@example.org", "unsubscribed")
    code, out, _ = invoke("send", "--site", str(written), "--dry-run")
    assert code == 0
    assert "1 message is due" in out and "1 message would be withdrawn" in out
    assert len(outbox_folder(written, "new")) == 2 and outbox_folder(written, "withdrawn") == []


def test_a_withdrawal_interrupted_before_it_was_recorded_is_recorded_once(
        written: Path, port: int) -> None:
    set_status(written, "ada@example.org", "unsubscribed")
    new, withdrawn = written / "outbox" / "new", written / "outbox" / "withdrawn"
    withdrawn.mkdir()
    (ada,) = [n for n in outbox_folder(written, "new") if b"ada@" in (new / n).read_bytes()]
    (new / ada).rename(withdrawn / ada)  # a send killed between the move and the record
    inbox = Inbox()
    with smtp_server(inbox, port):
        report = send(written)
    assert (report.recovered, report.sent, report.problems) == (1, 1, [])
    assert [(address, state) for address, state, _ in deliveries(written)] == [
        ("ada@example.org", "withdrawn"), ("grace@example.org", "sent")]


def test_a_double_opt_in_confirmation_is_sent_with_its_link(opt_in: Path, port: int) -> None:
    inbox = Inbox()
    with smtp_server(inbox, port):
        code, out, err = invoke("send", "--site", str(opt_in))
        assert code == 0, err
        assert "Sent 1" in out and "not in the ledger" not in err
        assert inbox.recipients() == ["new@example.org"]
        message = email.message_from_bytes(inbox.received[0][1], policy=policy.default)
        assert "confirm" in message["Subject"].lower()
        assert re.search(r"https://journal\.example\.org/confirm\?token=\S+",
                         message.get_content())
        assert outbox_folder(opt_in, "new") == [] and len(outbox_folder(opt_in, "sent")) == 1
        assert send(opt_in).due == 0  # sent once
    assert notices(opt_in) == [("new@example.org", "sent", 1)]
    # Confirmed: digests from now on, and no second confirmation.
    set_status(opt_in, "new@example.org", "active")
    write_entry(opt_in, "a.md", markdown_entry())
    assert run(opt_in).written == 3
    assert not any(name.startswith("confirm-") for name in outbox_folder(opt_in, "new"))


def test_a_confirmation_refused_for_now_is_retried_later(opt_in: Path, port: int) -> None:
    inbox = Inbox()
    inbox.rcpt_reply = lambda address: "451 4.7.1 Greylisted, try again later"
    now = datetime.now(UTC)
    with smtp_server(inbox, port):
        assert send(opt_in, now).deferred == 1
        inbox.rcpt_reply = lambda address: None
        assert send(opt_in, now).due == 0  # its retry time has not come
        later = send(opt_in, now.replace(year=now.year + 1))
    assert later.sent == 1 and inbox.recipients() == ["new@example.org"]
    assert notices(opt_in) == [("new@example.org", "sent", 2)]


@pytest.mark.parametrize("status", ["active", "unsubscribed"])
def test_a_confirmation_for_someone_no_longer_pending_is_withdrawn(opt_in: Path, port: int,
                                                                   status: str) -> None:
    set_status(opt_in, "new@example.org", status)  # e.g. confirmed through an earlier link
    inbox = Inbox()
    with smtp_server(inbox, port):
        report = send(opt_in)
    assert (report.sent, report.withdrawn) == (0, 1) and inbox.received == []
    assert len(outbox_folder(opt_in, "withdrawn")) == 1


def test_a_confirmation_the_ledger_never_recorded_is_still_sent(
        site: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # A run killed after the file was durable, or a version that did not queue it.
    with monkeypatch.context() as patch:
        patch.setattr(Notices, "record", lambda *_: None)
        opt_in(site, port)
    assert notices(site) == []
    inbox = Inbox()
    with smtp_server(inbox, port):
        assert send(site).sent == 1
    assert inbox.recipients() == ["new@example.org"]
    assert notices(site) == [("new@example.org", "sent", 1)]


def test_a_confirmation_for_an_address_removed_and_added_again_is_replaced(opt_in: Path,
                                                                           port: int) -> None:
    (first,) = outbox_folder(opt_in, "new")
    site = str(opt_in)
    assert invoke("subscribers", "add", "other@example.org", "--site", site)[0] == 0
    before = set(outbox_folder(opt_in, "new"))
    assert invoke("subscribers", "remove", "new@example.org", "--site", site)[0] == 0
    assert invoke("subscribers", "add", "new@example.org", "--site", site)[0] == 0
    (second,) = set(outbox_folder(opt_in, "new")) - before  # a new id: a new link
    assert first not in outbox_folder(opt_in, "new")  # erased with the address
    inbox = Inbox()
    with smtp_server(inbox, port):
        report = send(opt_in)
    assert (report.sent, report.withdrawn, report.missing) == (2, 0, [])
    assert inbox.recipients() == ["new@example.org", "other@example.org"]
    assert second in outbox_folder(opt_in, "sent")  # its link names the current subscriber
    assert first not in outbox_folder(opt_in, "sent") + outbox_folder(opt_in, "withdrawn")
