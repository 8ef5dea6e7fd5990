"""Amazon SES bounce and complaint notifications, delivered by SNS to `newsletter serve` at
/ses-notifications: the message signature is verified (SignatureVersion 1 and 2), the
subscription confirmed, and each Bounce or Complaint goes through the same rules as returning
mail (apply.py).

SNS signs for every AWS account alike, so a valid signature proves only that SNS sent it: the
TopicArn must also be one of `bounces.sns_topics`, or the notification changes nothing. The
signing certificate is fetched only over HTTPS from an `sns.<region>.amazonaws.com` host, and
kept; the subscription is confirmed only at such a host too.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline.core.config import Config, load_config
from pipeline.state.ledger import open_ledger
from pipeline.state.secret import load_secrets
from pipeline.subscribers.returns.apply import Handled, handle
from pipeline.subscribers.returns.classify import (
    BOUNCE,
    COMPLAINT,
    DELIVERED,
    OUR_DIGEST_ID,
    PERMANENT,
    POLICY,
    PRINTABLE,
    TEMPORARY,
    UNRECOGNISED,
    Failure,
    Verdict,
    failure_kind,
)
from pipeline.subscribers.returns.parts import status_of

log = logging.getLogger("pipeline")
SES_PATH = "/ses-notifications"
MAX_BODY = 256 * 1024  # SNS messages are at most 256 KB
_SNS_HOST = re.compile(r"sns\.[a-z0-9-]{1,30}\.amazonaws\.com(\.cn)?")
_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                 "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                "TopicArn", "Type"),
}
Fetch = Callable[[str], bytes]  # URL → body; only ever called with an sns.*.amazonaws.com URL


class Refused(Exception):
    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


def sns_url(url: object) -> str:
    """The URL if it is HTTPS at an SNS host (the only place we fetch from); else Refused."""
    if not isinstance(url, str):
        raise Refused(400, "no URL")
    parts = urlsplit(url)
    if parts.scheme != "https" or not _SNS_HOST.fullmatch(parts.hostname or "") \
            or parts.port not in (None, 443) or parts.username or parts.password:
        raise Refused(403, "the URL is not at an sns.<region>.amazonaws.com host over HTTPS")
    return url


def fetch_https(url: str) -> bytes:
    """GET an SNS URL (already checked) over verified TLS; at most 64 KB."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as answer:  # https at an SNS host only
        return answer.read(65536)


class SignatureCheck:
    """Verifies SNS signatures; certificates are fetched once per URL and kept."""

    def __init__(self, fetch: Fetch = fetch_https) -> None:
        self.fetch = fetch
        self.keys: dict[str, Any] = {}
        self.lock = threading.Lock()

    def verify(self, message: dict[str, Any]) -> None:
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        kind = message.get("Type")
        if kind not in _SIGNED:
            raise Refused(400, f"unknown message type {kind!r}")
        version = str(message.get("SignatureVersion", ""))
        algorithm = {"1": hashes.SHA1, "2": hashes.SHA256}.get(version)
        if algorithm is None:
            raise Refused(403, f"unknown SignatureVersion {version!r}")
        url = sns_url(message.get("SigningCertURL"))
        if not url.endswith(".pem"):
            raise Refused(403, "the signing certificate URL does not name a .pem file")
        text = "".join(f"{name}\n{message[name]}\n" for name in _SIGNED[kind]
                       if name in message and isinstance(message[name], str))
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except ValueError:
            raise Refused(403, "the signature is not base64") from None
        with self.lock:
            key = self.keys.get(url)
        if key is None:
            try:
                certificate = x509.load_pem_x509_certificate(self.fetch(url))
            except Exception as exc:
                raise Refused(502, f"cannot get the signing certificate ({exc})") from None
            now = datetime.now(UTC)
            if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
                raise Refused(403, "the signing certificate is not valid now")
            key = certificate.public_key()
            with self.lock:
                if len(self.keys) > 50:  # a handful in practice; never grows without bound
                    self.keys.clear()
                self.keys[url] = key
        try:
            key.verify(signature, text.encode(), padding.PKCS1v15(), algorithm())
        except (InvalidSignature, TypeError, ValueError):
            raise Refused(403, "the signature does not verify") from None


def ses_verdict(notification: dict[str, Any], key: str) -> Verdict:
    """An SES Bounce or Complaint notification (or event) as returning mail's verdict."""
    kind = str(notification.get("notificationType") or notification.get("eventType") or "")
    mail = notification.get("mail") if isinstance(notification.get("mail"), dict) else {}
    verdict = Verdict(UNRECOGNISED, key, reason=f"an SES {kind or 'unknown'} notification",
                      from_provider=True)  # the signature and topic were checked
    verdict.sent_to = [str(a) for a in (mail.get("source"),) if isinstance(a, str)]
    headers = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), dict) else {}
    found = OUR_DIGEST_ID.search(str(headers.get("messageId", "")).encode())
    if found:
        verdict.digest_id, verdict.digest_for = int(found[1]), found[2].decode()
    if kind == "Bounce":
        bounce = _dict(notification.get("bounce"))
        bounce_type = str(bounce.get("bounceType", ""))
        sub_type = str(bounce.get("bounceSubType", ""))
        default = PERMANENT if bounce_type == "Permanent" else TEMPORARY
        if sub_type in ("ContentRejected", "AttachmentRejected", "MessageTooLarge"):
            default = POLICY
        for recipient in _list(bounce.get("bouncedRecipients")):
            diagnostic = str(recipient.get("diagnosticCode", ""))[:200]
            status = status_of(str(recipient.get("status", ""))) or status_of(diagnostic)
            found_kind = default if default == POLICY else failure_kind(status, diagnostic,
                                                                        default)
            verdict.failures.append(Failure(str(recipient.get("emailAddress", "")),
                                            found_kind, status, diagnostic,
                                            f"SES {bounce_type} bounce ({sub_type})"))
        verdict.kind = BOUNCE
        verdict.reason = f"an SES {bounce_type} bounce ({sub_type})"
    elif kind == "Complaint":
        complaint = _dict(notification.get("complaint"))
        feedback = str(complaint.get("complaintFeedbackType") or "abuse")
        if feedback == "not-spam":
            verdict.reason = "an SES not-spam report"
            return verdict
        label = f"SES complaint (feedback type {feedback})"
        verdict.failures = [Failure(str(r.get("emailAddress", "")), "complaint", "",
                                    label, label)
                            for r in _list(complaint.get("complainedRecipients"))]
        verdict.kind, verdict.reason = COMPLAINT, f"an SES complaint ({feedback})"
    elif kind == "Delivery":
        verdict.kind = DELIVERED
    verdict.failures = [f for f in verdict.failures if PRINTABLE.fullmatch(f.address)]
    if verdict.kind in (BOUNCE, COMPLAINT) and not verdict.failures:
        verdict.kind = UNRECOGNISED
    return verdict


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> Iterable[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


class SesNotifications:
    """The WSGI app for SES's SNS notifications; mount it at SES_PATH."""

    def __init__(self, site: Path | Config, signatures: SignatureCheck | None = None,
                 confirm: Fetch = fetch_https) -> None:
        self.config = site if isinstance(site, Config) else load_config(site)
        self.signatures = signatures or SignatureCheck()
        self.confirm = confirm

    def __call__(self, environ: dict, start_response: Callable[..., object]) -> list[bytes]:
        try:
            code, text = 200, self.receive(environ)
        except Refused as exc:
            code, text = exc.code, str(exc)
            log.warning("ses-notifications: %d %s", code, text)
        reasons = {200: "OK", 400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed",
                   413: "Content Too Large", 502: "Bad Gateway"}
        body = (text + "\n").encode()
        start_response(f"{code} {reasons.get(code, 'Error')}",
                       [("Content-Type", "text/plain; charset=utf-8"),
                        ("Content-Length", str(len(body)))])
        return [body]

    def receive(self, environ: dict) -> str:
        if environ.get("REQUEST_METHOD", "GET").upper() != "POST":
            raise Refused(405, "SNS posts its notifications here")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            raise Refused(413, "too large for an SNS message")
        try:
            message = json.loads(environ["wsgi.input"].read(length))
        except ValueError:
            raise Refused(400, "not JSON") from None
        if not isinstance(message, dict):
            raise Refused(400, "not an SNS message")
        self.signatures.verify(message)
        topics = self.config.bounces.sns_topics
        if message.get("TopicArn") not in topics:
            raise Refused(403, "the topic is not one of bounces.sns_topics")
        if message["Type"] == "SubscriptionConfirmation":
            self.confirm(sns_url(message.get("SubscribeURL")))
            log.info("ses-notifications: subscribed to %s", message["TopicArn"])
            return "subscribed"
        if message["Type"] == "UnsubscribeConfirmation":
            return "noted"
        try:
            notification = json.loads(str(message.get("Message", "")))
        except ValueError:
            raise Refused(400, "the notification is not JSON") from None
        verdict = ses_verdict(_dict(notification), f"sns:{message.get('MessageId', '')}")
        return self.apply(verdict).outcome

    def apply(self, verdict: Verdict) -> Handled:
        with open_ledger(self.config.state_dir) as ledger:
            handled = handle(verdict, self.config, ledger, load_secrets(self.config.state_dir),
                             datetime.now(UTC), "ses")
        for address, status, code in handled.changes:
            log.info("ses-notifications: %s is %s now (%s)", address, status, code or "-")
        if handled.keep:
            log.warning("ses-notifications: kept aside: %s", handled.detail)
        return handled
