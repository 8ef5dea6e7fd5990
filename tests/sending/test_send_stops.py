"""A send that is asked to stop, cannot move its files, or finds its outbox opened in a mail
client: nothing is sent twice, nothing accepted goes unrecorded. Real `newsletter send`
processes, real signals, a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import (
    Inbox,
    add_subscribers,
    delivery_states,
    invoke,
    markdown_entry,
    outbox_folder,
    smtp_server,
    use_relay,
    write_entry,
)
from pipeline.delivery import folders as folders_module
from pipeline.run import run


def queued_site(site: Path, port: int, count: int, **smtp: object) -> list[str]:
    use_relay(site, port, **smtp)
    addresses = add_subscribers(site, count)
    write_entry(site, "a.md", markdown_entry())
    assert run(site).written == count
    return addresses


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_mid_send_finishes_what_is_in_flight_and_leaves_no_duplicate(
        site: Path, port: int, stop: signal.Signals) -> None:
    addresses = queued_site(site, port, 300, connections=4)
    inbox = Inbox()
    with smtp_server(inbox, port):
        sender = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "send", "--site", str(site), "--rate", "150"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
        deadline = time.monotonic() + 30
        while len(inbox.received) < 80 and time.monotonic() < deadline:
            time.sleep(0.01)
        sender.send_signal(stop)
        _, err = sender.communicate(timeout=60)
        stopped_at = len(inbox.received)
        assert 0 < stopped_at < 300, "the signal must land mid-send"
        # every message the server accepted was moved and recorded before the process ended
        assert len(outbox_folder(site, "sent")) == stopped_at
        assert delivery_states(site) == {"sent": stopped_at}
        assert len(outbox_folder(site, "new")) == 300 - stopped_at
        code, _, _ = invoke("send", "--site", str(site))
    assert sender.returncode == 128 + stop, err
    assert f"stopped early: stopped by {stop.name}" in err and "stay queued" in err
    assert "Traceback" not in err
    assert code == 0
    got = Counter(a for a, _ in inbox.received)
    assert sorted(got) == sorted(addresses) and set(got.values()) == {1}  # 0 duplicates
    assert delivery_states(site) == {"sent": 300}


def test_an_outbox_that_cannot_take_moves_stops_the_send_before_the_first_message(
        site: Path, port: int) -> None:
    queued_site(site, port, 20)
    sent = site / "outbox" / "sent"
    sent.mkdir(exist_ok=True)
    sent.rmdir()
    sent.write_text("a file where a folder should be\n")  # fails for root too, as a folder
    inbox = Inbox()
    with smtp_server(inbox, port):
        code, _, err = invoke("send", "--site", str(site))
    assert code == 73 and "nothing was sent" in err and "sent" in err
    assert inbox.received == [] and len(outbox_folder(site, "new")) == 20
    assert not any(p.name.startswith(".send-probe") for p in (site / "outbox").rglob("*"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway; "
                    "the test with a file in sent/'s place covers this case as root")
def test_a_read_only_sent_folder_stops_the_send_before_the_first_message(
        site: Path, port: int) -> None:
    queued_site(site, port, 5)
    sent = site / "outbox" / "sent"
    sent.mkdir(exist_ok=True)
    sent.chmod(0o555)
    try:
        with smtp_server(Inbox(), port) as _:
            code, _, err = invoke("send", "--site", str(site))
    finally:
        sent.chmod(0o755)
    assert code == 73 and "Permission denied" in err


def test_too_little_free_space_stops_the_send_before_the_first_message(
        site: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    queued_site(site, port, 5)
    monkeypatch.setattr(folders_module, "MIN_FREE", 10**18)  # more than any disk here
    inbox = Inbox()
    with smtp_server(inbox, port):
        code, _, err = invoke("send", "--site", str(site))
    assert code == 73 and "MB free" in err and inbox.received == []


def test_a_message_accepted_when_the_outbox_broke_is_recorded_and_never_sent_again(
        site: Path, port: int) -> None:
    addresses = queued_site(site, port, 20, connections=1)
    sent, away = site / "outbox" / "sent", site / "outbox" / "sent.away"
    inbox = Inbox()

    def break_outbox_at_the_fifth(address: str) -> None:
        if len(inbox.received) == 4:  # the fifth message's data is in: break, then accept
            sent.rename(away)
            sent.write_text("the folder is gone\n")
        return None

    inbox.data_reply = break_outbox_at_the_fifth
    with smtp_server(inbox, port):
        code, _, err = invoke("send", "--site", str(site))
        assert code == 73, err
        assert "accepted" in err and "recorded as sent" in err
        assert len(inbox.received) == 5 and delivery_states(site) == {"sent": 5}
        sent.unlink()
        away.rename(sent)
        inbox.data_reply = lambda address: None
        code, _, err = invoke("send", "--site", str(site))
    assert code == 0, err
    got = Counter(a for a, _ in inbox.received)
    assert sorted(got) == sorted(addresses) and set(got.values()) == {1}
    assert delivery_states(site) == {"sent": 20}


@pytest.mark.parametrize("flags", [":2,S", ":2,RS", ""])
def test_messages_a_mail_client_moved_to_cur_are_sent_once(
        site: Path, port: int, flags: str) -> None:
    addresses = queued_site(site, port, 12)
    new, cur = site / "outbox" / "new", site / "outbox" / "cur"
    cur.mkdir(exist_ok=True)
    names = outbox_folder(site, "new")
    for n, name in enumerate(names):  # as mutt does: seen, moved, flags added
        if n % 3:
            os.rename(new / name, cur / (name + flags))
        elif flags:  # a client that renames in place
            os.rename(new / name, new / (name + flags))
    dry = invoke("send", "--site", str(site), "--dry-run")
    assert dry[0] == 0 and "12 messages are due" in dry[1]
    assert len(list(cur.iterdir())) == 8  # a dry run moves nothing
    inbox = Inbox()
    with smtp_server(inbox, port):
        code, out, err = invoke("send", "--site", str(site))
        again = invoke("send", "--site", str(site))
    assert code == 0 and "Sent 12" in out, err
    assert again[0] == 0 and "Sent 0" in again[1]
    got = Counter(a for a, _ in inbox.received)
    assert sorted(got) == sorted(addresses) and set(got.values()) == {1}
    assert outbox_folder(site, "sent") == names and list(cur.iterdir()) == []
