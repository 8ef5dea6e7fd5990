"""A forked copy of this process that reads half of a large batch of entries, then renders
some of the bodies the feeds will show: the second core's share of a cold build.

Two rounds, each one marshal blob through a pipe (no pool, no pickling, no executor threads):
the fork sends back the cache rows of the entries it was given, then waits for a list of
bodies to render (or for its pipe to close) and sends back their HTML. It touches nothing
else (the ledger is this process's) and leaves by os._exit. If this process dies, the fork's
pipes close and it leaves too; if the fork dies, this process does its share itself.
"""

from __future__ import annotations

import contextlib
import marshal
import os
from collections.abc import Callable, Sequence
from typing import Any

_FORMAT = 4  # marshal's: plain values only; reading it never runs code

Row = tuple[int, int, str, bytes]  # a cache row: size, mtime_ns, checksum, payload
Ask = tuple[str, ...]  # what the fork is asked to render (see collect._render_in_fork)


class ReadingFork:
    """Started at once: `read(item)` for each of `items` in the fork; then `render(ask)` for
    each ask sent by `ask()`, if any."""

    def __init__(self, items: Sequence[Any], read: Callable[[Any], Row],
                 render: Callable[[Ask], str | None]) -> None:
        self.items = items
        rows_r, rows_w = os.pipe()
        asks_r, asks_w = os.pipe()
        html_r, html_w = os.pipe()
        try:
            self.pid = os.fork()
        except OSError:
            for fd in (rows_r, rows_w, asks_r, asks_w, html_r, html_w):
                os.close(fd)
            raise
        if self.pid == 0:  # the fork
            status = 1
            try:
                for fd in (rows_r, asks_w, html_r):
                    os.close(fd)
                _send(rows_w, marshal.dumps([read(item) for item in items], _FORMAT))
                asked = _receive(asks_r)
                _send(html_w, marshal.dumps([_rendered(render, ask)
                                              for ask in marshal.loads(asked)], _FORMAT)
                      if asked else b"")
                status = 0
            finally:
                os._exit(status)
        for fd in (rows_w, asks_r, html_w):
            os.close(fd)
        self._rows, self._asks, self._html = rows_r, asks_w, html_r
        self._asked = 0
        self._done = False

    def rows(self) -> list[Row | None]:
        """The rows of `items`, in order; None for each if the fork failed."""
        data = _receive(self._rows)
        self._rows = -1
        try:
            rows = marshal.loads(data)
        except (ValueError, EOFError, TypeError):  # cut short: the fork died
            rows = None
        if not isinstance(rows, list) or len(rows) != len(self.items):
            return [None] * len(self.items)
        return rows

    def ask(self, asks: list[Ask]) -> None:
        """Send the bodies to render (the pipe's buffer holds a few hundred asks); nothing
        more can be asked after."""
        self._asked = len(asks)
        with contextlib.suppress(BrokenPipeError):  # the fork is gone: answers() says so
            _send(self._asks, marshal.dumps(asks, _FORMAT) if asks else b"")
        self._asks = -1

    def answers(self) -> list[str | None]:
        """The HTML of each body asked for (None where the fork could not render it); then
        the fork is reaped."""
        if self._asks != -1:
            self.ask([])
        data = _receive(self._html)
        self._html = -1
        self._reap()
        try:
            html = marshal.loads(data) if data else None
        except (ValueError, EOFError, TypeError):
            html = None
        if not isinstance(html, list) or len(html) != self._asked:
            return [None] * self._asked
        return html

    def finish(self) -> None:
        """Let the fork go (if nothing was asked) and reap it; for every way out."""
        for fd in (self._rows, self._asks, self._html):
            if fd != -1:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._rows = self._asks = self._html = -1
        self._reap()

    def _reap(self) -> None:
        if not self._done:
            self._done = True
            os.waitpid(self.pid, 0)


def _send(fd: int, data: bytes) -> None:
    """Write all of `data` and close `fd` (closed even when the reader is gone)."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _receive(fd: int) -> bytes:
    """Read `fd` to its end and close it."""
    with os.fdopen(fd, "rb") as pipe:
        return pipe.read()


def _rendered(render: Callable[[Ask], str | None], ask: Ask) -> str | None:
    try:
        html = render(ask)
    except Exception:  # the parent renders it then, and meets the same error where it did
        return None
    return html if isinstance(html, str) else None
