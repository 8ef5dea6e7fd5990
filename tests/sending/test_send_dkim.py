"""DKIM at full speed: our own signer (the `cryptography` package's RSA and Ed25519), every
signature checked by two independent verifiers, dkimpy and emailsec, on the bytes a real SMTP
server (aiosmtpd on loopback) received."""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import re
import shutil
import subprocess
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Inbox, add_subscribers, markdown_entry, smtp_server, use_relay, write_entry
from pipeline.delivery.send import send
from pipeline.delivery.signing import DkimKey, DkimSettings, DkimSigner
from pipeline.run import run

emailsec = pytest.importorskip("emailsec.dkim.parser",
                               reason="emailsec (the second DKIM verifier) is not installed")

DOMAIN = "example.org"


def make_key(folder: Path, kind: str, name: str) -> bytes:
    """Writes a PEM private key; returns the p= value of its DNS record."""
    if kind == "rsa":
        key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = rsa.generate_private_key(
            public_exponent=65537, key_size=2048)
        public = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
    (folder / name).write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return base64.b64encode(public)


class Dns:
    """The TXT records both verifiers look up, served from memory."""

    def __init__(self) -> None:
        self.records: dict[str, tuple[str, bytes]] = {}  # selector → (k=, p=)

    def add(self, selector: str, kind: str, public: bytes) -> None:
        self.records[selector] = (kind, public)

    def dkimpy(self, name: bytes, timeout: int = 5) -> bytes:
        selector, _, rest = name.decode().partition("._domainkey.")
        assert rest == DOMAIN + "."
        kind, public = self.records[selector]
        return b"v=DKIM1; k=" + kind.encode() + b"; p=" + public

    async def emailsec(self, q: str | None, d: str, s: str) -> dict[str, str]:
        assert d == DOMAIN
        kind, public = self.records[s]
        return {"v": "DKIM1", "k": kind, "p": public.decode()}


def signatures(raw: bytes) -> list[bytes]:
    """Each DKIM-Signature field of the message, whole (folded lines included)."""
    head = raw[:raw.index(b"\r\n\r\n") + 2]
    return re.findall(rb"^DKIM-Signature:.*?\r\n(?=[^ \t])", head, re.M | re.S)


_split = emailsec.body_and_headers_for_canonicalization


def _split_with_absent_headers(message: str) -> tuple[str, dict[str, list]]:
    """emailsec 0.2 raises KeyError for a name in h= that the message lacks, which RFC 6376
    5.4 allows ("over-signing" Reply-To stops one being added): such a name adds nothing."""
    body, headers = _split(message)
    return body, collections.defaultdict(list, headers)


def verify_both(raw: bytes, dns: Dns, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The algorithm of every signature, each verified by dkimpy and by emailsec; fails on
    any that does not verify."""
    monkeypatch.setattr(emailsec, "public_key_info", dns.emailsec)
    monkeypatch.setattr(emailsec, "body_and_headers_for_canonicalization",
                        _split_with_absent_headers)
    fields = signatures(raw)
    algorithms = []
    for index, field in enumerate(fields):
        assert dkim.DKIM(raw).verify(idx=index, dnsfunc=dns.dkimpy), field
        # emailsec checks the first signature: give it each one alone (the others are not
        # covered by it, so removing them changes nothing it signed)
        alone = b"".join(f for f in fields if f is field) + raw.replace(b"".join(fields), b"")
        assert asyncio.run(emailsec.verify(alone.decode("utf-8"))), field
        algorithms.append(re.search(rb"a=([\w-]+)", field)[1].decode())
    return algorithms


def signed_and_sent(site: Path, port: int, kinds: tuple[str, ...]) -> tuple[Inbox, Dns]:
    """Six messages signed with these kinds of key, as aiosmtpd received them."""
    dns, lines = Dns(), ["[dkim]"]
    for n, kind in enumerate(kinds):
        prefix, selector = ("", "first") if n == 0 else ("second_", "second")
        dns.add(selector, kind, make_key(site, kind, f"{kind}.pem"))
        lines += [f'{prefix}selector = "{selector}"', f'{prefix}private_key = "{kind}.pem"']
    use_relay(site, port)
    with (site / "newsletter.toml").open("a") as f:
        f.write("\n".join(lines) + "\n")
    add_subscribers(site, 6)
    write_entry(site, "a.md", markdown_entry(body="Tabs\tand  double  spaces. \n\n\n"))
    run(site)
    inbox = Inbox()
    with smtp_server(inbox, port):
        assert send(site).sent == 6
    return inbox, dns


ALGORITHMS = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}
KINDS = [("rsa",), ("ed25519",), ("rsa", "ed25519")]


@pytest.mark.parametrize("kinds", KINDS)
def test_every_message_sent_is_signed_and_verifies_with_both_verifiers(
        site: Path, port: int, kinds: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    inbox, dns = signed_and_sent(site, port, kinds)
    for _, raw in inbox.received:
        assert verify_both(raw, dns, monkeypatch) == [ALGORITHMS[k] for k in kinds]
        forged = raw.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                             b"List-Unsubscribe-Post: List-Unsubscribe=Other")
        assert forged != raw and not dkim.DKIM(forged).verify(dnsfunc=dns.dkimpy)


MAILAUTH = Path(__file__).resolve().parents[1] / "dkim_node"


@pytest.mark.parametrize("kinds", KINDS)
def test_a_third_verifier_mailauth_agrees(site: Path, port: int,
                                          kinds: tuple[str, ...]) -> None:
    if shutil.which("node") is None or not (MAILAUTH / "node_modules" / "mailauth").is_dir():
        pytest.skip("mailauth (Node.js) is not installed: `npm ci --prefix tests/dkim_node`")
    inbox, dns = signed_and_sent(site, port, kinds)
    records = {f"{selector}._domainkey.{DOMAIN}": f"v=DKIM1; k={kind}; p={public.decode()}"
               for selector, (kind, public) in dns.records.items()}
    for _, raw in inbox.received:
        for message, expected in ((raw, "pass"), (raw.replace(b"Subject: ", b"Subject: Re: "),
                                                  "fail")):
            done = subprocess.run(["node", str(MAILAUTH / "verify.js"), json.dumps(records)],
                                  input=message, capture_output=True, timeout=60, check=True)
            results = done.stdout.decode().split()
            assert results == [expected] * len(kinds), done.stdout + done.stderr


def test_an_ed25519_key_or_a_non_key_is_checked_before_sending(site: Path, port: int) -> None:
    from click.testing import CliRunner

    from pipeline.cli.main import cli

    use_relay(site, port)
    (site / "ec.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with (site / "newsletter.toml").open("a") as f:
        f.write('[dkim]\nselector = "a"\nprivate_key = "ec.pem"\n')
    result = CliRunner().invoke(cli, ["send", "--site", str(site)])
    assert result.exit_code == 78
    assert "ec.pem" in result.stderr and "dkim.private_key: cannot sign" in result.stderr


# Bodies and headers that canonicalisation must get right: runs of spaces and tabs, spaces
# at line ends, empty lines at the end, an empty body, folded headers, headers missing or
# repeated.
_LINE = st.text(st.sampled_from(["a", "b", " ", "\t", ".", "=", "é"]), max_size=12)


@pytest.fixture(scope="module")
def both_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[DkimSigner, Dns]:
    folder = tmp_path_factory.mktemp("keys")
    dns = Dns()
    dns.add("r", "rsa", make_key(folder, "rsa", "r.pem"))
    dns.add("e", "ed25519", make_key(folder, "ed25519", "e.pem"))
    return DkimSigner(DkimSettings(DOMAIN, (DkimKey("r", folder / "r.pem"),
                                            DkimKey("e", folder / "e.pem")))), dns


@settings(max_examples=50, deadline=None)
@given(lines=st.lists(_LINE, max_size=8), last=st.sampled_from(["", "x", "x ", "x\t", " x"]),
       trailing=st.integers(0, 3), subject=_LINE, fold=st.booleans(),
       second_from=st.booleans(), reply_to=st.booleans())
def test_canonicalisation_agrees_with_both_verifiers(
        both_keys: tuple[DkimSigner, Dns], lines: list[str], last: str, trailing: int,
        subject: str, fold: bool, second_from: bool, reply_to: bool) -> None:
    signer, dns = both_keys
    headers = ["From: Journal <journal@example.org>", "To: reader@example.net",
               "Subject: " + ("x\r\n\t " if fold else "") + "subject  with\tspace " + subject,
               "Date: Sat, 05 Dec 2026 08:00:00 +0000", "Message-ID: <1@example.org>",
               *(["From: second@example.org"] if second_from else []),
               *(["Reply-To:   r@example.org  "] if reply_to else []),
               "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
               "X-Not-Signed: anything"]
    body = "\r\n".join([*lines, last]) + "\r\n" * trailing
    raw = signer.sign(("\r\n".join(headers) + "\r\n\r\n" + body).encode("utf-8"))
    if not raw.endswith(b"\r\n"):  # SMTP ends every message with one: verify what arrives
        raw += b"\r\n"
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert verify_both(raw, dns, monkeypatch) == ["rsa-sha256", "ed25519-sha256"]
