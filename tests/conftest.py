"""Shared fixtures: a real temporary site with real files, a real SQLite ledger, and a real
SMTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from pipeline.config import Config, load_config

REPO = Path(__file__).resolve().parent.parent
ENTRIES = Path(__file__).resolve().parent / "entries"
SEED = REPO.parent / "shared" / "seed" / "000_49d78995710967fa.txt"
# A fixed "now" for stage tests; end-to-end CLI tests use the real clock.
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

CONFIG = """\
[site]
title = "Test Clinic Journal"
url = "https://journal.example.org/"
id = "test-clinic-journal"
description = "A journal for tests."
timezone = "Europe/London"
author = "Test Clinic"

[digest]
max_articles = 10

[email]
from = "Test Clinic Journal <journal@example.org>"
unsubscribe_mailto = "unsubscribe@example.org"
"""

SUBSCRIBERS = """\
email,name,categories,status
ada@example.org,Ada Lovelace,,active
grace@example.org,Grace Hopper,,active
left@example.org,Left Already,,unsubscribed
"""


def write_entry(site: Path, name: str, text: str) -> Path:
    path = site / "articles" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def markdown_entry(title: str = "A test entry", date: str = "2026-03-14", body: str = "",
                   **fields: str) -> str:
    """A Markdown entry; extra fields are written as given (already YAML)."""
    lines = ["---", f'title: "{title}"', f"date: {date}"]
    lines += [f"{key}: {value}" for key, value in fields.items()]
    lines += ["---", "", body or "An opening paragraph. It has two sentences.", ""]
    return "\n".join(lines)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty site: config and subscribers, no articles yet."""
    root = tmp_path / "site"
    (root / "articles").mkdir(parents=True)
    (root / "newsletter.toml").write_text(CONFIG, encoding="utf-8")
    (root / "subscribers.csv").write_text(SUBSCRIBERS, encoding="utf-8")
    monkeypatch.setenv("NEWSLETTER_SECRET", "test-secret")
    return root


@pytest.fixture
def config(site: Path) -> Config:
    return load_config(site)


@pytest.fixture
def sample_site(site: Path) -> Path:
    """The repository's own sample articles in a temporary site."""
    shutil.copytree(REPO / "articles", site / "articles", dirs_exist_ok=True)
    return site


class Inbox:
    """What a real SMTP server (aiosmtpd, on 127.0.0.1) accepted. `rcpt_reply` and
    `data_reply` may return a reply line to refuse with instead of accepting."""

    HANG = "hang"  # a `data_reply` that never answers (until the server is stopped)

    def __init__(self, pipelining: bool = False) -> None:
        self.pipelining = pipelining  # offer PIPELINING (RFC 2920), as Postfix does
        self.hanging = threading.Event()  # set when a reply hangs
        self.received: list[tuple[str, bytes]] = []  # (recipient, message bytes as received)
        self.sessions: set[int] = set()
        self.rcpt_reply: Callable[[str], str | None] = lambda address: None
        self.data_reply: Callable[[str], str | None] = lambda address: None

    async def handle_EHLO(self, server: object, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname  # the responses end with aiosmtpd's "250 HELP"
        return [*responses[:-1], *(["250-PIPELINING"] if self.pipelining else []),
                responses[-1]]

    async def handle_RCPT(self, server: object, session: object, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        reply = self.rcpt_reply(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        reply = self.data_reply(envelope.rcpt_tos[0])
        if reply == self.HANG:
            self.hanging.set()
            await asyncio.sleep(3600)
        if reply:
            return reply
        assert envelope.original_content is not None
        self.received.append((envelope.rcpt_tos[0], envelope.original_content))
        self.sessions.add(id(session))
        return f"250 2.0.0 Ok: queued as Q{len(self.received)}"

    def recipients(self) -> list[str]:
        return sorted(address for address, _ in self.received)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def smtp_server(inbox: Inbox, port: int, **options: object) -> Iterator[Controller]:
    """A real SMTP server on 127.0.0.1:port until the block ends."""
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield controller
    finally:
        if not controller.loop.is_closed():  # a test may have stopped it already
            controller.stop()


def use_relay(site: Path, port: int, **settings: object) -> None:
    """Point the site's [smtp] at 127.0.0.1:port, plain (loopback), plus any other settings."""
    values = {"host": "127.0.0.1", "port": port, "tls": "none", **settings}
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    with (site / "newsletter.toml").open("a", encoding="utf-8") as f:
        f.write("\n[smtp]\n" + "\n".join(lines) + "\n")


def add_subscribers(site: Path, count: int) -> list[str]:
    """Replace the list with `count` active subscribers; returns their addresses."""
    addresses = [f"reader{n:04d}@example.org" for n in range(count)]
    rows = [f"{a},Reader {n},,active" for n, a in enumerate(addresses)]
    (site / "subscribers.csv").write_text("email,name,categories,status\n" + "\n".join(rows)
                                          + "\n", encoding="utf-8")
    return addresses
