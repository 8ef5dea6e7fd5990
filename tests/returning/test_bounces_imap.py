"""`newsletter bounces fetch` against a real IMAP server: Dovecot on loopback, started by the
test with a throwaway configuration (skipped, saying so, where Dovecot is not installed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from imap_server import PASSWORD, ImapServer, dovecot, dovecot_binary

from conftest import add_subscribers, free_port, invoke
from pipeline.state.ledger import open_ledger
from pipeline.state.returns import ReturnsBook
from returning import dsn, returns_rows, statuses, vacation

pytestmark = pytest.mark.skipif(
    dovecot_binary() is None,
    reason="Dovecot is not installed (Debian: apt-get install dovecot-imapd): "
           "the IMAP tests of `newsletter bounces fetch` are skipped")


@pytest.fixture
def imap() -> Iterator[ImapServer]:
    with dovecot(free_port()) as server:
        yield server


@pytest.fixture
def mailbox_site(site: Path, imap: ImapServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    from pipeline.run import run

    with (site / "newsletter.toml").open("a", encoding="utf-8") as f:
        f.write(f'\n[bounces]\nimap_host = "127.0.0.1"\nimap_port = {imap.port}\n'
                'imap_tls = "none"\nimap_user = "bounces"\n')
    monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", PASSWORD)
    run(site)
    return site


def test_fetch_applies_bounces_and_moves_mail_without_deleting_it(
        mailbox_site: Path, imap: ImapServer) -> None:
    imap.append(dsn("journal@example.org", "ada@example.org"))
    imap.append(vacation("journal@example.org", "grace@example.org"))
    imap.append(dsn("journal@example.org", "stranger@example.net",
                    message_id="<stranger@mx.example.net>"))
    code, out, err = invoke("bounces", "fetch", "--site", str(mailbox_site))
    assert code == 1  # the stranger's bounce needs a look
    assert "1 bounced, 1 ignored, 1 kept" in out
    assert "imap:INBOX/3: kept aside: no subscriber has the address it names" in err
    assert statuses(mailbox_site)["ada@example.org"] == "bounced"
    assert statuses(mailbox_site)["grace@example.org"] == "active"
    assert imap.folder("INBOX") == []
    assert len(imap.folder("Processed")) == 2 and len(imap.folder("Kept")) == 1
    assert b"stranger@example.net" in imap.folder("Kept")[0]
    # Nothing new: a second fetch does nothing; the same mail delivered again changes nothing.
    assert invoke("bounces", "fetch", "--site", str(mailbox_site), "--quiet") == (0, "", "")
    imap.append(dsn("journal@example.org", "ada@example.org"))
    code, out, _ = invoke("bounces", "fetch", "--site", str(mailbox_site))
    assert code == 0 and "1 seen before" in out
    assert len(imap.folder("Processed")) == 3


def test_mail_recorded_but_not_moved_is_only_moved_next_time(
        mailbox_site: Path, imap: ImapServer) -> None:
    """The state a kill between the ledger's record and the IMAP move leaves behind."""
    from pipeline.core.config import load_config
    from pipeline.state.ledger import open_ledger
    from pipeline.state.secret import load_secrets
    from pipeline.subscribers.returns.apply import handle
    from pipeline.subscribers.returns.classify import classify

    data = dsn("journal@example.org", "grace@example.org", status="4.2.2", action="delayed",
               diagnostic="452 4.2.2 Mailbox full")
    imap.append(data)
    config = load_config(mailbox_site)
    with open_ledger(config.state_dir) as ledger:
        handled = handle(classify(data), config, ledger, load_secrets(config.state_dir),
                         datetime.now(UTC), "imap")
    assert handled.outcome == "counted"
    code, out, _ = invoke("bounces", "fetch", "--site", str(mailbox_site))
    assert code == 0 and "1 seen before" in out
    assert imap.folder("INBOX") == [] and len(imap.folder("Processed")) == 1
    assert len(returns_rows(mailbox_site)) == 1


def test_a_fetch_killed_with_sigkill_loses_nothing_and_applies_nothing_twice(
        site: Path, imap: ImapServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.run import run
    from pipeline.subscribers.returns.intake import BATCH

    count = BATCH + 50  # killed once the first batch is recorded: moving it, or reading on
    addresses = add_subscribers(site, count)
    with (site / "newsletter.toml").open("a", encoding="utf-8") as f:
        f.write(f'\n[bounces]\nimap_host = "127.0.0.1"\nimap_port = {imap.port}\n'
                'imap_tls = "none"\nimap_user = "bounces"\n')
    run(site)
    imap.append(*(dsn("journal@example.org", address, message_id=f"<kill-{n}@mx.example>")
                  for n, address in enumerate(addresses)))
    env = {**os.environ, "NEWSLETTER_IMAP_PASSWORD": PASSWORD}
    command = [sys.executable, "-m", "pipeline", "bounces", "fetch", "--site", str(site), "-q"]
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        with open_ledger(site / ".newsletter", read_only=True) as ledger:  # a fresh snapshot
            done = ReturnsBook(ledger).mail_count()
        if done >= BATCH:
            break
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = imap.count("Processed")
    assert process.returncode == -signal.SIGKILL and killed_at < count
    assert subprocess.run(command, env=env).returncode == 0
    assert imap.count("INBOX") == 0
    assert imap.count("Processed") == count  # each message once, none lost
    applied = Counter(row[0] for row in returns_rows(site))
    assert applied == dict.fromkeys(addresses, 1)  # applied once each
    assert all(statuses(site)[a] == "bounced" for a in addresses)


def test_a_wrong_password_or_no_server_is_reported(mailbox_site: Path, imap: ImapServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", "wrong")
    code, _, err = invoke("bounces", "fetch", "--site", str(mailbox_site))
    assert code == 78 and "refused the login of 'bounces'" in err and "wrong" not in err
    monkeypatch.delenv("NEWSLETTER_IMAP_PASSWORD")
    code, _, err = invoke("bounces", "fetch", "--site", str(mailbox_site))
    assert code == 78 and "NEWSLETTER_IMAP_PASSWORD: is empty" in err
    monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", PASSWORD)
    text = (mailbox_site / "newsletter.toml").read_text()
    (mailbox_site / "newsletter.toml").write_text(
        text.replace(f"imap_port = {imap.port}", f"imap_port = {free_port()}"))
    code, _, err = invoke("bounces", "fetch", "--site", str(mailbox_site))
    assert code == 69 and "cannot reach the IMAP server" in err


def test_an_oversize_message_is_refused_and_moved_aside(mailbox_site: Path,
                                                        imap: ImapServer) -> None:
    text = (mailbox_site / "newsletter.toml").read_text()
    (mailbox_site / "newsletter.toml").write_text(text + "max_size_kb = 64\n")
    imap.append(dsn("journal@example.org", "ada@example.org").replace(
        b"--B0UNDARY--", b"--B0UNDARY--\r\n" + b"x" * 100_000))
    code, _, err = invoke("bounces", "fetch", "--site", str(mailbox_site))
    assert code == 1 and "is over the limit of 65,536: refused unread" in err
    assert statuses(mailbox_site)["ada@example.org"] == "active"
    assert imap.folder("INBOX") == [] and len(imap.folder("Kept")) == 1


def test_plain_imap_is_refused_for_a_remote_host(site: Path) -> None:
    with (site / "newsletter.toml").open("a", encoding="utf-8") as f:
        f.write('\n[bounces]\nimap_host = "imap.example.net"\nimap_tls = "none"\n')
    code, _, err = invoke("bounces", "fetch", "--site", str(site))
    assert code == 78 and "bounces.imap_tls" in err and "unencrypted" in err


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate it signed for 127.0.0.1: (ca, certificate, key) files."""
    import ipaddress
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("Test CA")).issuer_name(name("Test CA"))
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "imap-cert.pem", folder / "imap-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_fetch_over_tls_checks_the_servers_certificate(site: Path, tmp_path: Path, mode: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.run import run

    ca, cert, key = _certificates(tmp_path)
    port, tls_port = free_port(), free_port()
    monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", PASSWORD)
    run(site)
    settings = (f'\n[bounces]\nimap_host = "127.0.0.1"\nimap_tls = "{mode}"\n'
                f'imap_port = {tls_port if mode == "implicit" else port}\n'
                'imap_user = "bounces"\n')
    text = (site / "newsletter.toml").read_text() + settings
    with dovecot(port, tls=(cert, key, tls_port)) as server:
        server.append(dsn("journal@example.org", "ada@example.org"))
        (site / "newsletter.toml").write_text(text)
        code, _, err = invoke("bounces", "fetch", "--site", str(site))
        assert code == 78 and "certificate we do not trust" in err  # not the system's CAs
        assert statuses(site)["ada@example.org"] == "active"
        (site / "newsletter.toml").write_text(text + f'imap_ca_file = "{ca}"\n')
        code, out, err = invoke("bounces", "fetch", "--site", str(site))
        assert (code, err) == (0, "") and "1 bounced" in out
        assert statuses(site)["ada@example.org"] == "bounced"


def test_a_server_that_goes_away_mid_fetch_is_a_temporary_failure(
        mailbox_site: Path, imap: ImapServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.subscribers.returns import sources

    imap.append(dsn("journal@example.org", "ada@example.org"))
    real = sources.ImapSource.items

    def items_then_server_gone(self: sources.ImapSource) -> Iterator[sources.Item]:
        listed = list(real(self))
        self.imap.shutdown()  # the connection drops after the listing, before any body
        yield from listed

    monkeypatch.setattr(sources.ImapSource, "items", items_then_server_gone)
    code, _, err = invoke("bounces", "fetch", "--site", str(mailbox_site))
    assert code == 69 and "the IMAP connection broke" in err
    assert statuses(mailbox_site)["ada@example.org"] == "active"
    monkeypatch.setattr(sources.ImapSource, "items", real)
    code, out, _ = invoke("bounces", "fetch", "--site", str(mailbox_site))
    assert code == 0 and "1 bounced" in out
