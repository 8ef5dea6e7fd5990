"""The seam between sending and a way to deliver: one small protocol, one registry.

`send` drains the outbox through Transports and never knows which backend it talks to. A
backend is one module that defines `BACKEND` plus one line in BACKENDS below; it is chosen by
`[delivery] backend` in newsletter.toml ("smtp" by default).

Every message ends in one of three outcomes: accepted ("sent"), try again later ("deferred"),
or refused for good ("failed"; `bouncing` when the refusal says the address itself is bad).
Trouble with the way out itself is raised instead, and no attempt of the message in hand is
spent: TransportDown (cannot reach it: stop, the rest stays queued, cron tries again),
TransportBusy (it limits our rate: pause the whole send, then go on) or TransportSetupError
(it refuses us as configured: stop and fix the settings).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from pipeline.core.errors import Problem

if TYPE_CHECKING:
    from pipeline.core.config import Config
    from pipeline.delivery.settings import Values


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
    """The way out refuses us as configured (login, TLS, sender, policy, size): retrying
    will not help until the settings (ours or the relay's) change."""


class TransportBusy(TransportError):
    """The way out limits our rate as a whole (not this message's fault): pause every
    connection for about `wait` seconds, then hand the same message over again."""

    def __init__(self, message: str, wait: float = 0.0) -> None:
        super().__init__(message)
        self.wait = wait


class Transport(Protocol):
    """One connection (or API client) to the way out, used by one sending thread."""

    def send(self, sender: str, recipients: Sequence[str], data: bytes) -> Outcome:
        """Hand over one message's bytes for these recipients with this envelope sender."""

    def close(self) -> None:
        """Release the connection; safe to call more than once."""


class Settings(Protocol):
    """What `send` reads from every backend's settings (each has more of its own)."""

    envelope_from: str  # where bounces go
    connections: int  # sending threads, each with its own Transport
    rate: float  # messages per second across all of them; 0: no limit
    max_per_run: int  # 0: no cap
    retry_after: float  # seconds before the first retry of a deferred message
    max_attempts: int  # a deferred message fails after this many attempts


class Backend(Protocol):
    """What a delivery module provides: its settings' schema and checks, and transports."""

    name: str
    # newsletter.toml tables this backend reads: {table: {key: default}}, for the unknown-key
    # warnings and the README's documentation test.
    schema: Mapping[str, Mapping[str, object]]

    def settings(self, values: Values, config: Config) -> Settings:
        """Its settings from its tables' values, checked; every problem goes to
        `values.bad` (all of a config's problems are reported at once)."""

    def check(self, settings: Any, config: Config) -> list[Problem]:
        """What is missing before anything can be sent (e.g. a password in the environment)."""

    def transports(self, settings: Any) -> Callable[[], Transport]:
        """A maker of transports for one send: those it makes share what one send should
        share (a TLS context, a refused login, a rate limit). Each connects on first use."""


class Entry(NamedTuple):
    module: str  # defines BACKEND
    tables: tuple[str, ...]  # its newsletter.toml tables, known without importing it


# name → where it lives. A new backend is one module plus one line here.
BACKENDS: dict[str, Entry] = {
    "smtp": Entry("pipeline.delivery.smtp", ("smtp",)),
    "ses": Entry("pipeline.delivery.ses", ("ses",)),
}


def backend(name: str) -> Backend:
    """The backend called `name`, imported on first use (a run imports none)."""
    return importlib.import_module(BACKENDS[name].module).BACKEND


# The tables that delivery reads besides its backends': DKIM signing.
DELIVERY_TABLES = ("dkim",)  # [delivery] itself is the core's: the job's policy


def unknown_tables(config: Config) -> list[Problem]:
    """Tables that neither the core nor delivery (any backend) reads: warnings. Here, with
    the registry, so that a run can warn without importing any backend or signing."""
    from pipeline.core.config import SCHEMA

    known = [*SCHEMA, *DELIVERY_TABLES, *(t for e in BACKENDS.values() for t in e.tables)]
    return [config.problem(table, "unknown table", f"remove it; known: {', '.join(known)}",
                           warning=True)
            for table in config.tables if table not in known]
