"""DKIM signing moved to `newsletter run`: each .eml is written with its signature(s), `send`
hands over exactly those bytes and signs only what carries no signature as configured now
(a message queued before [dkim] was set, one signed under an old selector, the compact
outbox's). Real runs and sends, a real SMTP server on loopback, and the signatures checked by
dkimpy and emailsec (and mailauth, in test_send_dkim.py, on the same run-signed bytes)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import dkim
import pytest
from test_send_dkim import ALGORITHMS, DOMAIN, KINDS, Dns, make_key, signatures, verify_both
from test_ses import moto_server, ses  # noqa: F401  (fixtures: moto's SES server on loopback)

from conftest import (
    Inbox,
    add_subscribers,
    invoke,
    kill_send_midway,
    markdown_entry,
    smtp_server,
    use_relay,
    write_entry,
)
from moto_ses import MotoSes, emls, newsletter, use_ses
from pipeline.delivery.send import send
from pipeline.mail.dkim import DkimKey, DkimSettings, DkimSigner
from pipeline.run import run


def set_dkim(site: Path, dns: Dns, keys: list[tuple[str, str]]) -> None:
    """[dkim] with these (selector, kind) keys, replacing any [dkim] before it; each key's
    public half published in `dns`."""
    toml = site / "newsletter.toml"
    text = toml.read_text().split("\n[dkim]\n")[0]
    lines = []
    for n, (selector, kind) in enumerate(keys):
        prefix = "second_" if n else ""
        dns.add(selector, kind, make_key(site, kind, f"{selector}.pem"))
        lines += [f'{prefix}selector = "{selector}"', f'{prefix}private_key = "{selector}.pem"']
    toml.write_text(text + "\n[dkim]\n" + "\n".join(lines) + "\n")


def outbox(site: Path, folder: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((site / "outbox" / folder).glob("*.eml"))}


def sent_through(site: Path, port: int) -> list[bytes]:
    inbox = Inbox()
    with smtp_server(inbox, port):
        report = send(site)
    assert report.sent == len(inbox.received) and not report.failed
    return [raw for _, raw in inbox.received]


@pytest.mark.parametrize("kinds", KINDS)
def test_run_writes_signed_messages_and_send_sends_their_exact_bytes(
        site: Path, port: int, kinds: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    dns = Dns()
    use_relay(site, port)
    set_dkim(site, dns, [(f"s{n}", kind) for n, kind in enumerate(kinds)])
    add_subscribers(site, 5)
    write_entry(site, "a.md", markdown_entry(body="Tabs\tand  double  spaces. \n\n\n"))
    assert run(site).written == 5
    written = outbox(site, "new")
    for raw in written.values():  # signed on disk, before any send
        assert verify_both(raw, dns, monkeypatch) == [ALGORITHMS[k] for k in kinds]
    received = sent_through(site, port)
    # Not signed twice: what the relay got is the file, byte for byte, as it is in sent/.
    assert sorted(received) == sorted(written.values()) == sorted(outbox(site, "sent").values())
    assert all(len(signatures(raw)) == len(kinds) for raw in received)


def test_a_message_queued_before_dkim_was_set_is_signed_when_sent(
        site: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    use_relay(site, port)
    write_entry(site, "a.md", markdown_entry())
    assert run(site).written == 2
    assert not any(signatures(raw) for raw in outbox(site, "new").values())
    dns = Dns()
    set_dkim(site, dns, [("rsa1", "rsa"), ("ed1", "ed25519")])
    received = sent_through(site, port)
    assert len(received) == 2
    for raw in received:
        assert verify_both(raw, dns, monkeypatch) == ["rsa-sha256", "ed25519-sha256"]


def test_a_message_signed_under_an_old_selector_is_signed_again_under_the_new(
        site: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    use_relay(site, port)
    old, new = Dns(), Dns()
    set_dkim(site, old, [("old", "rsa")])
    write_entry(site, "a.md", markdown_entry())
    assert run(site).written == 2
    set_dkim(site, new, [("new", "ed25519")])  # rotated, the old record may be gone
    received = sent_through(site, port)
    assert len(received) == 2
    for raw in received:
        assert b"s=old;" not in raw
        assert verify_both(raw, new, monkeypatch) == ["ed25519-sha256"]


def test_the_compact_outbox_is_signed_when_sent(site: Path, port: int,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    use_relay(site, port)
    with (site / "newsletter.toml").open("a") as f:
        f.write('\n[outbox]\nmode = "compact"\n')
    dns = Dns()
    set_dkim(site, dns, [("rsa1", "rsa"), ("ed1", "ed25519")])
    add_subscribers(site, 6)
    write_entry(site, "a.md", markdown_entry())
    assert run(site).written_to == "outbox/compact"
    received = sent_through(site, port)
    assert len(received) == 6
    for raw in received:
        assert verify_both(raw, dns, monkeypatch) == ["rsa-sha256", "ed25519-sha256"]


def test_a_broken_key_at_run_time_writes_unsigned_and_send_signs_once_it_is_fixed(
        site: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    use_relay(site, port)
    dns = Dns()
    set_dkim(site, dns, [("k1", "rsa")])
    good = (site / "k1.pem").read_bytes()
    (site / "k1.pem").write_text("not a key\n")
    write_entry(site, "a.md", markdown_entry())
    report = run(site)
    assert report.written == 2  # the digest is not held back for a signing problem
    assert any("k1.pem" in str(p.path) and p.warning for p in report.problems)
    assert not any(signatures(raw) for raw in outbox(site, "new").values())
    code, _, err = invoke("send", "--site", str(site))
    assert code == 78 and "dkim.private_key" in err and outbox(site, "sent") == {}
    (site / "k1.pem").write_bytes(good)
    for raw in sent_through(site, port):
        assert verify_both(raw, dns, monkeypatch) == ["rsa-sha256"]


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> DkimSigner:
    folder = tmp_path_factory.mktemp("keys")
    make_key(folder, "rsa", "r.pem")
    make_key(folder, "ed25519", "e.pem")
    return DkimSigner(DkimSettings(DOMAIN, (DkimKey("r", folder / "r.pem"),
                                            DkimKey("e", folder / "e.pem"))))


MESSAGE = (b"From: a@example.org\r\nTo: b@example.net\r\nSubject: s\r\n\r\nbody\r\n")


def test_ensure_signed_keeps_a_message_signed_as_configured_and_signs_the_rest(
        signer: DkimSigner, tmp_path: Path) -> None:
    signed = signer.sign(MESSAGE)
    assert signer.ensure_signed(signed) is signed
    assert signer.ensure_signed(MESSAGE).endswith(MESSAGE)
    assert len(signatures(signer.ensure_signed(MESSAGE))) == 2
    make_key(tmp_path, "rsa", "other.pem")
    only_rsa = DkimSigner(DkimSettings(DOMAIN, (DkimKey("r", tmp_path / "other.pem"),)))
    again = only_rsa.ensure_signed(signed)  # two signatures, one configured: signed anew
    assert len(signatures(again)) == 1 and again.endswith(MESSAGE)
    assert signer.ensure_signed(again).endswith(MESSAGE)


def test_a_signed_run_killed_midway_is_finished_by_the_next_with_every_message_signed(
        site: Path) -> None:
    dns = Dns()
    set_dkim(site, dns, [("rsa1", "rsa"), ("ed1", "ed25519")])
    addresses = add_subscribers(site, 3000)
    write_entry(site, "a.md", markdown_entry())
    new = site / "outbox" / "new"
    process = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--site", str(site)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if new.is_dir() and len(os.listdir(new)) >= 300:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_with = len(os.listdir(new))
    assert 0 < killed_with < len(addresses), "the kill did not land inside the fan-out"
    run(site)
    files = outbox(site, "new")
    assert len(files) == len(addresses) and not list((site / "outbox" / "tmp").iterdir())
    assert all(raw.startswith(b"DKIM-Signature:") for raw in files.values())
    tos = sorted(re.search(rb"^To: .*?<([^>]+)>", raw, re.M)[1].decode()  # type: ignore[index]
                 for raw in files.values())
    assert tos == sorted(addresses)  # one message each, none twice
    for raw in list(files.values())[::150]:  # dkimpy is slow: a sample across the list
        assert len(signatures(raw)) == 2
        assert all(dkim.DKIM(raw).verify(idx=i, dnsfunc=dns.dkimpy) for i in range(2))


def test_ses_gets_the_signed_eml_byte_for_byte(ses: MotoSes, site: Path,  # noqa: F811
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    write_entry(site, "a.md", markdown_entry())
    use_ses(site)
    dns = Dns()
    set_dkim(site, dns, [("rsa1", "rsa"), ("ed1", "ed25519")])
    add_subscribers(site, 4)
    assert newsletter(site, ses.env(), "run").returncode == 0
    written = emls(site, "new")
    sent = newsletter(site, ses.env(), "send")
    assert sent.returncode == 0, sent.stderr
    received = [m["raw_data"].encode() for m in ses.received()]
    assert sorted(received) == sorted(written.values()) and len(received) == 4
    for raw in received:
        assert verify_both(raw, dns, monkeypatch) == ["rsa-sha256", "ed25519-sha256"]


def test_a_signed_send_killed_midway_loses_nothing_and_sends_the_written_bytes(
        site: Path, port: int) -> None:
    use_relay(site, port, connections=4)
    dns = Dns()
    set_dkim(site, dns, [("rsa1", "rsa")])
    addresses = add_subscribers(site, 300)
    write_entry(site, "a.md", markdown_entry())
    run(site)
    written = set(outbox(site, "new").values())
    inbox = Inbox()
    with smtp_server(inbox, port):
        killed_at = kill_send_midway(site, inbox)
        assert 0 < killed_at < 300, "the kill must land mid-send"
        send(site)
    got = Counter(a for a, _ in inbox.received)
    assert sorted(got) == sorted(addresses)  # nothing lost
    assert sum(got.values()) - 300 <= 4  # the accept-then-rename window, one per connection
    assert {raw for _, raw in inbox.received} == written  # a retry sends the same bytes
