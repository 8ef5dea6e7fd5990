"""A refusal that is the relay's, not the mailbox's, never marks a subscriber or fails a
message: real aiosmtpd relays on loopback that deny relaying, advertise a small SIZE, or
rate-limit; then the same relay fixed sends everything exactly once."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from aiosmtpd.smtp import Envelope, Session
from test_send import deliveries, statuses

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
from pipeline.delivery.pool import refusal_key
from pipeline.delivery.send import send
from pipeline.delivery.smtp_replies import RelayBusy, RelaySetupError, refusal
from pipeline.run import run

COUNT = 20


class Relay(Inbox):
    """An Inbox that may also answer MAIL FROM with a refusal."""

    def __init__(self, pipelining: bool = False) -> None:
        super().__init__(pipelining)
        self.mail_reply = lambda: None
        self.mails = 0

    async def handle_MAIL(self, server: object, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        self.mails += 1
        reply = self.mail_reply()
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"


@pytest.fixture
def listed(site: Path, port: int) -> list[str]:
    """COUNT active subscribers with one digest queued, the relay at 127.0.0.1:port."""
    use_relay(site, port, retry_after=0.1)
    addresses = add_subscribers(site, COUNT)
    write_entry(site, "a.md", markdown_entry())
    assert run(site).written == COUNT
    return addresses


def nothing_spent(site: Path) -> None:
    """Every message still queued as it was written: no failed file, no mark, no attempt."""
    assert len(outbox_folder(site, "new")) == COUNT
    assert outbox_folder(site, "failed") == [] and outbox_folder(site, "sent") == []
    assert set(statuses(site).values()) == {"active"}
    assert all(attempts == 0 for _, attempts, _, _ in deliveries(site).values())


def all_sent_once(site: Path, port: int, addresses: list[str], inbox: Inbox) -> None:
    """The relay is fixed: the next send delivers every message once."""
    fixed = Inbox()
    with smtp_server(fixed, port):
        code, out, _ = invoke("send", "--site", str(site))
    assert code == 0, out
    got = Counter(a for a, _ in fixed.received) + Counter(a for a, _ in inbox.received)
    assert sorted(got) == sorted(addresses) and set(got.values()) == {1}
    assert outbox_folder(site, "failed") == [] and len(outbox_folder(site, "sent")) == COUNT
    assert set(statuses(site).values()) == {"active"}


@pytest.mark.parametrize("reply", [
    "554 5.7.1 <{a}>: Relay access denied",
    "554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied",
    "554 <{a}>: Relay access denied",  # no enhanced status: the words say it
])
@pytest.mark.parametrize("pipelining", [False, True])
def test_a_relay_that_denies_every_recipient_stops_the_send_with_all_queued(
        site: Path, port: int, listed: list[str], reply: str, pipelining: bool) -> None:
    relay = Relay(pipelining)
    relay.rcpt_reply = lambda address: reply.format(a=address)
    with smtp_server(relay, port):
        code, out, err = invoke("send", "--site", str(site))
    assert code == 78, (out, err)
    assert "Relay access denied" in err or "Client host rejected" in err
    assert "mynetworks" in err and "stay queued" in err
    assert relay.received == []
    nothing_spent(site)
    all_sent_once(site, port, listed, relay)


def test_the_same_unexplained_refusal_for_several_recipients_in_a_row_stops_the_send(
        site: Path, port: int, listed: list[str]) -> None:
    relay = Relay()
    relay.rcpt_reply = lambda address: f"550 <{address}>: Administrative prohibition"
    with smtp_server(relay, port):
        code, _, err = invoke("send", "--site", str(site))
    assert code == 78
    assert "3 messages in a row were refused with the same reply" in err
    assert "Administrative prohibition" in err and "no subscriber was marked" in err
    nothing_spent(site)
    all_sent_once(site, port, listed, relay)


def test_one_message_refused_among_accepted_ones_fails_alone_unmarked(
        site: Path, port: int, listed: list[str]) -> None:
    relay = Relay()
    victim = listed[7]
    relay.data_reply = lambda a: "554 5.6.0 Message content rejected" if a == victim else None
    with smtp_server(relay, port):
        report = send(site)
    assert (report.sent, report.failed, report.bouncing) == (COUNT - 1, 1, [])
    assert len(outbox_folder(site, "failed")) == 1
    assert statuses(site)[victim] == "active"


def test_only_a_status_that_blames_the_address_marks_the_subscriber() -> None:
    marked = [refusal(550, "5.1.1 <a@b.example>: Recipient address rejected: User unknown",
                      "RCPT"),
              refusal(552, "5.2.2 Mailbox full", "RCPT"),
              refusal(550, "No such user here", "RCPT"),
              refusal(550, "5.0.0 <a@b.example>: User unknown", "RCPT")]
    assert all(o.state == "failed" and o.bouncing for o in marked)
    unmarked = [refusal(554, "5.6.0 Message content rejected", "end of DATA"),
                refusal(550, "Administrative prohibition", "RCPT"),
                refusal(554, "5.7.1 Spam message rejected", "end of DATA")]
    assert all(o.state == "failed" and not o.bouncing for o in unmarked)
    for code, text in ((554, "5.7.1 <a@b.example>: Relay access denied"),
                       (550, "5.7.1 Client host rejected: Access denied"),
                       (552, "5.3.4 Message size exceeds fixed limit")):
        with pytest.raises(RelaySetupError):
            refusal(code, text, "RCPT")
    with pytest.raises(RelayBusy):
        refusal(450, "4.7.1 Error: too much mail from 127.0.0.1", "MAIL")
    assert refusal(451, "4.7.1 Greylisted, try again later", "RCPT").state == "deferred"
    assert refusal_key("550 <a@x.example>: denied (id 4B2FA9C1)") == \
        refusal_key("550 <b@y.example>: denied (id 77AC0D3E)")


def test_a_message_over_the_relays_size_is_not_sent_and_the_send_stops(
        site: Path, port: int, listed: list[str]) -> None:
    relay = Relay()
    with smtp_server(relay, port, data_size_limit=10_000):  # advertised as SIZE 10000
        code, _, err = invoke("send", "--site", str(site))
    assert code == 78
    assert "takes at most 10,000" in err and "message_size_limit" in err
    assert relay.mails == 0 and relay.received == []  # not one byte of a message sent
    nothing_spent(site)
    all_sent_once(site, port, listed, relay)


def test_a_relay_wide_rate_limit_pauses_the_send_and_spends_no_attempt(
        site: Path, port: int, listed: list[str]) -> None:
    relay = Relay(pipelining=True)
    window = {"start": time.monotonic(), "count": 0}

    def five_per_window() -> str | None:  # as Postfix's anvil: N messages per time unit
        now = time.monotonic()
        if now - window["start"] > 0.3:
            window.update(start=now, count=0)
        window["count"] += 1
        return "450 4.7.1 Error: too much mail from 127.0.0.1" if window["count"] > 5 else None

    relay.mail_reply = five_per_window
    with smtp_server(relay, port):
        code, out, err = invoke("send", "--site", str(site))
    assert code == 0, (out, err)
    assert "limits our rate" in err and "pausing" in err
    got = Counter(a for a, _ in relay.received)
    assert sorted(got) == sorted(listed) and set(got.values()) == {1}
    assert outbox_folder(site, "failed") == []
    assert {attempts for _, attempts, _, _ in deliveries(site).values()} == {1}


def test_a_rate_limit_that_does_not_lift_stops_the_send_with_all_queued(
        site: Path, port: int, listed: list[str]) -> None:
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text().replace("retry_after = 0.1", "retry_after = 0.02"))
    relay = Relay()
    relay.mail_reply = lambda: "450 4.7.1 Error: too much mail from 127.0.0.1"
    with smtp_server(relay, port):
        code, _, err = invoke("send", "--site", str(site))
    assert code == 69  # EX_UNAVAILABLE: the relay keeps limiting us; cron tries again later
    assert "still limited after 6 pauses" in err
    nothing_spent(site)
    all_sent_once(site, port, listed, relay)
