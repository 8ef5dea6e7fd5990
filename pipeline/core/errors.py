"""Errors that carry where the problem is and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.core.text import escaped


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input, printed as `path:line: field: problem — hint` (without
    `:line` when it is 0, without `field: ` when it is empty: a problem with the whole file)."""

    path: Path | str
    field: str
    problem: str
    hint: str
    line: int = 1
    warning: bool = False

    def __str__(self) -> str:
        """One line whatever the text holds: a file name with a newline (or a tab, a bidi
        override) is shown escaped, so cron mail and `grep` see one problem per line."""
        kind = "warning: " if self.warning else ""
        where = f"{self.path}:{self.line}" if self.line else f"{self.path}"
        field = f"{self.field}: " if self.field else ""
        return escaped(f"{where}: {kind}{field}{self.problem} — {self.hint}")


class EntryError(Exception):
    """An entry cannot be published; the run leaves it out and goes on."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class ConfigError(Exception):
    """The site's configuration or subscriber list is unusable; carries every problem found
    at once. Raised before anything is written."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class TemplateError(Exception):
    """A digest template failed to load, render or compile; nothing is written to the outbox.
    The problem's path is the template's file (`templates/…` for a site's override)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem
