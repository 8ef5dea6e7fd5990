"""How the SES backend takes SES's refusals: throttling, a rejected message, a refused address,
a paused account, a server error. moto accepts everything, so these run against a small HTTP
server on loopback that answers as SES API v2 does (its JSON, its x-amzn-ErrorType header),
then accepts; the real `newsletter send` talks to it through AWS_ENDPOINT_URL."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import markdown_entry, write_entry
from moto_ses import aws_env, emls, newsletter, replies, statuses, use_ses

Answer = tuple[int, str, str] | None  # (HTTP status, error code, message); None: accept


class FakeSes:
    """SES API v2's GetAccount and SendEmail, answered by `answer` (a request → Answer)."""

    def __init__(self) -> None:
        self.account: dict[str, Any] = {
            "SendingEnabled": True, "ProductionAccessEnabled": True,
            "SendQuota": {"Max24HourSend": 50000.0, "MaxSendRate": 100.0,
                          "SentLast24Hours": 0.0}}
        self.account_answer: Answer = None  # an error for GetAccount instead of the account
        self.answer: Callable[[dict[str, Any]], Answer] = lambda request: None
        self.accepted: list[tuple[str, bytes]] = []  # (recipient, raw bytes)
        self.refused: list[str] = []  # the error code of each refused call
        self.lock = threading.Lock()

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if method == "GET" and path == "/v2/email/account":
            if self.account_answer is None:
                return 200, {}, json.dumps(self.account).encode()
            status, code, message = self.account_answer
            return status, {"x-amzn-ErrorType": code}, json.dumps({"message": message}).encode()
        if method == "POST" and path == "/v2/email/outbound-emails":
            request = json.loads(body)
            with self.lock:
                answer = self.answer(request)
                if answer is None:
                    recipient = request["Destination"]["ToAddresses"][0]
                    data = base64.b64decode(request["Content"]["Raw"]["Data"])
                    self.accepted.append((recipient, data))
                    reply = {"MessageId": f"fake-{len(self.accepted):04d}"}
                    return 200, {}, json.dumps(reply).encode()
                self.refused.append(answer[1])
            status, code, message = answer
            return status, {"x-amzn-ErrorType": code}, json.dumps({"message": message}).encode()
        return 404, {"x-amzn-ErrorType": "NotFoundException"}, b'{"message": "no such path"}'


@pytest.fixture
def fake_ses() -> Iterator[tuple[FakeSes, str]]:
    fake = FakeSes()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, payload = fake.handle(self.command, self.path, body)
            self.send_response(status)
            for name, value in {**headers, "Content-Type": "application/json",
                                "Content-Length": str(len(payload))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _reply

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def written(site: Path, fake_ses: tuple[FakeSes, str]) -> Path:
    """A site sending through SES, with one digest for ada and grace in outbox/new."""
    use_ses(site)
    write_entry(site, "a.md", markdown_entry(title="Sleep and blood pressure"))
    assert newsletter(site, aws_env(fake_ses[1]), "run").returncode == 0
    assert len(emls(site, "new")) == 2
    return site


def throttling(times: int, code: str = "TooManyRequestsException", status: int = 429,
               message: str = "Maximum sending rate exceeded.") -> Callable[..., Answer]:
    left = [times]

    def answer(request: dict[str, Any]) -> Answer:
        if left[0] > 0:
            left[0] -= 1
            return status, code, message
        return None
    return answer


def test_throttling_is_retried_and_then_pauses_the_whole_send_spending_no_attempt(
        written: Path, fake_ses: tuple[FakeSes, str]) -> None:
    fake, url = fake_ses
    fake.answer = throttling(6)  # more than one message's retries: the send pauses once
    with (written / "newsletter.toml").open("a", encoding="utf-8") as f:
        f.write("connections = 1\n")  # one thread: all six answers go to the first message
    before = emls(written, "new")
    sent = newsletter(written, aws_env(url), "send", "--verbose")
    assert sent.returncode == 0, sent.stderr
    assert fake.refused == ["TooManyRequestsException"] * 6
    assert sorted(data for _, data in fake.accepted) == sorted(before.values())
    assert sorted(r for r, _ in fake.accepted) == ["ada@example.org", "grace@example.org"]
    assert "is throttling us" in sent.stderr and "pausing" in sent.stderr
    assert {state for state, _ in replies(written).values()} == {"sent"}
    # The real SES path: the quota came from SESv2 GetAccount.
    assert "SES account (GetAccount): 100 messages a second" in sent.stderr


@pytest.mark.parametrize(("code", "status"), [("Throttling", 400),
                                              ("LimitExceededException", 400),
                                              ("ServiceUnavailable", 503)])
def test_every_kind_of_throttling_is_retried(written: Path, fake_ses: tuple[FakeSes, str],
                                             code: str, status: int) -> None:
    fake, url = fake_ses
    fake.answer = throttling(2, code, status)
    sent = newsletter(written, aws_env(url), "send")
    assert sent.returncode == 0, sent.stderr
    assert fake.refused == [code, code] and len(fake.accepted) == 2


def test_a_used_up_daily_quota_answered_by_ses_stops_the_send(
        written: Path, fake_ses: tuple[FakeSes, str]) -> None:
    fake, url = fake_ses
    fake.answer = lambda request: (400, "LimitExceededException", "Daily message quota exceeded.")
    sent = newsletter(written, aws_env(url), "send")
    assert sent.returncode == 69, sent.stderr
    assert "Daily message quota exceeded" in sent.stdout + sent.stderr
    assert len(emls(written, "new")) == 2 and emls(written, "failed") == {}


def test_a_rejected_message_fails_alone_and_only_a_refused_address_is_marked(
        written: Path, fake_ses: tuple[FakeSes, str]) -> None:
    fake, url = fake_ses

    def answer(request: dict[str, Any]) -> Answer:
        if request["Destination"]["ToAddresses"] == ["ada@example.org"]:
            return 400, "MessageRejected", "Transaction failed: Message contains a virus."
        return 400, "BadRequestException", "Illegal address"
    fake.answer = answer
    sent = newsletter(written, aws_env(url), "send")
    assert sent.returncode == 1, sent.stderr
    assert len(emls(written, "failed")) == 2 and emls(written, "new") == {}
    assert statuses(written)["ada@example.org"] == "active"  # the content, not the address
    assert statuses(written)["grace@example.org"] == "bounced"
    recorded = replies(written)
    assert recorded["ada@example.org"] == (
        "failed", "SES MessageRejected: Transaction failed: Message contains a virus.")
    assert recorded["grace@example.org"] == ("failed", "SES BadRequestException: Illegal address")
    again = newsletter(written, aws_env(url), "send")  # nothing is tried twice
    assert again.returncode == 0 and len(fake.refused) == 2


def test_a_server_error_defers_the_message_for_a_later_send(
        written: Path, fake_ses: tuple[FakeSes, str]) -> None:
    fake, url = fake_ses
    fake.answer = lambda request: (500, "InternalFailure", "We encountered an internal error.")
    sent = newsletter(written, aws_env(url), "send")
    assert sent.returncode == 0, sent.stderr
    assert len(emls(written, "new")) == 2 and emls(written, "failed") == {}
    assert {state for state, _ in replies(written).values()} == {"deferred"}


@pytest.mark.parametrize(("code", "says"), [
    ("MailFromDomainNotVerifiedException", "MAIL FROM domain"),
    ("AccountSuspendedException", "account is suspended"),
    ("SendingPausedException", "sending is paused"),
    ("NotFoundException", "ses.configuration_set"),
    ("AccessDeniedException", "refused our AWS credentials"),
])
def test_a_refusal_of_the_account_stops_the_send_with_everything_queued(
        written: Path, fake_ses: tuple[FakeSes, str], code: str, says: str) -> None:
    fake, url = fake_ses
    fake.answer = lambda request: (400, code, "refused")
    before = emls(written, "new")
    sent = newsletter(written, aws_env(url), "send")
    assert sent.returncode == 78, sent.stderr
    assert says in sent.stderr and "stay queued in outbox/new" in sent.stderr
    assert emls(written, "new") == before and emls(written, "failed") == {}
    assert set(statuses(written).values()) <= {"active", "unsubscribed"}


def test_an_account_with_sending_disabled_sends_nothing(
        written: Path, fake_ses: tuple[FakeSes, str]) -> None:
    fake, url = fake_ses
    fake.account["SendingEnabled"] = False
    sent = newsletter(written, aws_env(url), "send")
    assert sent.returncode == 78 and "SendingEnabled is false" in sent.stderr
    assert fake.accepted == [] and fake.refused == []


def test_the_configuration_set_and_the_envelope_sender_are_passed_to_ses(
        written: Path, fake_ses: tuple[FakeSes, str]) -> None:
    fake, url = fake_ses
    seen: list[dict[str, Any]] = []
    fake.answer = lambda request: seen.append(request)  # type: ignore[func-returns-value]
    with (written / "newsletter.toml").open("a", encoding="utf-8") as f:
        f.write('configuration_set = "journal-events"\nenvelope_from = "bounces@example.org"\n')
    assert newsletter(written, aws_env(url), "send").returncode == 0
    assert {r["ConfigurationSetName"] for r in seen} == {"journal-events"}
    assert {r["FeedbackForwardingEmailAddress"] for r in seen} == {"bounces@example.org"}
    assert {r["FromEmailAddress"] for r in seen} == {"journal@example.org"}


def test_without_leave_to_read_the_quota_the_send_goes_on_at_one_a_second(
        written: Path, fake_ses: tuple[FakeSes, str]) -> None:
    fake, url = fake_ses
    fake.account_answer = (403, "AccessDeniedException", "not authorized to ses:GetAccount")
    sent = newsletter(written, aws_env(url), "send", "--verbose")  # v1 is not offered either
    assert sent.returncode == 0, sent.stderr
    assert "GetAccount answered AccessDeniedException" in sent.stderr
    assert "cannot read the SES account's send rate" in sent.stderr
    assert "sending at 1 messages a second" in sent.stderr
    assert len(fake.accepted) == 2


def test_throttling_that_does_not_end_stops_the_send_with_no_attempt_spent(
        written: Path, fake_ses: tuple[FakeSes, str]) -> None:
    fake, url = fake_ses
    fake.answer = lambda request: (429, "TooManyRequestsException", "Maximum sending rate "
                                   "exceeded.")
    with (written / "newsletter.toml").open("a", encoding="utf-8") as f:
        f.write("connections = 1\n")
    before = emls(written, "new")
    sent = newsletter(written, aws_env(url), "send")
    assert sent.returncode == 69, sent.stderr
    assert "still limited after 6 pauses" in sent.stdout + sent.stderr
    assert emls(written, "new") == before and fake.accepted == []
    assert replies(written) == {}  # nothing recorded: no attempt spent, no retry time set


def test_a_profile_that_is_not_there_is_a_setup_error(
        written: Path, fake_ses: tuple[FakeSes, str]) -> None:
    env = {**aws_env(fake_ses[1], credentials=False), "AWS_PROFILE": "no-such-profile"}
    sent = newsletter(written, env, "send")
    assert sent.returncode == 78, sent.stderr
    assert "no-such-profile" in sent.stderr and len(emls(written, "new")) == 2
