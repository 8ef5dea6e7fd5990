"""Helpers for the tests of `newsletter serve`: the real waitress server on 127.0.0.1 and a
free port, and plain HTTP clients (http.client and raw sockets) that only talk to it."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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
