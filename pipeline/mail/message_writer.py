"""Writing the fan-out's messages into outbox/new/: in line, or, when each is DKIM-signed as it
is written, on a few threads.

Signing costs far more than composing (RSA-2048 ~0.25 ms a message, the body's SHA-256
~35 µs, against ~15 µs to compose and ~30 µs to write the file), and most of it runs without
the GIL (`cryptography` 50 lets go of it while OpenSSL signs, hashlib while it hashes more
than 2 KB), so threads spread it over the cores. Unsigned, the work is mostly the GIL's and
threads would only add hand-over costs: it stays in line.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from pipeline.core.atomic import deliver
from pipeline.core.models import Subscriber
from pipeline.mail.compose import Composer
from pipeline.mail.dkim import DkimSigner

CHUNK = 32  # messages per task: a task's hand-over costs ~20 µs, a signed message ~0.3 ms
Work = list[tuple[str, Composer, Subscriber]]


def signing_threads() -> int:
    """One per core, and one more to work while another waits on the disk."""
    return (os.cpu_count() or 1) + 1


class MessageWriter:
    """`write` queues one message (composed, signed if there is a signer, then tmp/ → new/);
    `wait` returns once every message queued so far is in new/ (or raises what went wrong
    writing one), so a batch is synced and recorded only after its files are all there."""

    def __init__(self, tmp: Path, new: Path, signer: DkimSigner | None) -> None:
        self.tmp, self.new, self.signer = tmp, new, signer
        self.pool = ThreadPoolExecutor(signing_threads(), thread_name_prefix="outbox-sign") \
            if signer is not None else None
        self.work: Work = []
        self.pending: list[Future[None]] = []

    def write(self, name: str, composer: Composer, subscriber: Subscriber) -> None:
        if self.pool is None:
            data, no_leading_dot = composer.compose_marked(subscriber)
            deliver(self.tmp, self.new, name, data, no_leading_dot=no_leading_dot)
            return
        self.work.append((name, composer, subscriber))
        if len(self.work) >= CHUNK:
            self._hand_over()

    def wait(self) -> None:
        self._hand_over()
        pending, self.pending = self.pending, []
        for future in pending:
            future.result()

    def _hand_over(self) -> None:
        if self.work and self.pool is not None:
            self.pending.append(self.pool.submit(self._write_signed, self.work))
            self.work = []

    def _write_signed(self, work: Work) -> None:
        assert self.signer is not None
        tmp, new, sign = self.tmp, self.new, self.signer.sign
        for name, composer, subscriber in work:
            # The signature's own lines start with its name or a tab: no dot is added.
            data, no_leading_dot = composer.compose_marked(subscriber)
            deliver(tmp, new, name, sign(data), no_leading_dot=no_leading_dot)

    def __enter__(self) -> MessageWriter:
        return self

    def __exit__(self, *_: object) -> None:
        if self.pool is not None:  # on an error, what is not begun yet is not written
            self.pool.shutdown(wait=True, cancel_futures=True)
