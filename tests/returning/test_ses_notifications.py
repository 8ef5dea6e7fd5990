"""Amazon SES bounce and complaint notifications through SNS, posted to `newsletter serve`'s
/ses-notifications on loopback, signed with a test key whose certificate a loopback HTTP server
serves. The handler is given a fetcher that maps the (checked) sns.*.amazonaws.com URL to that
loopback server: the production path never trusts anything but HTTPS at an SNS host."""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from conftest import free_port
from pipeline.mail.return_path import return_path
from pipeline.subscribers.returns import sns
from returning import history, statuses, subscriber_id

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-bounces"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem"
SUBSCRIBE_URL = ("https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
                 f"&TopicArn={TOPIC}&Token=abc")


class Signer:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = datetime.now(UTC)
        self.pem = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                    .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(now - timedelta(days=1))
                    .not_valid_after(now + timedelta(days=30))
                    .sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))

    def sign(self, message: dict, version: str = "2", cert_url: str = CERT_URL) -> dict:
        message = {**message, "SignatureVersion": version, "SigningCertURL": cert_url}
        fields = sns._SIGNED[message["Type"]]
        text = "".join(f"{k}\n{message[k]}\n" for k in fields if k in message)
        algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
        signature = self.key.sign(text.encode(), padding.PKCS1v15(), algorithm)
        return {**message, "Signature": base64.b64encode(signature).decode()}


class Loopback:
    """A loopback HTTP server: the test's stand-in for SNS's certificate and confirm URLs."""

    def __init__(self, pem: bytes) -> None:
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append(self.path)
                body = pem if self.path.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def fetch(self, url: str) -> bytes:
        """What the handler is given instead of fetch_https: the URL's path, from loopback."""
        sns.sns_url(url)  # the handler checked it already; make sure of it here too
        path = url.split("amazonaws.com", 1)[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{self.server.server_port}{path}",
                                    timeout=5) as answer:
            return answer.read()


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


@pytest.fixture
def served(site: Path, signer: Signer) -> Iterator[tuple[Path, str, Loopback]]:
    """`newsletter serve`'s WSGI app on loopback, with its SES handler fetching from Loopback."""
    from pipeline.run import run
    from pipeline.subscribers.web_app import make_web_server

    with (site / "newsletter.toml").open("a", encoding="utf-8") as f:
        f.write(f'\n[bounces]\nsns_topics = ["{TOPIC}"]\n')
    text = (site / "newsletter.toml").read_text()
    (site / "newsletter.toml").write_text(
        text.replace("[email]\n", '[email]\nreturn_path = "bounces+{token}@example.org"\n'))
    run(site)
    loopback = Loopback(signer.pem)
    server = make_web_server(site, "127.0.0.1", free_port())
    app = server.app
    app.ses_notifications = sns.SesNotifications(
        app.config, sns.SignatureCheck(fetch=loopback.fetch), confirm=loopback.fetch)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield site, f"http://127.0.0.1:{server.server_address[1]}/ses-notifications", loopback
    finally:
        server.shutdown()
        server.server_close()
        loopback.server.shutdown()
        loopback.server.server_close()


def post(url: str, message: dict) -> tuple[int, str]:
    request = urllib.request.Request(url, data=json.dumps(message).encode(), method="POST",
                                     headers={"Content-Type": "text/plain; charset=UTF-8",
                                              "x-amz-sns-message-type": message.get("Type", "")})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode().strip()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode().strip()


def notification(message_id: str, body: dict) -> dict:
    return {"Type": "Notification", "MessageId": message_id, "TopicArn": TOPIC,
            "Message": json.dumps(body), "Timestamp": "2026-11-26T08:00:00.000Z"}


def bounce(address: str, source: str = "journal@example.org", bounce_type: str = "Permanent",
           sub_type: str = "General", status: str = "5.1.1") -> dict:
    return {"notificationType": "Bounce",
            "bounce": {"bounceType": bounce_type, "bounceSubType": sub_type,
                       "bouncedRecipients": [{
                           "emailAddress": address, "action": "failed", "status": status,
                           "diagnosticCode": f"smtp; 550 {status} no such user"}],
                       "timestamp": "2026-11-26T08:00:00.000Z"},
            "mail": {"source": source, "messageId": "0100018c-ses",
                     "commonHeaders": {"messageId": "<digest-00001-abcdefab-0000@example.org>"}}}


def secret_path(site: Path, email: str) -> str:
    key = b"test-secret-for-this-site-0123456789"  # conftest's NEWSLETTER_SECRET
    return return_path("bounces+{token}@example.org", key, 1, subscriber_id(site, email),
                       email)


def test_the_subscription_is_confirmed_once_the_signature_verifies(served, signer) -> None:
    _, url, loopback = served
    message = signer.sign({"Type": "SubscriptionConfirmation", "MessageId": "m-1",
                           "Token": "abc", "TopicArn": TOPIC,
                           "Message": "You have chosen to subscribe to the topic.",
                           "SubscribeURL": SUBSCRIBE_URL,
                           "Timestamp": "2026-11-26T08:00:00.000Z"}, version="1")
    assert post(url, message) == (200, "subscribed")
    assert loopback.requests == ["/SimpleNotificationService-test.pem",
                                 SUBSCRIBE_URL.split("amazonaws.com", 1)[1]]


def test_bounces_and_complaints_change_the_list(served, signer) -> None:
    site, url, loopback = served
    ada = secret_path(site, "ada@example.org")
    assert post(url, signer.sign(notification("m-2", bounce("ada@example.org", ada)))
                ) == (200, "bounced")
    complaint = {"notificationType": "Complaint",
                 "complaint": {"complainedRecipients": [{"emailAddress": "grace@example.org"}],
                               "complaintFeedbackType": "abuse"},
                 "mail": {"source": "journal@example.org"}}
    assert post(url, signer.sign(notification("m-3", complaint), version="1")
                ) == (200, "complained")
    assert statuses(site)["ada@example.org"] == "bounced"
    assert statuses(site)["grace@example.org"] == "complained"
    # The audit trail says how, with the status code or SES's own label.
    assert history(site, "ada@example.org")[-1] == ("bounce",
                                                    "status: active -> bounced (5.1.1)")
    assert history(site, "grace@example.org")[-1] == (
        "complaint", "status: active -> complained (SES complaint (feedback type abuse))")
    # The certificate was fetched once; the same notification again changes nothing.
    assert loopback.requests == ["/SimpleNotificationService-test.pem"]
    assert post(url, signer.sign(notification("m-2", bounce("ada@example.org", ada)))
                ) == (200, "seen before")
    assert len(history(site, "ada@example.org")) == 2  # imported, then bounced once


def test_without_a_status_code_the_audit_trail_has_the_ses_bounce_type(served, signer) -> None:
    site, url, _ = served
    body = bounce("ada@example.org", sub_type="NoEmail", status="")
    assert post(url, signer.sign(notification("m-6", body))) == (200, "bounced")
    assert history(site, "ada@example.org")[-1] == (
        "bounce", "status: active -> bounced (SES Permanent bounce (NoEmail))")
    # An address where a label belongs never reaches the trail.
    complaint = {"notificationType": "Complaint",
                 "complaint": {"complainedRecipients": [{"emailAddress": "grace@example.org"}],
                               "complaintFeedbackType": "see grace@example.org <x>"},
                 "mail": {"source": "journal@example.org"}}
    assert post(url, signer.sign(notification("m-7", complaint))) == (200, "complained")
    assert history(site, "grace@example.org")[-1] == ("complaint",
                                                      "status: active -> complained")


def test_a_transient_bounce_is_counted_not_applied(served, signer) -> None:
    site, url, _ = served
    body = bounce("ada@example.org", bounce_type="Transient", sub_type="MailboxFull",
                  status="4.2.2")
    assert post(url, signer.sign(notification("m-4", body))) == (200, "counted")
    assert statuses(site)["ada@example.org"] == "active"


@pytest.mark.parametrize("damage", ["tampered", "other key", "evil host", "http", "topic",
                                    "version", "forged token"])
def test_anything_not_from_our_topic_changes_nothing(served, signer, damage: str) -> None:
    site, url, loopback = served
    message = signer.sign(notification("m-5", bounce("ada@example.org")))
    if damage == "tampered":
        message["Message"] = message["Message"].replace("ada@", "grace@")
    elif damage == "other key":
        message = Signer().sign(notification("m-5", bounce("ada@example.org")))
    elif damage == "evil host":
        message = signer.sign(notification("m-5", bounce("ada@example.org")),
                              cert_url="https://sns.eu-west-1.amazonaws.com.evil.example/c.pem")
    elif damage == "http":
        message = signer.sign(notification("m-5", bounce("ada@example.org")),
                              cert_url=CERT_URL.replace("https:", "http:"))
    elif damage == "topic":
        other = {**notification("m-5", bounce("ada@example.org")),
                 "TopicArn": "arn:aws:sns:eu-west-1:999999999999:someone-elses"}
        message = signer.sign(other)
    elif damage == "version":
        message["SignatureVersion"] = "3"
    elif damage == "forged token":
        forged = secret_path(site, "ada@example.org")[:-20] + "aaaaaaaa@example.org"
        message = signer.sign(notification("m-5", bounce("ada@example.org", forged)))
    code, text = post(url, message)
    if damage == "forged token":
        assert (code, text) == (200, "kept")
    else:
        assert code == 403, text
    if damage in ("evil host", "http"):
        assert loopback.requests == []  # never fetched from there
    assert statuses(site)["ada@example.org"] == "active"


def test_bad_requests_are_refused(served) -> None:
    _, url, _ = served
    assert post(url, {"Type": "Nonsense"})[0] == 400
    request = urllib.request.Request(url, data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5)
    assert refused.value.code == 405
