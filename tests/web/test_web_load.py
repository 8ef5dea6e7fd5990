"""`newsletter serve` under a burst, with idle connections, and during a long import: loopback
traffic only, bounded in count and time. (The timings are measured in bench/web_bench.py;
these tests hold the behaviour: everything recorded, no connection lost, no 5xx.)"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.core.models import Subscriber
from pipeline.mail.tokens import subscriber_token
from pipeline.run import run
from pipeline.state.ledger import open_ledger
from pipeline.state.subscribers import SubscriberBook
from web_client import burst, one_click, request, serving, serving_process


def add_many(site: Path, count: int) -> list[str]:
    """count active subscribers; their one-click targets."""
    with open_ledger(site / ".newsletter") as ledger:
        book = SubscriberBook(ledger)
        book.import_rows((Subscriber(f"reader{n}@example.org") for n in range(count)),
                         datetime.now(UTC))
        key = b"test-secret-for-this-site-0123456789"  # conftest's NEWSLETTER_SECRET
        return [f"/unsubscribe?token={subscriber_token(key, s.id, s.email)}"
                for s in book.everyone() if s.email.startswith("reader")]


def unsubscribed(site: Path) -> int:
    with open_ledger(site / ".newsletter") as ledger:
        return SubscriberBook(ledger).counts()["unsubscribed"]


def test_500_simultaneous_one_click_posts_are_all_recorded(site: Path) -> None:
    run(site)
    targets = add_many(site, 500)
    before = unsubscribed(site)
    with serving_process(site) as server:
        # Latency is bench/web_bench.py's to measure; this holds that every request of the
        # burst is answered and recorded.
        outcomes = burst(server, [one_click(t) for t in targets], timeout=120)
    errors = [o.error for o in outcomes if o.status is None]
    assert errors == []
    assert sorted({o.status for o in outcomes}) == [200]
    assert unsubscribed(site) == before + 500


def test_idle_and_slow_connections_do_not_stop_a_get(site: Path) -> None:
    run(site)
    with serving(site, threads=2) as server:
        host, port = server.rsplit(":", 1)
        idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(50)]
        try:
            for sock in idle[:10]:  # half a request line, then nothing: a slow client
                sock.sendall(b"GET /subscribe HT")
            started = time.monotonic()
            code, _, page = request(server, "GET", "/subscribe", timeout=10)
            assert code == 200 and "<form" in page
            assert time.monotonic() - started < 5  # (bench: well under 1 s)
        finally:
            for sock in idle:
                sock.close()


def test_a_one_click_post_during_a_long_import_is_recorded(site: Path, tmp_path: Path) -> None:
    run(site)
    target = add_many(site, 1)[0]
    big = tmp_path / "big.csv"
    with big.open("w") as out:
        out.write("email,name,categories,status\n")
        out.writelines(f"bulk{n}@example.org,,,active\n" for n in range(150_000))
    env = {**os.environ, "NEWSLETTER_SECRET": "test-secret-for-this-site-0123456789"}
    with serving(site) as server:
        importer = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "subscribers", "import", str(big), "--site",
             str(site)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while _count(site) < 1000 and importer.poll() is None:  # the import is running
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert importer.poll() is None, "the import finished before the POST: grow it"
            code, _, page = request(server, "POST", target, b"List-Unsubscribe=One-Click")
            assert code == 200 and "You are unsubscribed" in page
            assert importer.poll() is None  # recorded while the import still runs
        finally:
            out, err = importer.communicate(timeout=120)
    assert importer.returncode == 0, err
    assert b"150000 added" in out
    with open_ledger(site / ".newsletter") as ledger:
        assert SubscriberBook(ledger).get("reader0@example.org").status == "unsubscribed"


def _count(site: Path) -> int:
    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        return sum(SubscriberBook(ledger).counts().values())


@pytest.mark.parametrize("token", [
    "A" * 24,  # the first release's shape, made by no one
    "1." + "A" * 24,  # our shape, forged
    "1.1765000000." + "A" * 24,  # a confirmation's shape, forged
    "x" * 5000,  # too long
    "1.2.3.4", "%00", "%EF%BC%91." + "A" * 24,  # odd characters (a full-width 1)
])
def test_any_token_shape_is_refused_without_a_scan(site: Path, token: str) -> None:
    run(site)
    add_many(site, 2000)
    with serving(site) as server:
        for path in ("unsubscribe", "preferences", "confirm"):
            code, _, page = request(server, "GET", f"/{path}?token={token}")
            assert code == 400 and "does not work" in page
    assert unsubscribed(site) == 1  # left@example.org, from subscribers.csv


def test_a_request_is_answered_as_soon_as_its_worker_is_done_on_a_quiet_server(
        site: Path) -> None:
    """The loop parks a connection while a worker has its request and sleeps until a worker
    wakes it: with its sleep made a minute long, every answer must still come at once."""
    import threading

    from pipeline.subscribers.web_app import make_web_server

    run(site)
    targets = add_many(site, 3)
    before = unsubscribed(site)
    httpd = make_web_server(site, "127.0.0.1", 0, threads=2)
    httpd.poll_seconds = 60
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    server = f"127.0.0.1:{httpd.server_address[1]}"
    try:
        started = time.monotonic()
        assert request(server, "GET", targets[0], timeout=5)[0] == 200
        assert request(server, "POST", targets[1], b"List-Unsubscribe=One-Click",
                       timeout=5)[0] == 200
        connection = http.client.HTTPConnection(server, timeout=5)  # one, kept alive
        for target in targets:
            connection.request("GET", target)
            response = connection.getresponse()
            assert (response.status, response.read().count(b"</html>")) == (200, 1)
        connection.close()
        assert time.monotonic() - started < 20  # no answer waited for the loop's minute
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
    assert unsubscribed(site) == before + 1


def test_an_answer_larger_than_the_write_buffer_is_sent_whole() -> None:
    """While a worker writes, the loop leaves its socket alone, except when the worker waits
    for the loop to drain a buffer past waitress's high-water mark: that must not hang."""
    import threading

    from pipeline.subscribers.web_server import WebServer

    body = bytes(range(256)) * (40 * 1024 * 1024 // 256)  # 40 MB, past the 16 MB mark

    def large(environ: dict, start_response) -> list[bytes]:
        start_response("200 OK", [("Content-Length", str(len(body)))])
        # The third write finds most of the second's 39 MB still buffered (the client is not
        # reading yet): it waits for the loop to send them.
        return [body[:1024], body[1024:-512 * 1024], body[-512 * 1024:]]

    httpd = WebServer(large, "127.0.0.1", 0, threads=2)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection(f"127.0.0.1:{httpd.server_address[1]}",
                                                timeout=20)
        connection.request("GET", "/large")
        time.sleep(0.5)  # the worker is at its third write by now
        response = connection.getresponse()
        assert response.status == 200 and response.read() == body
        connection.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
