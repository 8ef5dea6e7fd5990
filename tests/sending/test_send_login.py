"""Logging in to the relay: any Unicode password, never shown; a refused login is tried once
per send; an internal CA is trusted through smtp.ca_file, and TLS errors say what to check.
Real aiosmtpd relays on loopback with AUTH and TLS."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import (
    Inbox,
    add_subscribers,
    free_port,
    markdown_entry,
    outbox_folder,
    smtp_server,
    use_relay,
    write_entry,
)
from pipeline.cli.main import cli
from pipeline.run import run

PASSWORD = "pässwörd✓"


class Logins:
    """An aiosmtpd authenticator that counts every login attempt."""

    def __init__(self, password: str) -> None:
        self.password = password.encode("utf-8")
        self.attempts: list[str] = []

    def __call__(self, server: object, session: object, envelope: object, mechanism: str,
                 auth_data: object) -> AuthResult:
        self.attempts.append(mechanism)
        good = isinstance(auth_data, LoginPassword) and auth_data.password == self.password
        return AuthResult(success=good, handled=False)


def sending_site(site: Path, port: int, count: int = 12, **smtp: object) -> None:
    use_relay(site, port, user="journal", connections=4, **smtp)
    add_subscribers(site, count)
    write_entry(site, "a.md", markdown_entry())
    run(site)


def shown(text: str, password: str) -> list[str]:
    """Any piece of the password (3 characters or more, or one non-ASCII character) in text,
    or its base64."""
    pieces = {password[i:i + 3] for i in range(len(password) - 2)}
    pieces |= {c for c in password if not c.isascii()}
    pieces.add(base64.b64encode(password.encode()).decode()[:8])
    return sorted(p for p in pieces if p in text)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_a_unicode_password_logs_in_with_either_mechanism(
        site: Path, monkeypatch: pytest.MonkeyPatch, mechanism: str) -> None:
    port = free_port()
    sending_site(site, port)
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", PASSWORD)
    logins, inbox = Logins(PASSWORD), Inbox()
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    with smtp_server(inbox, port, authenticator=logins, auth_require_tls=False,
                     auth_exclude_mechanism=[other]):
        result = CliRunner().invoke(cli, ["send", "--site", str(site)])
    assert result.exit_code == 0, result.stderr
    assert len(inbox.received) == 12
    assert set(logins.attempts) == {mechanism}


@pytest.mark.parametrize("wrong", ["wrong-" + PASSWORD, "ünïcödé-wrong✗"])
def test_a_refused_login_is_tried_once_and_shows_no_part_of_the_password(
        site: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        wrong: str) -> None:
    port = free_port()
    sending_site(site, port, count=40)
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", wrong)
    logins, inbox = Logins(PASSWORD), Inbox()
    caplog.set_level("DEBUG")
    with smtp_server(inbox, port, authenticator=logins, auth_require_tls=False):
        result = CliRunner().invoke(cli, ["send", "--site", str(site), "--verbose"])
        test = CliRunner().invoke(cli, ["send", "--site", str(site), "--test",
                                        "me@example.org"])
    assert result.exit_code == 78 and test.exit_code == 78
    assert "refused the login for 'journal'" in result.stderr
    assert "tried once" in result.stderr
    # one send, four connections: one login attempt, one mechanism; then one for --test
    assert len(logins.attempts) == 2
    assert inbox.received == [] and len(outbox_folder(site, "new")) == 40
    everything = result.output + result.stderr + test.output + test.stderr + caplog.text
    assert shown(everything, wrong) == []
    files = b"".join(p.read_bytes() for p in site.rglob("*") if p.is_file())
    assert wrong.encode() not in files


# --- TLS with an internal certificate authority ------------------------------------------------

def internal_ca(folder: Path, host: str = "127.0.0.1") -> tuple[Path, ssl.SSLContext]:
    """A CA's PEM certificate, and a server context with a certificate it signed for host."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Clinic internal CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, chain, key_file = folder / "ca.pem", folder / "relay.pem", folder / "relay.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain, key_file)
    return ca_file, context


def test_smtp_ca_file_trusts_an_internal_ca(site: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    _, context = internal_ca(site)
    port = free_port()
    sending_site(site, port, tls="starttls", ca_file="ca.pem")
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", PASSWORD)
    inbox = Inbox()
    with smtp_server(inbox, port, tls_context=context, require_starttls=True,
                     authenticator=Logins(PASSWORD)):
        result = CliRunner().invoke(cli, ["send", "--site", str(site)])
    assert result.exit_code == 0, result.stderr
    assert len(inbox.received) == 12


def test_an_untrusted_internal_ca_points_at_smtp_ca_file(site: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    _, context = internal_ca(site)
    port = free_port()
    sending_site(site, port, tls="starttls")
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", PASSWORD)
    with smtp_server(Inbox(), port, tls_context=context, require_starttls=True):
        result = CliRunner().invoke(cli, ["send", "--site", str(site)])
    assert result.exit_code == 78
    assert "certificate is not trusted" in result.stderr and "smtp.ca_file" in result.stderr


def test_a_certificate_for_another_name_points_at_smtp_host(site: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    _, context = internal_ca(site, host="relay.clinic.example")
    port = free_port()
    sending_site(site, port, tls="starttls", ca_file="ca.pem")
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", PASSWORD)
    with smtp_server(Inbox(), port, tls_context=context, require_starttls=True):
        result = CliRunner().invoke(cli, ["send", "--site", str(site)])
    assert result.exit_code == 78
    assert "is not for '127.0.0.1'" in result.stderr and "smtp.host" in result.stderr


def test_a_missing_or_non_pem_ca_file_is_a_config_error(site: Path) -> None:
    use_relay(site, free_port(), tls="starttls", ca_file="nope.pem")
    result = CliRunner().invoke(cli, ["send", "--site", str(site), "--dry-run"])
    assert result.exit_code == 78 and "smtp.ca_file: no file at" in result.stderr
    (site / "nope.pem").write_text("not a certificate\n")
    result = CliRunner().invoke(cli, ["send", "--site", str(site), "--dry-run"])
    assert result.exit_code == 78 and "holds no PEM certificate" in result.stderr
