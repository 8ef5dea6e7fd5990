"""Bad requests to `newsletter serve` get a clear 4xx and change nothing; HEAD has no body;
every request leaves one access-log line with no token and no address (real waitress server
on loopback, raw sockets for what no proper client would send)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.mail.tokens import subscriber_token
from pipeline.run import run
from pipeline.state.ledger import open_ledger
from pipeline.state.subscribers import SubscriberBook
from web_client import raw, request, serving


@pytest.fixture
def server(site: Path) -> Iterator[str]:
    run(site)  # imports subscribers.csv into the ledger
    with serving(site) as address:
        yield address


def token_for(site: Path, address: str) -> str:
    with open_ledger(site / ".newsletter") as ledger:
        who = SubscriberBook(ledger).get(address)
    return subscriber_token(b"test-secret-for-this-site-0123456789", who.id, who.email)


def status_of(site: Path, address: str) -> str:
    with open_ledger(site / ".newsletter") as ledger:
        return SubscriberBook(ledger).get(address).status


@pytest.mark.parametrize("line", [
    b"GET /unsubscribe HTTP/9.9\r\nHost: x\r\n\r\n",  # a version we do not speak
    b"garbage\r\n\r\n",  # no method, no target
    b"GET\r\n\r\n",
])
def test_malformed_request_lines_get_a_400_and_no_traceback(
        server: str, line: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.access")
    answer = raw(server, line)
    assert re.match(rb"HTTP/1\.[01] 400 ", answer), answer[:80]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    logged = [r.getMessage() for r in caplog.records if r.name == "pipeline.access"]
    assert len(logged) == 1 and logged[0].startswith('"malformed request" 400 ')


def test_a_64_kb_request_line_is_a_400_and_too_many_headers_a_431(server: str) -> None:
    answer = raw(server, b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert re.match(rb"HTTP/1\.[01] 400 ", answer), answer[:80]
    headers = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"p" * 1000) for n in range(40))
    answer = raw(server, b"GET /subscribe HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert re.match(rb"HTTP/1\.[01] 431 ", answer), answer[:80]


def test_head_has_the_headers_of_get_and_no_body(site: Path, server: str) -> None:
    target = f"/unsubscribe?token={token_for(site, 'ada@example.org')}"
    for path in (target, "/subscribe", "/nowhere"):
        get = raw(server, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                  .encode())
        head = raw(server, f"HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                   .encode())
        get_head, _, get_body = get.partition(b"\r\n\r\n")
        head_head, _, head_body = head.partition(b"\r\n\r\n")
        assert head_body == b"" and get_body
        length = re.search(rb"Content-Length: (\d+)", head_head).group(1)
        assert int(length) == len(get_body)
        assert head_head.split(b"\r\n")[0] == get_head.split(b"\r\n")[0]
    assert status_of(site, "ada@example.org") == "active"


def test_an_oversize_body_is_413_and_unsubscribes_no_one(site: Path, server: str) -> None:
    target = f"/unsubscribe?token={token_for(site, 'ada@example.org')}"
    body = b"List-Unsubscribe=One-Click&pad=" + b"x" * 100_000
    code, _, _ = request(server, "POST", target, body)
    assert code == 413
    assert status_of(site, "ada@example.org") == "active"
    code, _, _ = request(server, "POST", "/subscribe", b"email=new%40example.org&pad="
                         + b"x" * 100_000)
    assert code == 413
    with open_ledger(site / ".newsletter") as ledger:
        assert SubscriberBook(ledger).get("new@example.org") is None


def test_unknown_paths_and_methods(server: str) -> None:
    assert request(server, "GET", "/")[0] == 404
    assert request(server, "GET", "/admin?token=x")[0] == 404
    assert request(server, "POST", "/../../etc/passwd", b"")[0] == 404
    assert request(server, "PUT", "/unsubscribe")[0] == 405


def test_the_access_log_has_one_line_a_request_without_tokens_or_addresses(
        site: Path, server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.access")
    token = token_for(site, "ada@example.org")
    request(server, "GET", f"/unsubscribe?token={token}")
    request(server, "POST", f"/unsubscribe?token={token}", b"List-Unsubscribe=One-Click")
    request(server, "GET", "/ada@example.org/x?grace@example.org")
    request(server, "POST", "/subscribe", b"email=grace%40example.org")
    lines = [r.getMessage() for r in caplog.records if r.name == "pipeline.access"]
    assert len(lines) == 4, lines
    assert lines[0].startswith('"GET /unsubscribe?token=…" 200 ')
    assert lines[1].startswith('"POST /unsubscribe?token=…" 200 ')
    assert lines[2].startswith('"GET /…@…/x?…" 404 ')
    assert lines[3].startswith('"POST /subscribe" 200 ')
    for line in lines:
        assert token not in line and token.split(".")[1] not in line
        assert "example.org" not in line and "127.0.0.1" not in line
