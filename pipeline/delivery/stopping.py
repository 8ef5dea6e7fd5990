"""A send stops the same way whichever signal asks it to: Ctrl-C (SIGINT), `systemctl stop`,
`timeout` and container runtimes (SIGTERM), a closed terminal (SIGHUP). The messages in
flight are finished and recorded, the rest stays queued, and the exit code says which signal
(128 + its number, as a shell reports a process a signal ended)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """Raised in the main thread when one of SIGNALS arrives."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, frame: object) -> None:
    raise Stopped(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGNALS into Stopped for the duration (only the main thread can take signals:
    elsewhere, as in tests that send from a thread, this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, _raise) for number in SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
