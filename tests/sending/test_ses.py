"""Amazon SES as the delivery backend, against moto's server mode on loopback: the real
`newsletter run` and `newsletter send` in child processes, boto3 pointed at the server by
AWS_ENDPOINT_URL, and what moto received compared byte for byte with the outbox."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import add_subscribers, markdown_entry, write_entry
from moto_ses import (
    REGION,
    MotoSes,
    aws_env,
    emls,
    free_port,
    newsletter,
    replies,
    statuses,
    use_ses,
)


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoSes]:
    try:
        from moto_ses import moto_ses_server
        with moto_ses_server() as server:
            yield server
    except ImportError as exc:  # the test extra is not installed
        pytest.skip(f"moto's server mode is not installed ({exc}): pip install -e '.[test]'")


@pytest.fixture
def ses(moto_server: MotoSes) -> MotoSes:
    """The server, emptied, with example.org verified and a quota large enough for tests."""
    moto_server.reset()
    moto_server.verify("example.org")
    moto_server.set_quota(rate=200)
    return moto_server


@pytest.fixture
def ses_site(site: Path) -> Path:
    write_entry(site, "a.md", markdown_entry(title="Sleep and blood pressure"))
    return use_ses(site)


def test_every_message_arrives_once_with_the_exact_bytes_of_its_eml(
        ses: MotoSes, ses_site: Path) -> None:
    addresses = add_subscribers(ses_site, 40)
    ran = newsletter(ses_site, ses.env(), "run")
    assert ran.returncode == 0, ran.stderr
    written = emls(ses_site, "new")
    assert len(written) == 40
    sent = newsletter(ses_site, ses.env(), "send")
    assert sent.returncode == 0, sent.stderr
    received = ses.received()
    assert sorted(m["raw_data"].encode() for m in received) == sorted(written.values())
    # Each to its own subscriber (the envelope recipient SES was given), once.
    assert Counter(m["destinations"][0] for m in received) == Counter(addresses)
    assert {m["source"] for m in received} == {"journal@example.org"}
    assert emls(ses_site, "sent") == written and emls(ses_site, "new") == {}
    # The ledger keeps SES's message ID: its bounce and complaint notifications name it.
    ids = {m["id"] for m in received}
    recorded = replies(ses_site)
    assert {state for state, _ in recorded.values()} == {"sent"}
    assert {reply.removeprefix("accepted by SES: MessageId ") for _, reply in
            recorded.values()} == ids
    again = newsletter(ses_site, ses.env(), "send")
    assert again.returncode == 0 and len(ses.received()) == 40


def test_the_accounts_send_rate_is_read_from_ses_and_kept(ses: MotoSes, ses_site: Path) -> None:
    ses.set_quota(rate=4)
    add_subscribers(ses_site, 9)
    assert newsletter(ses_site, ses.env(), "run").returncode == 0
    began = time.monotonic()
    sent = newsletter(ses_site, ses.env(), "send", "--verbose")
    took = time.monotonic() - began
    assert sent.returncode == 0, sent.stderr
    assert len(ses.received()) == 9
    assert took >= 8 / 4  # nine starts at most four a second apart: two seconds at least
    # moto lacks SESv2 GetAccount: the quota comes from v1 GetSendQuota, and the log says so.
    assert "GetSendQuota" in sent.stderr and "4 messages a second" in sent.stderr


def test_a_used_up_daily_quota_stops_the_send_with_the_rest_queued(
        ses: MotoSes, ses_site: Path) -> None:
    ses.set_quota(rate=100, per_day=3)
    add_subscribers(ses_site, 8)
    assert newsletter(ses_site, ses.env(), "run").returncode == 0
    sent = newsletter(ses_site, ses.env(), "send", "--verbose")
    assert sent.returncode == 69, sent.stderr
    assert "daily sending quota is used up" in sent.stderr
    assert len(ses.received()) == 3
    assert len(emls(ses_site, "sent")) == 3 and emls(ses_site, "failed") == {}
    assert len(emls(ses_site, "new")) == 5
    assert set(statuses(ses_site).values()) == {"active"}


def test_an_unverified_sender_stops_the_send_with_everything_queued(
        ses: MotoSes, ses_site: Path) -> None:
    ses.reset()  # example.org is not verified now
    ses.set_quota(rate=100)
    assert newsletter(ses_site, ses.env(), "run").returncode == 0
    before = emls(ses_site, "new")
    sent = newsletter(ses_site, ses.env(), "send")
    assert sent.returncode == 78, sent.stderr
    assert "verify the sending identity" in sent.stderr
    assert "stay queued in outbox/new" in sent.stderr
    assert emls(ses_site, "new") == before and emls(ses_site, "failed") == {}
    assert set(statuses(ses_site).values()) <= {"active", "unsubscribed"}
    assert ses.received() == []


def test_refused_credentials_are_a_setup_error_that_shows_no_secret(
        ses: MotoSes, ses_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import settings

    assert newsletter(ses_site, ses.env(), "run").returncode == 0
    before = emls(ses_site, "new")
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # AWS-like sign-in
    secret = "wJalrXUtnFEMI-test-secret-never-printed"
    env = {**ses.env(), "AWS_SECRET_ACCESS_KEY": secret}
    sent = newsletter(ses_site, env, "send")
    assert sent.returncode == 78, sent.stderr
    assert "refused our AWS credentials (InvalidClientTokenId" in sent.stderr
    assert "AWS_ACCESS_KEY_ID" in sent.stderr  # what to check
    assert secret not in sent.stderr + sent.stdout
    assert emls(ses_site, "new") == before
    test = newsletter(ses_site, env, "send", "--test", "me@example.org")
    assert test.returncode == 78 and "refused our AWS credentials" in test.stderr


def test_no_credentials_at_all_are_a_setup_error(ses: MotoSes, ses_site: Path) -> None:
    assert newsletter(ses_site, ses.env(), "run").returncode == 0
    sent = newsletter(ses_site, ses.env(credentials=False), "send")
    assert sent.returncode == 78, sent.stderr
    assert "no AWS credentials found" in sent.stderr or "Unable to locate" in sent.stderr
    assert len(emls(ses_site, "new")) == 2


def test_an_unreachable_endpoint_stops_the_send_with_everything_queued(ses_site: Path) -> None:
    env = aws_env(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert newsletter(ses_site, env, "run").returncode == 0
    before = emls(ses_site, "new")
    sent = newsletter(ses_site, env, "send")
    assert sent.returncode == 69, sent.stderr
    assert "cannot reach Amazon SES in eu-west-1" in sent.stderr + sent.stdout
    assert emls(ses_site, "new") == before
    assert emls(ses_site, "sent") == {} and emls(ses_site, "failed") == {}
    assert set(statuses(ses_site).values()) <= {"active", "unsubscribed"}


def test_send_test_goes_through_ses(ses: MotoSes, ses_site: Path) -> None:
    assert newsletter(ses_site, ses.env(), "run").returncode == 0
    test = newsletter(ses_site, ses.env(), "send", "--test", "me@example.org")
    assert test.returncode == 0, test.stderr
    [message] = ses.received()
    assert message["destinations"][0] == "me@example.org"
    assert "Subject: [TEST]" in message["raw_data"]
    assert f"MessageId {message['id']}" in test.stdout
    assert len(emls(ses_site, "new")) == 2  # the outbox is not touched


def test_aws_credentials_in_newsletter_toml_are_refused(ses_site: Path) -> None:
    secret = "wJalrXUtnFEMI-pasted-into-the-file"
    with (ses_site / "newsletter.toml").open("a", encoding="utf-8") as f:
        f.write(f'aws_secret_access_key = "{secret}"\n')
    sent = newsletter(ses_site, aws_env("http://127.0.0.1:9"), "send")
    assert sent.returncode == 78
    assert "ses.aws_secret_access_key: AWS credentials never go in newsletter.toml" in sent.stderr
    assert "AWS_PROFILE" in sent.stderr and "unknown key" not in sent.stderr
    assert secret not in sent.stderr + sent.stdout
    checked = newsletter(ses_site, aws_env("http://127.0.0.1:9"), "check")
    assert checked.returncode == 1 and "never go in newsletter.toml" in checked.stderr


def test_ses_settings_are_checked_before_anything_is_sent(ses_site: Path) -> None:
    text = (ses_site / "newsletter.toml").read_text(encoding="utf-8")
    (ses_site / "newsletter.toml").write_text(
        text.replace(f'region = "{REGION}"', 'configuration_set = "has spaces"'),
        encoding="utf-8")
    sent = newsletter(ses_site, aws_env("http://127.0.0.1:9"), "send", "--dry-run")
    assert sent.returncode == 78
    assert "ses.configuration_set: 'has spaces' is not a configuration set name" in sent.stderr
    (ses_site / "newsletter.toml").write_text(text.replace(REGION, "europe"), encoding="utf-8")
    sent = newsletter(ses_site, aws_env("http://127.0.0.1:9"), "send", "--dry-run")
    assert sent.returncode == 78 and "ses.region: 'europe' is not an AWS region" in sent.stderr
    (ses_site / "newsletter.toml").write_text(text.replace(f'region = "{REGION}"', ""),
                                              encoding="utf-8")
    sent = newsletter(ses_site, aws_env("http://127.0.0.1:9"), "send")
    assert sent.returncode == 78 and "ses.region: is not set" in sent.stderr


def test_only_a_send_through_ses_imports_boto3(ses_site: Path) -> None:
    env = {**aws_env("http://127.0.0.1:9"),
           "NEWSLETTER_SECRET": "test-secret-for-this-site-0123456789"}

    def imported(*args: str) -> set[str]:
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "pipeline", *args,
                               "--site", str(ses_site)], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}

    for command in (("run",), ("run",), ("send", "--dry-run"), ("check",)):
        assert not {"boto3", "botocore"} & imported(*command), command


def test_only_the_ses_backend_imports_the_aws_sdk() -> None:
    import ast

    package = Path(__file__).resolve().parents[2] / "pipeline"
    importers = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            if any(name.split(".")[0] in ("boto3", "botocore") for name in names):
                importers.add(path.relative_to(package.parent).as_posix())
    assert importers == {"pipeline/delivery/ses.py"}
