"""A forked copy of this process that reads part of a large batch of entries, then renders
some of the bodies the feeds will show: the second core's share of a cold build.

The batch is cut into chunks, and each chunk's number is a two-byte token in a pipe that
both processes draw from: whichever is free takes the next chunk, so neither waits for the
other when this process has other work to do first (imports it will need) or when another
program slows one of them. Two rounds, each one marshal blob through a pipe (no pool, no
pickling, no executor threads): the fork sends back the cache rows of the chunks it took,
then waits for a list of bodies to render (or for its pipe to close) and sends back their
HTML. It touches nothing
else (the ledger is this process's) and leaves by os._exit. If this process dies, the fork's
pipes close and it leaves too; if the fork dies, this process does its share itself.
"""

from __future__ import annotations

import contextlib
import marshal
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

_FORMAT = 4  # marshal's: plain values only; reading it never runs code
MIN_CHUNK = 25  # entries taken at a time (~2 ms of reading)

Row = tuple[int, int, str, bytes]  # a cache row: size, mtime_ns, checksum, payload
Ask = tuple[str, ...]  # what the fork is asked to render (see shown_render.render_in_fork)


class ReadingFork:
    """Started at once: `read(item)` in the fork for each item of the chunks it takes (this
    process takes the others by `chunks()`); then `idle()` while it waits for asks, and
    `render(ask)` for each ask sent by `ask()`, if any."""

    def __init__(self, items: Sequence[Any], read: Callable[[Any], Row],
                 render: Callable[[Ask], str | None],
                 idle: Callable[[], object] | None = None) -> None:
        self.items = items
        # ~200 chunks for 5,000 entries; never more tokens than the pipe holds unread
        self.chunk = max(MIN_CHUNK, -(-len(items) // 4000))
        count = -(-len(items) // self.chunk)
        tokens_r, tokens_w = os.pipe()
        try:
            _send(tokens_w, b"".join(n.to_bytes(2, "big") for n in range(count)))
        except BaseException:
            os.close(tokens_r)
            raise
        self._tokens = tokens_r
        rows_r, rows_w = os.pipe()
        asks_r, asks_w = os.pipe()
        html_r, html_w = os.pipe()
        try:
            self.pid = os.fork()
        except OSError:
            for fd in (tokens_r, rows_r, rows_w, asks_r, asks_w, html_r, html_w):
                os.close(fd)
            raise
        if self.pid == 0:  # the fork
            status = 1
            try:
                for fd in (rows_r, asks_w, html_r):
                    os.close(fd)
                taken = [(start, [read(item) for item in items[start:start + self.chunk]])
                         for start in self.chunks()]
                _send(rows_w, marshal.dumps(taken, _FORMAT))
                if idle is not None:
                    with contextlib.suppress(Exception):
                        idle()
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

    def chunks(self) -> Iterator[int]:
        """The first index of each chunk this process takes, until none is left."""
        while len(token := os.read(self._tokens, 2)) == 2:
            yield int.from_bytes(token, "big") * self.chunk

    def rows(self) -> dict[int, Row]:
        """The rows of the items the fork read, by index (none if it failed)."""
        data = _receive(self._rows)
        self._rows = -1
        try:
            taken = marshal.loads(data)
        except (ValueError, EOFError, TypeError):  # cut short: the fork died
            return {}
        rows: dict[int, Row] = {}
        for start, chunk in taken:
            rows.update(zip(range(start, start + len(chunk)), chunk, strict=True))
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
        for fd in (self._tokens, self._rows, self._asks, self._html):
            if fd != -1:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._tokens = self._rows = self._asks = self._html = -1
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
