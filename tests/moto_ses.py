"""Amazon SES on loopback: moto's server mode (a real HTTP server speaking the SES API) in a
thread of this process, for the SES backend's tests and bench/ses_bench.py.

`newsletter send` runs as a child process with `MotoSes.env()`: AWS_ENDPOINT_URL points boto3
at the server, dummy credentials and a region come from the environment (the standard AWS
chain), and nothing can reach a real AWS endpoint or the instance-metadata address.

Two things only an in-process server allows: raising the sending quota (moto 5.2 hard-codes
200 a day and 1 a second in `moto.ses.models.SESQuota` and offers no API to change it), and
switching on moto's request authentication (`moto.settings.INITIAL_NO_AUTH_ACTION_COUNT`) so
that unknown credentials are refused as AWS would refuse them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REGION = "eu-west-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIAMOTOTESTING00000", "AWS_SECRET_ACCESS_KEY": "moto"}
# What could lead boto3 to other credentials or endpoints than the test's.
AWS_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                 "AWS_SECURITY_TOKEN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE",
                 "AWS_ROLE_ARN", "AWS_ENDPOINT_URL_SESV2", "AWS_ENDPOINT_URL_SES",
                 "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")


SES_CONFIG = f'\n[delivery]\nbackend = "ses"\n\n[ses]\nregion = "{REGION}"\n'


def use_ses(site: Path) -> Path:
    """Make the site send through SES in REGION."""
    with (site / "newsletter.toml").open("a", encoding="utf-8") as f:
        f.write(SES_CONFIG)
    return site


def newsletter(site: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The real command in a child process, as cron would run it."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args, "--site", str(site)],
                          env={**env, "NEWSLETTER_SECRET": "test-secret-for-this-site-0123456789"},
                          capture_output=True, text=True, timeout=300)


def emls(site: Path, folder: str) -> dict[str, bytes]:
    """name → bytes of the messages in outbox/<folder>/."""
    return {p.name: p.read_bytes() for p in (site / "outbox" / folder).glob("*.eml")}


def replies(site: Path) -> dict[str, tuple[str, str]]:
    """address → (state, reply) of each digest message, straight from the ledger."""
    from pipeline.state.ledger import open_ledger

    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        return {d.address: (d.state, d.reply) for d in ledger.deliveries()}


def statuses(site: Path) -> dict[str, str]:
    """address → status on the list, as the ledger has it."""
    from pipeline.state.ledger import open_ledger
    from pipeline.state.subscribers import SubscriberBook

    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        return {s.email: s.status for s in SubscriberBook(ledger).everyone()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def aws_env(endpoint: str, credentials: bool = True) -> dict[str, str]:
    """This process's environment, with AWS settings for a test endpoint only."""
    env = {k: v for k, v in os.environ.items() if k not in AWS_VARIABLES}
    env.update({"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": REGION,
                "AWS_EC2_METADATA_DISABLED": "true",  # never ask 169.254.169.254
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    if credentials:
        env.update(CREDENTIALS)
    return env


class MotoSes:
    """A running moto server, reset for each test that takes it."""

    def __init__(self, host: str, port: int) -> None:
        self.url = f"http://{host}:{port}"

    def env(self, credentials: bool = True) -> dict[str, str]:
        return aws_env(self.url, credentials)

    def client(self, service: str = "sesv2") -> Any:
        import boto3

        return boto3.session.Session(**{k.lower(): v for k, v in CREDENTIALS.items()}).client(
            service, region_name=REGION, endpoint_url=self.url)

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset",
                                                      method="POST"), timeout=10).close()

    def verify(self, identity: str) -> None:
        """Make `identity` (a domain or an address) a verified sender, as in the console."""
        self.client().create_email_identity(EmailIdentity=identity)

    def set_quota(self, rate: float, per_day: float = -1) -> None:
        """The account's quota as SES reports it (moto's is fixed at 1/s and 200 a day)."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import SESQuota, ses_backends

        backend = ses_backends[DEFAULT_ACCOUNT_ID][REGION]

        def quota() -> SESQuota:
            found = SESQuota(backend.sent_message_count)
            found.max_send_rate, found.max24_hour_send = rate, per_day
            return found

        backend.get_send_quota = quota  # an instance attribute: /moto-api/reset drops it

    def received(self) -> list[dict[str, Any]]:
        """Every raw message the server took: {"id", "source", "destinations", "raw_data"},
        from moto's own record (GET /moto-api/data.json → ses → RawMessage)."""
        with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=60) as answer:
            return list(json.load(answer)["ses"]["RawMessage"])


@contextmanager
def moto_ses_server() -> Iterator[MotoSes]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        yield MotoSes(*server.get_host_and_port())
    finally:
        server.stop()
