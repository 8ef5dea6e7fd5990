"""The delivery tables of newsletter.toml, checked by the code that owns each one.

The core keeps their raw values (Config.tables); here they are read when something is about to
be sent or checked: [dkim] (signing, whatever the backend) and the chosen backend's own tables
(its module's `schema`), the backend being named by `delivery.backend`. Unknown keys and
tables are warnings, as they are for the core's tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.core.config import Config
from pipeline.core.errors import ConfigError, Problem
from pipeline.delivery.signing import DKIM_SCHEMA, DkimSettings, DkimSigner, dkim_settings
from pipeline.delivery.transport import (
    BACKENDS,
    Backend,
    Settings,
    backend,
    unknown_tables,
)

OWN_SCHEMA: dict[str, dict[str, object]] = {"dkim": DKIM_SCHEMA}


@dataclass(frozen=True)
class Delivery:
    """Which backend delivers, with its checked settings, and how messages are signed."""

    backend: Backend
    transport: Any  # the backend's settings (a `Settings`, and more of its own)
    dkim: DkimSettings | None
    warnings: tuple[Problem, ...] = ()

    @property
    def settings(self) -> Settings:
        return self.transport  # type: ignore[no-any-return]


class Values:
    """One table set's raw values, read with checks; problems are collected, not raised."""

    def __init__(self, config: Config, schema: Mapping[str, Mapping[str, object]],
                 problems: list[Problem]) -> None:
        self.config, self.schema, self.problems = config, schema, problems
        self.raw: dict[str, object] = {}
        for table, keys in schema.items():
            section = config.tables.get(table, {})
            if not isinstance(section, dict):
                self.bad(table, "must be a table", f"write it as [{table}]")
                section = {}
            for key, default in keys.items():
                self.raw[f"{table}.{key}"] = section.get(key, default)
            for key in section:
                if key not in keys:
                    problems.append(config.problem(
                        f"{table}.{key}", "unknown key",
                        f"remove it or check its spelling; known: {', '.join(keys)}",
                        warning=True))

    def bad(self, key: str, problem: str, hint: str) -> None:
        found = self.config.problem(key, problem, hint)
        if found not in self.problems:  # a value read twice is reported once
            self.problems.append(found)

    def default(self, key: str) -> object:
        table, name = key.split(".", 1)
        return self.schema[table][name]

    def string(self, key: str) -> str:
        value = self.raw.get(key, "")
        if not isinstance(value, str):
            self.bad(key, f"must be a string, not {type(value).__name__}",
                     "put the value in quotes")
            return ""
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            self.bad(key, "contains a control character", "remove it")
            return ""
        return value.strip()

    def number(self, key: str, minimum: float, whole: bool = True) -> float:
        value = self.raw[key]
        kinds = (int,) if whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:
            kind = "whole number" if whole else "number"
            self.bad(key, f"must be a {kind} of {minimum:g} or more",
                     f"e.g. `{key.split('.')[-1]} = {self.default(key)}`")
            return float(minimum)
        return value if whole else float(value)

    def file(self, key: str, what: str) -> Path | None:
        """A file named relative to the site folder, which must exist; None if unset."""
        name = self.string(key)
        if not name:
            return None
        path = self.config.site_dir / name
        if not path.is_file():
            self.bad(key, f"no file at {path}", f"give the path of {what}, relative to the "
                     "site folder")
            return None
        return path


def delivery_settings(config: Config) -> Delivery:
    """The delivery settings, checked; ConfigError lists every problem (warnings too)."""
    problems: list[Problem] = []
    own = Values(config, OWN_SCHEMA, problems)
    name = config.delivery_backend  # [delivery] is the core's: the job's policy
    if name not in BACKENDS:
        own.bad("delivery.backend", f"{name!r} is not a delivery backend",
                f"use one of: {', '.join(repr(n) for n in BACKENDS)}")
        name = "smtp"
    chosen = backend(name)
    values = Values(config, chosen.schema, problems)
    transport = chosen.settings(values, config)
    dkim = dkim_settings(own, config)
    problems += unknown_tables(config)
    if any(not p.warning for p in problems):
        raise ConfigError(problems)
    return Delivery(chosen, transport, dkim, tuple(problems))


def ready_to_send(config: Config) -> Delivery:
    """The delivery settings, if they are enough to send; else ConfigError saying what to add."""
    delivery = delivery_settings(config)
    problems = delivery.backend.check(delivery.transport, config)
    if problems:
        raise ConfigError(problems)
    return delivery


def run_signer(config: Config) -> tuple[DkimSigner | None, list[Problem]]:
    """The signer `newsletter run` signs each message with as it writes it (None: [dkim] is
    not set), and [dkim]'s problems as warnings: with a broken [dkim] the messages are
    written unsigned rather than not at all, `send` refuses to start until it is fixed, and
    then signs them as it sends them."""
    problems: list[Problem] = []
    settings = dkim_settings(Values(config, {"dkim": DKIM_SCHEMA}, problems), config)
    if settings is not None and not any(not p.warning for p in problems):
        try:
            return DkimSigner(settings), []
        except ConfigError as exc:
            problems = exc.problems
    return None, [replace(p, warning=True, hint=f"{p.hint}; the messages are written "
                          "unsigned, and `send` signs them once this is fixed")
                  for p in problems if not p.warning]
