"""The seam between sending and a way to deliver: one small protocol, one registry.

`send` drains the outbox through a Transport and never knows which backend it talks to. A
backend is one module that provides a `Backend` and one line in BACKENDS below; it is chosen by
`[delivery] backend` in newsletter.toml ("smtp" by default).

Every message ends in one of three outcomes: accepted ("sent"), try again later ("deferred"),
or refused for good ("failed"; `bouncing` when the refusal says the address itself is bad).
Trouble with the way out itself is raised instead: TransportDown (cannot reach it: stop, the
rest stays queued, cron tries again) or TransportSetupError (it refuses us as configured:
fix the settings).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipeline.core.errors import Problem


@dataclass(frozen=True)
class Outcome:
    state: str  # "sent", "deferred" or "failed"
    reply: str  # "250 2.0.0 Ok: queued as 4B2F…", or what went wrong
    bouncing: bool = False  # failed because the recipient's address is refused


class TransportError(Exception):
    """Base of the errors a transport raises about itself rather than about one message."""


class TransportDown(TransportError):
    """The way out cannot be reached or refuses every connection: stop, try again later."""


class TransportSetupError(TransportError):
    """The way out refuses us as configured (login, TLS, sender): retrying will not help."""


class Transport(Protocol):
    """One connection (or API client) to the way out, used by one sending thread."""

    def send(self, sender: str, recipients: Sequence[str], data: bytes) -> Outcome:
        """Hand over one message's bytes for these recipients with this envelope sender."""

    def close(self) -> None:
        """Release the connection; safe to call more than once."""


class Backend(Protocol):
    """What a delivery module provides: its settings' schema and checks, and transports."""

    name: str
    # newsletter.toml tables this backend reads: {table: {key: default}}, for the config's
    # unknown-key warnings and the README's documentation test.
    schema: Mapping[str, Mapping[str, object]]

    def settings(self, site_dir: Path, raw: Mapping[str, Any],
                 bad: Callable[[str, str, str], None]) -> Any:
        """The backend's settings from the raw config values (`"table.key": value`), checked;
        problems go to `bad(key, problem, hint)`."""

    def check(self, settings: Any) -> list[Problem]:
        """What is missing before anything can be sent (e.g. a password in the environment)."""

    def connect(self, settings: Any) -> Transport:
        """A new transport; it connects on first use."""


# name → module that defines `BACKEND`. A new backend is one module plus one line here.
BACKENDS: dict[str, str] = {
    "smtp": "pipeline.delivery.smtp",
}


def backend(name: str) -> Backend:
    """The backend called `name`, imported on first use (a no-op run imports none)."""
    return importlib.import_module(BACKENDS[name]).BACKEND
