"""Shared fixtures: a real temporary site with real files, a real SQLite ledger, and a real
SMTP server on loopback."""

from __future__ import annotations

import asyncio
import email
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import feedparser
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session
from lxml import etree

from pipeline.core.config import Config, load_config
from pipeline.core.models import Article
from pipeline.entries.collect import collect_articles
from pipeline.entries.summarise import summarise

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


def write_template(site: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    """A site's own override of a default template (templates/NAME)."""
    path = site / "templates" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
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
    monkeypatch.setenv("NEWSLETTER_SECRET", "test-secret-for-this-site-0123456789")
    return root


@pytest.fixture
def config(site: Path) -> Config:
    return load_config(site)


@pytest.fixture
def sample_site(site: Path) -> Path:
    """The repository's own sample articles in a temporary site."""
    shutil.copytree(REPO / "articles", site / "articles", dirs_exist_ok=True)
    return site


def articles_of(site: Path, now: datetime = NOW) -> tuple[Config, list[Article]]:
    """The site's config and its published articles, summarised; fails on any problem."""
    config = load_config(site)
    found, problems = collect_articles(config, now)
    assert problems == []
    return config, [summarise(a) for a in found]


# --- reading what a run wrote, the way subscribers' and readers' software would ---------------

# Every header a digest message has, in order (the test site sets no Reply-To): anything more
# would be a header injected by an entry or a subscriber row.
MESSAGE_HEADERS = ["To", "Message-ID", "List-Unsubscribe", "From", "Subject", "Date", "List-Id",
                   "List-Unsubscribe-Post", "MIME-Version", "Content-Type"]
CONTENT_NS = "http://purl.org/rss/1.0/modules/content/"
ATOM_NS = "http://www.w3.org/2005/Atom"
# `path:line: field: problem — hint`, as printed for every rejected input.
PROBLEM_LINE = re.compile(r"(?P<path>[^:\n]+):(?P<line>\d+): (?:warning: )?(?P<field>[^:\n]+): "
                          r"(?P<problem>.+) — (?P<hint>.+)")


def messages(site: Path) -> list[EmailMessage]:
    """Every message in outbox/new, parsed by the email package."""
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default)  # type: ignore[misc]
            for p in sorted((site / "outbox" / "new").glob("*.eml"))]


def to_display_name(message: EmailMessage) -> str:
    """The To display name decoded as RFC 2047 says mail clients must: white space between
    adjacent encoded words is dropped. (policy.default's address parser keeps a space there,
    a CPython quirk, so it cannot be the oracle for a name split across encoded words.)"""
    from email.header import decode_header, make_header
    from email.utils import getaddresses

    raw = next(value for name, value in message.raw_items() if name.lower() == "to")
    if "=?" in raw:  # encoded words: never quoted, the name is all before the address
        return str(make_header(decode_header(raw.rsplit("<", 1)[0]))).strip()
    return getaddresses([raw])[0][0]  # plain: unquoted as any parser would


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return part.get_content()


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return part.get_content()


def parsed_feeds(site: Path) -> dict[str, feedparser.FeedParserDict]:
    """The three feeds, each parsed as XML (or JSON) first, then with feedparser, not bozo."""
    public = site / "public"
    for name in ("feed.xml", "atom.xml"):
        etree.fromstring((public / name).read_bytes())  # raises on anything not well-formed
    json.loads((public / "feed.json").read_bytes())
    parsed = {name: feedparser.parse((public / name).read_bytes())
              for name in ("feed.xml", "atom.xml")}
    for name, feed in parsed.items():
        assert not feed.bozo, f"{name}: {feed.get('bozo_exception')}"
    return parsed


def feed_html(site: Path) -> list[str]:
    """Every HTML-bearing value in the feeds, as a feed reader would hand it to a browser:
    our raw text, not feedparser's (feedparser sanitises HTML itself and would hide a leak).
    RSS description and content:encoded are HTML; Atom text constructs only with type="html"."""
    values: list[str] = []
    rss = etree.fromstring((site / "public" / "feed.xml").read_bytes())
    values += [e.text or "" for e in rss.iter("description", f"{{{CONTENT_NS}}}encoded")]
    atom = etree.fromstring((site / "public" / "atom.xml").read_bytes())
    values += [e.text or "" for e in atom.iter(f"{{{ATOM_NS}}}content", f"{{{ATOM_NS}}}summary")
               if e.get("type") == "html"]
    feed = json.loads((site / "public" / "feed.json").read_bytes())
    values += [item["content_html"] for item in feed["items"]]
    return values


class _Markup(HTMLParser):
    def __init__(self, allowed: frozenset[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.allowed = allowed
        self.unsafe: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style", "iframe", "object", "embed", "form", "svg", "math",
                   "base", "meta", "link"} - self.allowed:
            self.unsafe.append(tag)
        for name, value in attrs:
            squashed = "".join((value or "").split()).lower()
            if name.startswith("on") or squashed.startswith(("javascript:", "vbscript:", "data:")):
                self.unsafe.append(f"{tag} {name}={value!r}")


def unsafe_markup(fragment: str, allowed: frozenset[str] = frozenset()) -> list[str]:
    """Elements and attributes a browser or mail client would act on: scripts, frames, forms,
    event handlers, script URLs. `allowed` names elements the template itself uses (the
    email document's own <style> and <meta>)."""
    parser = _Markup(allowed)
    parser.feed(fragment)
    parser.close()
    return parser.unsafe


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


def use_compact_outbox(site: Path) -> None:
    """Switch the site's outbox to the compact mode ([outbox] mode = "compact")."""
    with (site / "newsletter.toml").open("a", encoding="utf-8") as f:
        f.write('\n[outbox]\nmode = "compact"\n')


def delivery_states(site: Path) -> Counter[str]:
    """How many of the ledger's digest messages are in each delivery state."""
    from pipeline.state.ledger import open_ledger

    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        return Counter(d.state for d in ledger.deliveries())


def kill_send_midway(site: Path, inbox: Inbox, after: int = 100) -> int:
    """Start a real `newsletter send` (10 ms a message), SIGKILL it once the relay has taken
    `after` messages; how many it had taken when it died."""
    sender = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "send", "--site", str(site), "--rate", "150"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
    deadline = time.monotonic() + 30
    while len(inbox.received) < after and time.monotonic() < deadline:
        time.sleep(0.01)
    sender.send_signal(signal.SIGKILL)
    sender.wait()
    return len(inbox.received)


def invoke(*args: str) -> tuple[int, str, str]:
    """`newsletter ARGS` in this process: (exit code, stdout, stderr)."""
    from click.testing import CliRunner

    from pipeline.cli.main import cli

    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def outbox_folder(site: Path, name: str) -> list[str]:
    """The .eml files in outbox/<name>/, sorted."""
    path = site / "outbox" / name
    return sorted(p.name for p in path.glob("*.eml")) if path.is_dir() else []


@pytest.fixture
def port() -> int:
    """A free port on 127.0.0.1, for a test's SMTP server."""
    return free_port()


@pytest.fixture
def written(site: Path, port: int) -> Path:
    """A site pointed at 127.0.0.1:port with one digest for its two subscribers (ada, grace)
    waiting in outbox/new."""
    from pipeline.run import run

    use_relay(site, port)
    write_entry(site, "a.md", markdown_entry(title="Sleep and blood pressure"))
    assert run(site).written == 2
    return site


def add_subscribers(site: Path, count: int) -> list[str]:
    """Replace the list with `count` active subscribers; returns their addresses."""
    addresses = [f"reader{n:04d}@example.org" for n in range(count)]
    rows = [f"{a},Reader {n},,active" for n, a in enumerate(addresses)]
    (site / "subscribers.csv").write_text("email,name,categories,status\n" + "\n".join(rows)
                                          + "\n", encoding="utf-8")
    return addresses
