"""Sending the outbox to a real SMTP server on loopback (aiosmtpd, started by each test)."""

from __future__ import annotations

import email
import os
import shutil
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest

from conftest import (
    Inbox,
    add_subscribers,
    invoke,
    markdown_entry,
    outbox_folder,
    smtp_server,
    use_relay,
    write_entry,
)
from pipeline.delivery.folders import OpenFolders
from pipeline.delivery.send import send
from pipeline.mail.outbox_folders import Outbox
from pipeline.run import run
from pipeline.state.ledger import LEDGER_NAME, open_ledger
from pipeline.state.lock import SEND_LOCK_NAME, site_lock
from pipeline.state.subscribers import SubscriberBook


def deliveries(site: Path) -> dict[str, tuple[str, int, str | None, str]]:
    """address → (state, attempts, next attempt, reply), straight from the ledger."""
    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        return {d.address: (d.state, d.attempts,
                            d.next_attempt.isoformat() if d.next_attempt else None, d.reply)
                for d in ledger.deliveries()}


@pytest.mark.parametrize("pipelining", [False, True])
def test_messages_arrive_byte_for_byte_and_move_to_sent(written: Path, port: int,
                                                        pipelining: bool) -> None:
    first = written / "outbox" / "new" / outbox_folder(written, "new")[0]
    # Lines starting with "." must survive SMTP's dot-stuffing (here in the MIME preamble).
    first.write_bytes(first.read_bytes().replace(
        b"\r\n\r\n", b"\r\n\r\n.one dot\r\n..two dots\r\n.\r\n", 1))
    queued = {name: (written / "outbox" / "new" / name).read_bytes()
              for name in outbox_folder(written, "new")}
    inbox = Inbox(pipelining)
    with smtp_server(inbox, port):
        report = send(written)
    assert (report.sent, report.deferred, report.failed) == (2, 0, 0)
    assert inbox.recipients() == ["ada@example.org", "grace@example.org"]
    assert outbox_folder(written, "new") == [] and sorted(queued) == outbox_folder(written, "sent")
    for address, raw in inbox.received:
        message = email.message_from_bytes(raw, policy=policy.default)
        assert message["To"].addresses[0].addr_spec == address
        assert not message.defects
        original = next(data for data in queued.values() if address.encode() in data[:200])
        assert raw == original  # the server parsed exactly what the outbox holds
        theirs = email.message_from_bytes(original, policy=policy.default)
        assert message.get_body(("html",)).get_content() == \
            theirs.get_body(("html",)).get_content()
    recorded = deliveries(written)
    assert {a: (s, n) for a, (s, n, _, _) in recorded.items()} == {
        "ada@example.org": ("sent", 1), "grace@example.org": ("sent", 1)}
    assert all(reply.startswith("250 2.0.0 Ok: queued") for *_, reply in recorded.values())
    _, out, _ = invoke("status", "--site", str(written))
    assert "2 messages written, 2 sent" in out


def test_several_pipelined_connections_driven_in_turn_deliver_each_message_once(
        site: Path, port: int) -> None:
    """One thread steps four connections' messages as their relay answers, each message's
    data followed by the next envelope: refusals and greylisting interleave with accepted
    messages, and every outcome lands on its own."""
    use_relay(site, port, connections=4, retry_after=60)
    addresses = add_subscribers(site, 40)
    write_entry(site, "a.md", markdown_entry())
    run(site)
    inbox, tries = Inbox(pipelining=True), Counter[str]()
    unknown, greylisted = addresses[3], set(addresses[::7]) - {addresses[3]}

    def rcpt(address: str) -> str | None:
        tries[address] += 1
        if address == unknown:
            return "550 5.1.1 No such user"
        return "451 4.7.1 Greylisted" if address in greylisted and tries[address] == 1 else None

    inbox.rcpt_reply = rcpt
    with smtp_server(inbox, port):
        first = send(site)
        assert (first.sent, first.deferred, first.failed) == (40 - 1 - len(greylisted),
                                                               len(greylisted), 1)
        assert first.bouncing == [unknown] and 1 < len(inbox.sessions) <= 4
        later = send(site, datetime.now(UTC) + timedelta(minutes=5))
    assert (later.sent, later.deferred, later.failed) == (len(greylisted), 0, 0)
    received = Counter(inbox.recipients())
    assert set(received) == set(addresses) - {unknown} and set(received.values()) == {1}
    for address, raw in inbox.received:  # each message's bytes went to its own recipient
        assert f"<{address}>".encode() in raw[:2000]


def test_a_421_to_the_data_with_the_next_envelope_behind_it_loses_and_doubles_nothing(
        site: Path, port: int) -> None:
    """With PIPELINING each message's data goes out with the next message's envelope behind
    it: when the relay answers that data with 421 and closes, the next message was not sent
    (only its envelope) and goes on a new connection; the refused one waits for its retry."""
    use_relay(site, port, retry_after=60, connections=1)
    addresses = add_subscribers(site, 8)
    write_entry(site, "a.md", markdown_entry())
    run(site)
    inbox, calls = Inbox(pipelining=True), []

    def close_once(address: str) -> str | None:
        calls.append(address)
        return "421 4.3.0 Closing connection, try later" if len(calls) == 3 else None

    inbox.data_reply = close_once
    with smtp_server(inbox, port):
        report = send(site)
    assert (report.sent, report.deferred, report.failed) == (7, 1, 0)
    received = Counter(inbox.recipients())
    assert set(received) == set(addresses) - {calls[2]} and set(received.values()) == {1}
    assert deliveries(site)[calls[2]][:2] == ("deferred", 1)


def test_one_connection_carries_many_messages(site: Path, port: int) -> None:
    use_relay(site, port, connections=2)
    add_subscribers(site, 30)
    write_entry(site, "a.md", markdown_entry())
    run(site)
    inbox = Inbox()
    with smtp_server(inbox, port):
        assert send(site).sent == 30
    assert len(inbox.received) == 30 and len(inbox.sessions) <= 2


@pytest.mark.parametrize("pipelining", [False, True])
def test_a_server_answering_421_and_451_then_recovering_gets_each_message_once(
        site: Path, port: int, pipelining: bool) -> None:
    use_relay(site, port, retry_after=60, connections=1)
    addresses = add_subscribers(site, 12)
    write_entry(site, "a.md", markdown_entry())
    run(site)
    inbox, tries, calls = Inbox(pipelining), {}, []

    def busy_at_first(address: str) -> str | None:
        calls.append(address)
        tries[address] = tries.get(address, 0) + 1
        if len(calls) == 6:  # closing this connection: nothing of the message was sent yet
            return "421 4.3.2 Service shutting down, try later"
        return "451 4.7.1 Greylisted, try again later" if tries[address] == 1 else None

    inbox.rcpt_reply = busy_at_first
    now = datetime.now(UTC)
    with smtp_server(inbox, port):
        first = send(site, now)
        # The 421 message went again at once on a new connection; greylisting waits.
        assert (first.sent, first.deferred) == (1, 11)
        assert inbox.recipients() == [calls[5]]
        ledger = deliveries(site)
        assert {(s, n) for a, (s, n, _, _) in ledger.items() if a != calls[5]} == {
            ("deferred", 1)}
        assert all(datetime.fromisoformat(t) >= now + timedelta(seconds=59)
                   for _, _, t, _ in ledger.values() if t)
        too_soon = send(site, now + timedelta(seconds=30))  # backoff: not yet
        assert (too_soon.due, too_soon.waiting) == (0, 11)
        later = send(site, now + timedelta(minutes=2))
    assert later.sent == 11
    assert inbox.recipients() == sorted(addresses)  # every one, and each exactly once
    assert len(outbox_folder(site, "sent")) == 12 and not outbox_folder(site, "new")
    assert {s for s, _, _, _ in deliveries(site).values()} == {"sent"}


def statuses(site: Path) -> dict[str, str]:
    """Each subscriber's status on the list in the ledger."""
    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        return {s.email: s.status for s in SubscriberBook(ledger).everyone()}


@pytest.mark.parametrize("pipelining", [False, True])
def test_a_recipient_refused_with_550_fails_alone_and_is_marked_bounced(
        written: Path, port: int, pipelining: bool) -> None:
    inbox = Inbox(pipelining)
    inbox.rcpt_reply = lambda a: "550 5.1.1 <ada@example.org>: Recipient address rejected: " \
        "User unknown" if a.startswith("ada") else None
    with smtp_server(inbox, port):
        code, out, err = invoke("send", "--site", str(written))
    assert code == 1
    assert "Sent 1, deferred 0, failed 1" in out
    assert "failed: ada@example.org: 550 5.1.1" in err and "marked bounced" in err
    assert inbox.recipients() == ["grace@example.org"]
    [failed] = outbox_folder(written, "failed")
    reason = (written / "outbox" / "failed" / f"{failed}.reason").read_text()
    assert "550 5.1.1" in reason and "User unknown" in reason
    assert b"To: Ada Lovelace <ada@example.org>" in (written / "outbox" / "failed" / failed
                                                      ).read_bytes()
    assert statuses(written) == {"ada@example.org": "bounced", "grace@example.org": "active",
                                 "left@example.org": "unsubscribed"}
    assert "1 failed" in invoke("status", "--site", str(written))[1]
    write_entry(written, "b.md", markdown_entry(title="Next one", date="2026-04-02"))
    assert run(written).written == 1  # the next digest goes to grace only


def test_a_message_deferred_too_often_fails_without_marking_the_subscriber(
        written: Path, port: int) -> None:
    toml = written / "newsletter.toml"
    toml.write_text(toml.read_text() + "max_attempts = 2\n")
    inbox = Inbox()
    inbox.data_reply = lambda a: "452 4.2.2 Mailbox full" if a.startswith("ada") else None
    now = datetime.now(UTC)
    with smtp_server(inbox, port):
        assert send(written, now).deferred == 1
        report = send(written, now + timedelta(hours=1))
    assert report.failed == 1 and report.bouncing == []
    assert deliveries(written)["ada@example.org"][3].startswith("gave up after 2 attempts: 452")
    assert statuses(written)["ada@example.org"] == "active"


def test_rate_limit_spaces_messages_and_limit_caps_the_run(site: Path, port: int) -> None:
    use_relay(site, port)
    add_subscribers(site, 12)
    write_entry(site, "a.md", markdown_entry())
    run(site)
    inbox = Inbox()
    with smtp_server(inbox, port):
        began = time.monotonic()
        code, out, _ = invoke("send", "--site", str(site), "--rate", "20/s", "--limit", "8")
        took = time.monotonic() - began
        assert code == 0 and "Sent 8" in out and "4 are over this run's cap" in out
        assert took >= 7 / 20  # 8 messages, 1/20 s apart
        assert len(outbox_folder(site, "new")) == 4
        assert send(site).sent == 4
    assert len(inbox.received) == 12


def test_send_test_mails_the_latest_digest_to_one_address_only(written: Path,
                                                               port: int) -> None:
    state = written / ".newsletter" / LEDGER_NAME
    queued = outbox_folder(written, "new")
    inbox = Inbox()
    with smtp_server(inbox, port):
        code, out, err = invoke("send", "--site", str(written), "--test", "you@example.org")
    assert code == 0, err
    assert "Test message sent to you@example.org" in out
    [(address, raw)] = inbox.received
    message = email.message_from_bytes(raw, policy=policy.default)
    assert address == "you@example.org"
    assert message["Subject"] == "[TEST] Test Clinic Journal: Sleep and blood pressure"
    assert "Sleep and blood pressure" in message.get_body(("html",)).get_content()
    assert outbox_folder(written, "new") == queued and not outbox_folder(written, "sent")
    assert deliveries(written) == {}
    real = (written / "outbox" / "new" / queued[0]).read_bytes()
    assert message["Message-ID"].encode() not in real  # a later real copy is not a duplicate
    assert state.exists()


def test_dry_run_connects_to_nothing_and_changes_nothing(written: Path, port: int) -> None:
    def files() -> list[str]:  # SQLite itself may add the WAL's -shm/-wal files to read it
        return sorted(str(p) for p in written.rglob("*") if "sqlite3-" not in p.name)

    before = files()
    code, out, _ = invoke("send", "--site", str(written), "--dry-run")  # no server listening
    assert code == 0 and "2 messages are due" in out
    assert files() == before and deliveries(written) == {}


def test_send_without_an_smtp_host_says_what_to_add(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry())
    run(site)
    code, _, err = invoke("send", "--site", str(site))
    assert code == 78
    assert "smtp.host: is not set" in err and "[smtp]" in err


def test_an_unreachable_relay_exits_69_and_keeps_every_message(written: Path) -> None:
    code, _, err = invoke("send", "--site", str(written))  # nothing listens on the port
    assert code == 69  # EX_UNAVAILABLE: not 75, which only ever means "locked"
    assert "cannot reach the SMTP relay at 127.0.0.1" in err and "queued for the next send" in err
    assert len(outbox_folder(written, "new")) == 2


def test_a_second_send_is_locked_out_but_a_run_is_not(written: Path) -> None:
    with site_lock(written / ".newsletter", name=SEND_LOCK_NAME):
        code, _, err = invoke("send", "--site", str(written))
        assert code == 75 and "another send" in err
        write_entry(written, "b.md", markdown_entry(title="Meanwhile", date="2026-04-01"))
        assert run(written).written == 2  # feeds and digests go on during a long send


def test_run_with_send_writes_and_sends_in_one_go(site: Path, port: int) -> None:
    use_relay(site, port)
    write_entry(site, "a.md", markdown_entry())
    inbox = Inbox()
    with smtp_server(inbox, port):
        code, out, err = invoke("run", "--site", str(site), "--send")
    assert code == 0, err
    assert "2 messages written" in out and "Sent 2" in out
    assert len(inbox.received) == 2 and not outbox_folder(site, "new")


def test_a_marked_message_changed_since_is_still_sent_byte_for_byte(written: Path, port: int
                                                                    ) -> None:
    # `run` marks a message that has no line starting with "." (SMTP doubles such dots), and
    # send hands a marked file over without searching it. A file changed after it was
    # written loses the mark, even if its size stays the same.
    new = written / "outbox" / "new"
    changed, kept = (new / name for name in outbox_folder(written, "new"))
    raw = changed.read_bytes()
    assert b"\r\n .mj-outlook" in raw  # MJML's line, with the space that keeps it dot-free
    with OpenFolders(Outbox(written / "outbox")) as folders:
        assert folders.read(changed.name) == (raw, True)
        with changed.open("r+b") as f:  # in place: the same file, the same size
            f.seek(raw.index(b"\r\n .mj-outlook"))
            f.write(b"\r\n..mj-outlook")
        later = changed.stat().st_mtime_ns + 1_000_000_000
        os.utime(changed, ns=(later, later))  # changed a second later (the clock's grain)
        copy = new / "copied"
        shutil.copyfile(kept, copy)  # a copy without its extended attributes
        assert folders.read(changed.name)[1] is False and folders.read("copied")[1] is False
        assert folders.read(kept.name)[1] is True
        copy.unlink()
    queued = {name: (new / name).read_bytes() for name in outbox_folder(written, "new")}
    inbox = Inbox(pipelining=True)
    with smtp_server(inbox, port):
        assert send(written).sent == 2
    assert sorted(raw for _, raw in inbox.received) == sorted(queued.values())
