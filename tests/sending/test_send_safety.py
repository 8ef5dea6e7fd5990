"""Sending that loses nothing when the server or the sender dies, signs with DKIM, keeps the
password out of every output, and speaks TLS. Real servers on loopback, real kills."""

from __future__ import annotations

import base64
import datetime as dt
import email
import ipaddress
import logging
import os
import re
import threading
from collections import Counter
from email import policy
from pathlib import Path

import dkim
import pytest
from aiosmtpd.smtp import AuthResult
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from conftest import (
    Inbox,
    add_subscribers,
    free_port,
    kill_send_midway,
    markdown_entry,
    smtp_server,
    use_relay,
    write_entry,
)
from pipeline.cli.main import cli
from pipeline.core.deliveries import SendReport
from pipeline.delivery.send import send
from pipeline.run import run
from pipeline.state.ledger import open_ledger

PASSWORD = "Pa55-w0rd-that-must-never-show"


def sent_states(site: Path) -> Counter[str]:
    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        assert ledger.integrity_problems() == []
        return Counter(d.state for d in ledger.deliveries())


def outbox(site: Path, name: str) -> set[str]:
    return {p.name for p in (site / "outbox" / name).glob("*.eml")}


def test_a_server_killed_mid_run_loses_nothing_and_the_next_send_resumes(
        site: Path) -> None:
    port = free_port()
    use_relay(site, port, connections=1, timeout=10)
    addresses = add_subscribers(site, 30)
    write_entry(site, "a.md", markdown_entry())
    run(site)
    dying, hanging = Inbox(), threading.Event()
    # The tenth message's data arrives, and the server dies before it answers.
    dying.data_reply = lambda address: Inbox.HANG if len(dying.received) == 9 else None
    dying.hanging = hanging
    now = dt.datetime.now(dt.UTC)
    result: list[SendReport] = []
    with smtp_server(dying, port) as controller:
        sender = threading.Thread(target=lambda: result.append(send(site, now)))
        sender.start()
        assert hanging.wait(20)
        controller.stop()  # the server dies mid-run
        sender.join(30)
    [first] = result
    assert first.stopped and first.sent == 9 and first.deferred >= 1
    assert len(outbox(site, "sent")) == 9 and len(outbox(site, "new")) == 21
    revived = Inbox()
    with smtp_server(revived, port):
        later = send(site, now + dt.timedelta(hours=2))
    assert later.sent == 21 and not later.stopped
    got = Counter(a for a, _ in dying.received) + Counter(a for a, _ in revived.received)
    assert sorted(got) == sorted(addresses) and set(got.values()) == {1}
    assert sent_states(site) == {"sent": 30}


def test_a_sender_killed_with_sigkill_loses_nothing_and_the_next_send_finishes(
        site: Path) -> None:
    port = free_port()
    use_relay(site, port, connections=4)
    addresses = add_subscribers(site, 300)
    write_entry(site, "a.md", markdown_entry())
    run(site)
    inbox = Inbox()
    with smtp_server(inbox, port):
        killed_at = kill_send_midway(site, inbox)
        assert 0 < killed_at < 300, "the kill must land mid-run"
        moved = len(outbox(site, "sent"))
        report = send(site)
    assert moved + report.sent == 300 and len(outbox(site, "sent")) == 300
    got = Counter(a for a, _ in inbox.received)
    assert sorted(got) == sorted(addresses)  # nothing lost
    # A copy twice only from the window between the server's 250 and the rename: at most
    # one per connection the killed sender had open.
    assert sum(got.values()) - 300 <= 4, got.most_common(5)
    assert sent_states(site) == {"sent": 300}


def test_a_message_moved_but_never_recorded_is_recorded_not_sent_again(
        site: Path) -> None:
    port = free_port()
    use_relay(site, port)
    write_entry(site, "a.md", markdown_entry())
    run(site)
    first, _ = sorted(outbox(site, "new"))
    (site / "outbox" / "sent").mkdir()  # where a send killed after the rename left it
    os.rename(site / "outbox" / "new" / first, site / "outbox" / "sent" / first)
    inbox = Inbox()
    with smtp_server(inbox, port):
        report = send(site)
    assert (report.recovered, report.sent) == (1, 1) and len(inbox.received) == 1
    assert sent_states(site) == {"sent": 2}


def test_dkim_signature_verifies_and_covers_list_unsubscribe(site: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (site / "dkim.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    port = free_port()
    use_relay(site, port)
    with (site / "newsletter.toml").open("a") as f:
        f.write('[dkim]\nselector = "news2026"\nprivate_key = "dkim.pem"\n')
    write_entry(site, "a.md", markdown_entry())
    run(site)
    inbox = Inbox()
    with smtp_server(inbox, port):
        assert send(site).sent == 2

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"news2026._domainkey.example.org."
        return b"v=DKIM1; k=rsa; p=" + public

    for _, raw in inbox.received:
        assert dkim.verify(raw, dnsfunc=dns)
        message = email.message_from_bytes(raw, policy=policy.default)
        signed = re.search(r"\bh=([^;]+)", str(message["DKIM-Signature"])).group(1)
        names = [h.strip().lower() for h in re.sub(r"\s", "", signed).split(":")]
        assert {"from", "to", "subject", "date", "message-id", "list-unsubscribe",
                "list-unsubscribe-post"} <= set(names)
        forged = raw.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                             b"List-Unsubscribe-Post: List-Unsubscribe=Other")
        assert forged != raw and not dkim.verify(forged, dnsfunc=dns)


def test_a_bad_dkim_key_is_a_config_error_naming_the_file(site: Path) -> None:
    (site / "dkim.pem").write_text("not a key\n")
    use_relay(site, free_port())
    with (site / "newsletter.toml").open("a") as f:
        f.write('[dkim]\nselector = "s1"\nprivate_key = "dkim.pem"\n')
    result = CliRunner().invoke(cli, ["send", "--site", str(site)])
    assert result.exit_code == 78
    assert "dkim.pem" in result.stderr and "dkim.private_key" in result.stderr


def authenticator(server: object, session: object, envelope: object, mechanism: str,
                  auth_data: object) -> AuthResult:
    good = getattr(auth_data, "password", b"") == PASSWORD.encode()
    return AuthResult(success=good, handled=False)


@pytest.mark.parametrize("password", [PASSWORD, "wrong-" + PASSWORD])
def test_the_password_never_appears_in_any_output(site: Path, password: str,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    use_relay(site, port, user="journal")
    write_entry(site, "a.md", markdown_entry())
    run(site)
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", password)
    inbox = Inbox()
    caplog.set_level(logging.DEBUG)
    with smtp_server(inbox, port, authenticator=authenticator, auth_require_tls=False):
        result = CliRunner().invoke(cli, ["send", "--site", str(site), "--verbose"])
        test = CliRunner().invoke(cli, ["send", "--site", str(site), "--test", "a@example.org"])
    if password == PASSWORD:
        assert result.exit_code == 0 and len(inbox.received) == 3
    else:
        assert result.exit_code == 78 and inbox.received == []
        assert "refused the login for 'journal'" in result.stderr
        assert "NEWSLETTER_SMTP_PASSWORD" in result.stderr
    seen = result.stdout + result.stderr + test.stdout + test.stderr + caplog.text
    files = b"".join(p.read_bytes() for p in site.rglob("*") if p.is_file())
    for form in (password, base64.b64encode(password.encode()).decode()):
        assert form not in seen and form.encode() not in files


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_tls_relay_gets_the_login_and_the_messages(site: Path, tmp_path: Path, mode: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust our test server's certificate
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", PASSWORD)
    port = free_port()
    use_relay(site, port, tls=mode, user="journal")
    write_entry(site, "a.md", markdown_entry())
    run(site)
    inbox = Inbox()
    options: dict[str, object] = {"authenticator": authenticator}
    if mode == "starttls":
        options.update(tls_context=context, require_starttls=True)
    else:
        # aiosmtpd only counts STARTTLS as TLS when deciding to offer AUTH
        options.update(ssl_context=context, auth_require_tls=False)
    with smtp_server(inbox, port, **options):
        assert send(site).sent == 2
    assert len(inbox.received) == 2


def test_an_untrusted_certificate_stops_the_send_as_a_config_error(
        site: Path, tmp_path: Path) -> None:
    import ssl

    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    port = free_port()
    use_relay(site, port, tls="implicit")
    write_entry(site, "a.md", markdown_entry())
    run(site)
    with smtp_server(Inbox(), port, ssl_context=context):
        result = CliRunner().invoke(cli, ["send", "--site", str(site)])
    assert result.exit_code == 78 and "certificate is not trusted" in result.stderr
    assert len(outbox(site, "new")) == 2

