"""Open problems: what the last `run` and the last `send` found wrong, kept in the ledger's
state table. `--quiet` prints a problem only when it first appears (or its wording changes,
say a new line number), so a cron job every 15 minutes mails one typo once, not 96 times a
day; `status` lists every problem still open."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.core.errors import Problem
from pipeline.state.ledger import Ledger, open_ledger

COMMANDS = ("run", "send")  # each keeps its own list: a send does not close a run's problems


def _key(command: str) -> str:
    return f"open_problems:{command}"


def as_dict(problem: Problem) -> dict[str, object]:
    """A problem as `--json` shows it (and the ledger keeps it)."""
    return {"path": str(problem.path), "line": problem.line, "field": problem.field,
            "problem": problem.problem, "hint": problem.hint, "warning": problem.warning}


def _from_dict(row: dict[str, object]) -> Problem:
    return Problem(str(row["path"]), str(row["field"]), str(row["problem"]), str(row["hint"]),
                   int(row["line"]), bool(row["warning"]))  # type: ignore[call-overload]


def _stored(ledger: Ledger, command: str) -> list[Problem]:
    raw = ledger.get_state(_key(command))
    try:
        return [_from_dict(row) for row in json.loads(raw)] if raw else []
    except (ValueError, KeyError, TypeError):  # unreadable: treat every problem as new
        return []


def note(ledger: Ledger, command: str, problems: list[Problem]) -> list[Problem]:
    """Record `problems` as the command's open ones; return those that no command had open
    (in their order): `run --send` reports a config warning once, not twice. Problems no
    longer found are closed."""
    stored = _stored(ledger, command)
    before = {str(p) for p in open_problems(ledger)}
    unique = list(dict.fromkeys(problems))
    if unique or stored:  # a run with nothing wrong, after one with nothing, writes nothing
        ledger.set_state(_key(command), json.dumps([as_dict(p) for p in unique]))
    return [p for p in unique if str(p) not in before]


def note_problems(state_dir: Path, command: str, problems: list[Problem]) -> list[Problem]:
    """`note` in a ledger of its own (for `send`, whose ledger is closed by then)."""
    with open_ledger(state_dir) as ledger:
        return note(ledger, command, problems)


def open_problems(ledger: Ledger) -> list[Problem]:
    """Every problem the last run and the last send left open."""
    found: list[Problem] = []
    for command in COMMANDS:
        found += [p for p in _stored(ledger, command) if p not in found]
    return found
