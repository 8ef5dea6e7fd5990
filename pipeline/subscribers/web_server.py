"""The HTTP server under `newsletter serve`: waitress, a production WSGI server in pure Python.

Why waitress: its I/O is asynchronous and its application runs in a fixed thread pool, so a
client that connects and sends nothing, or sends slowly, holds a socket but never a thread;
it has a listen backlog, idle timeouts, header and body limits, and answers malformed
requests with a 4xx itself. It runs anywhere Python does (gunicorn forks and is Unix-only,
granian needs a Rust build), and it is one small dependency.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable, Iterable

from pipeline.subscribers.web_requests import MAX_BODY, loggable_target

access_log = logging.getLogger("pipeline.access")
WSGIApp = Callable[[dict, Callable[..., object]], Iterable[bytes]]
# What waitress is told (see README, `newsletter serve`): the numbers for a small VM.
SETTINGS = {
    "backlog": 2048,  # connections the kernel queues while every thread is busy
    "connection_limit": 1000,  # open connections (idle ones included) before accept waits
    "channel_timeout": 30,  # seconds an idle connection is kept
    "cleanup_interval": 5,
    "max_request_body_size": MAX_BODY,  # larger: 413 before the app sees it
    "max_request_header_size": 16 * 1024,  # larger (a 64 KB request line): 431
    "asyncore_use_poll": True,  # poll(): no select() limit of 1024 descriptors
    "expose_tracebacks": False,
    "ident": "newsletter",
}


def with_access_log(app: WSGIApp) -> WSGIApp:
    """One line a request: method, path (token values and anything with an @ hidden),
    status, bytes, milliseconds. No client or email address."""

    def logged(environ: dict, start_response: Callable[..., object]) -> Iterable[bytes]:
        started = time.perf_counter()
        seen: list[str] = []

        def start(status: str, headers: list[tuple[str, str]], *exc: object) -> object:
            seen.append(status.split(" ", 1)[0])
            return start_response(status, headers, *exc)

        body = list(app(environ, start))
        method = environ.get("REQUEST_METHOD", "")
        if method == "HEAD":
            body = []  # Content-Length stays that of the GET; no body
        access_log.info('"%s %s" %s %d %.0fms', method[:10], loggable_target(environ),
                        seen[0] if seen else "-", sum(map(len, body)),
                        (time.perf_counter() - started) * 1000)
        return body

    return logged


def _strict_channel() -> type:
    """waitress's connection, with a parser that refuses an HTTP version other than 1.0 and
    1.1 with a 400 (waitress itself would answer HTTP/9.9 as if it were 1.0), and an access
    log line for the requests waitress refuses itself (they never reach the application)."""
    from waitress.channel import HTTPChannel
    from waitress.parser import HTTPRequestParser, ParsingError
    from waitress.task import ErrorTask
    from waitress.utilities import BadRequest, RequestHeaderFieldsTooLarge

    class LoggedErrorTask(ErrorTask):
        def execute(self) -> None:
            super().execute()
            access_log.info('"%s" %s %d 0ms (refused by the server: %s)',
                            "malformed request", self.status.split(" ", 1)[0],
                            self.content_length, self.request.error.reason)

    class StrictParser(HTTPRequestParser):
        def received(self, data: bytes) -> int:
            before = self.header_plus  # what came of the head so far (no copy)
            consumed = super().received(data)
            if isinstance(self.error, RequestHeaderFieldsTooLarge) and \
                    b"\n" not in before and b"\n" not in data:
                # A request line longer than all the headers may be is malformed: 400, as
                # for any other broken request line (431 stays for too many headers).
                self.error = BadRequest("the request line is too long")
            return consumed

        def parse_header(self, header_plus: bytes) -> None:
            super().parse_header(header_plus)
            if self.version not in ("1.0", "1.1"):
                raise ParsingError(f"HTTP version {self.version[:10]!r} is not supported")

    class StrictChannel(HTTPChannel):
        parser_class = StrictParser
        error_task_class = LoggedErrorTask
        touched = 0  # bumped by the worker thread after each change it makes (see _Loop)
        worker_writing = False

        def service(self) -> None:
            try:
                super().service()
            finally:
                self.touched += 1
                self.server.pull_trigger()

        def write_soon(self, data: bytes) -> int:
            self.worker_writing = True
            try:
                return super().write_soon(data)
            finally:
                self.worker_writing = False
                self.touched += 1
                if self.total_outbufs_len:
                    self.server.pull_trigger()

        def writable(self) -> bool:
            # While its worker writes (and sends what it wrote itself), the loop has nothing
            # to send: waitress would poll the socket, find it writable, fail to take the
            # buffer's lock and go round again, thousands of times in a burst, holding the
            # GIL the worker needs. Unless the worker waits for the loop to drain a full buffer.
            if self.worker_writing and \
                    self.total_outbufs_len <= self.adj.outbuf_high_watermark:
                return False
            return bool(super().writable())

    return StrictChannel


class _Loop:
    """waitress's poll loop, without its cost per open connection: each turn, waitress asks
    every connection whether it wants to read or write, so a burst of 500 requests costs
    ~1,500 turns of 500 questions, all holding the GIL the worker threads need (p99 over 1 s
    on 2 cores). A connection whose request waits for or runs in a worker wants neither; it
    is parked and asked again only once its worker has touched it (the worker bumps
    `touched`, then wakes the loop). Otherwise the same as `wasyncore.poll2`."""

    def __init__(self, connections: dict) -> None:
        from waitress.wasyncore import readwrite

        self.connections = connections
        self.parked: dict[int, tuple[object, int]] = {}
        self.readwrite = readwrite

    def turn(self, timeout: float) -> None:
        pollster, readwrite = select.poll(), self.readwrite
        parked = self.parked
        for fd, obj in list(self.connections.items()):
            seen = parked.get(fd)
            if seen is not None:
                if seen[0] is obj and seen[1] == obj.touched:  # type: ignore[attr-defined]
                    continue
                del parked[fd]
            touched = getattr(obj, "touched", None)  # read before the state it stands for
            flags = 0
            if obj.readable():
                flags = select.POLLIN | select.POLLPRI
            if obj.writable() and not obj.accepting:
                flags |= select.POLLOUT
            if flags:
                pollster.register(fd, flags)
            elif touched is not None and obj.requests:
                parked[fd] = (obj, touched)
        for fd, flags in pollster.poll(int(timeout * 1000)):
            obj = self.connections.get(fd)
            if obj is not None:
                readwrite(obj, flags)
        if len(parked) > len(self.connections):  # closed ones linger only until then
            for fd in [fd for fd, (obj, _) in parked.items()
                       if self.connections.get(fd) is not obj]:
                del parked[fd]


def _accepting_many(server: object) -> Callable[[], None]:
    """waitress accepts one connection per turn of its loop, and each turn polls every open
    connection: a burst of 500 then costs 500 turns of 500. Take up to 64 a turn instead."""
    accept_one = server.handle_accept  # type: ignore[attr-defined]
    connections = server._map  # type: ignore[attr-defined]
    limit = server.adj.connection_limit  # type: ignore[attr-defined]

    def accept() -> None:
        for _ in range(64):
            before = len(connections)
            accept_one()
            if len(connections) == before or len(connections) >= limit:
                return

    return accept


class WebServer:
    """waitress on host:port (0: a free port), stoppable from another thread (tests)."""

    poll_seconds = 0.2  # the longest a turn of the loop sleeps (a missed wake-up's cost)

    def __init__(self, app: WSGIApp, host: str = "127.0.0.1", port: int = 8080,
                 threads: int = 8, trusted_proxy: str | None = None) -> None:
        from waitress.server import create_server

        proxy = ({"trusted_proxy": trusted_proxy, "trusted_proxy_headers": {"x-forwarded-for"}}
                 if trusted_proxy else {})
        self.app = app
        self.server = create_server(with_access_log(app), host=host, port=port,
                                    threads=threads, **SETTINGS, **proxy)
        self.server.channel_class = _strict_channel()
        self.server.handle_accept = _accepting_many(self.server)
        self.server_address = (host, self.server.effective_port)
        self._stop = threading.Event()
        self._stopped = threading.Event()

    def serve_forever(self) -> None:
        loop = _Loop(self.server._map)
        try:
            while not self._stop.is_set():
                loop.turn(self.poll_seconds)
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serve_forever (from another thread) and wait for it."""
        self.shutdown_soon()
        self._stopped.wait(5)

    def shutdown_soon(self) -> None:
        """Stop serve_forever after the current loop turn (safe in a signal handler)."""
        self._stop.set()
        self.server.pull_trigger()

    def server_close(self) -> None:
        from waitress import wasyncore

        self.server.task_dispatcher.shutdown(timeout=5)
        wasyncore.close_all(self.server._map)
        close = getattr(self.app, "close", None)
        if close is not None:
            close()
