"""Helpers for the tests of `newsletter serve`: the real waitress server on 127.0.0.1 and a
free port, and plain HTTP clients (http.client and raw sockets) that only talk to it."""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.subscribers.web_app import make_web_server

Answer = tuple[int, dict[str, str], str]


@contextmanager
def serving(site: Path, threads: int = 8) -> Iterator[str]:
    """`newsletter serve` for the site on 127.0.0.1 and a free port; its host:port."""
    httpd = make_web_server(site, "127.0.0.1", 0, threads)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@contextmanager
def serving_process(site: Path, threads: int = 8) -> Iterator[str]:
    """The real `newsletter serve` in a process of its own (as in production: the clients of a
    load test then do not share its interpreter), on 127.0.0.1 and a free port; its
    host:port. Stopped with SIGTERM, killed if it does not stop."""
    log = (site / "serve.log").open("w")  # the access log: a pipe would fill and block it
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve", "--site", str(site), "--port", "0",
         "--threads", str(threads)],
        env={**os.environ, "NEWSLETTER_SECRET": "test-secret-for-this-site-0123456789"},
        stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        first = process.stdout.readline() if process.stdout else ""
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", first)
        assert found, f"serve did not start: {first}{(site / 'serve.log').read_text()}"
        yield f"127.0.0.1:{found[1]}"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def request(server: str, method: str, target: str, body: bytes = b"",
            content_type: str = "application/x-www-form-urlencoded",
            headers: dict[str, str] | None = None, timeout: float = 10) -> Answer:
    connection = http.client.HTTPConnection(server, timeout=timeout)
    sent = {"Content-Type": content_type} if method == "POST" else {}
    connection.request(method, target, body=body, headers={**sent, **(headers or {})})
    response = connection.getresponse()
    answer = (response.status, dict(response.getheaders()), response.read().decode())
    connection.close()
    return answer


def raw(server: str, data: bytes, timeout: float = 5) -> bytes:
    """Send bytes as they are (malformed on purpose) and read the whole answer."""
    host, port = server.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class Outcome:
    status: int | None  # None: the connection failed (refused, reset, timed out)
    seconds: float
    error: str = ""


async def _one(host: str, port: int, data: bytes, start: asyncio.Event, timeout: float
               ) -> Outcome:
    await start.wait()
    began = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        try:
            writer.write(data)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), timeout)  # Connection: close
        finally:
            writer.close()
    except (TimeoutError, OSError) as exc:
        return Outcome(None, time.perf_counter() - began, type(exc).__name__)
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    return Outcome(int(match[1]) if match else None, time.perf_counter() - began,
                   "" if match else f"no status line: {answer[:40]!r}")


def burst(server: str, requests: list[bytes], timeout: float = 30) -> list[Outcome]:
    """Open one connection per request, all at once, and send them together (loopback only:
    `server` is 127.0.0.1:port)."""
    host, port = server.rsplit(":", 1)
    assert host in ("127.0.0.1", "::1"), "load is for loopback only"

    async def main() -> list[Outcome]:
        start = asyncio.Event()
        tasks = [asyncio.create_task(_one(host, int(port), r, start, timeout))
                 for r in requests]
        await asyncio.sleep(0)  # every task is waiting on the start line
        start.set()
        return await asyncio.gather(*tasks)

    return asyncio.run(main())


def one_click(target: str, host: str = "127.0.0.1") -> bytes:
    """An RFC 8058 one-click POST, as a mailbox provider sends it."""
    body = b"List-Unsubscribe=One-Click"
    return (f"POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
            f"application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body
