"""Turning raw field values into typed Article fields, with errors that say what to do."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from pipeline.core.errors import EntryError, Problem
from pipeline.entries.sanitise import one_line

# 03/04/2026, 3.4.26: read as 3 April in most of the world, 4 March in the US.
_DAY_MONTH = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-]\d{2,4}")


class FieldReader:
    """Reads fields of one entry, remembering the file and each field's line for errors."""

    def __init__(self, path: Path,
                 lines: dict[str, int] | Callable[[], dict[str, int]] | None = None) -> None:
        self.path = path
        self._lines = lines or {}

    @property
    def lines(self) -> dict[str, int]:
        """Each field's line; a callable is asked on first use, i.e. only when a problem is
        reported (finding them is a tenth of reading a sound entry)."""
        if callable(self._lines):
            self._lines = self._lines()
        return self._lines

    @lines.setter
    def lines(self, lines: dict[str, int]) -> None:
        self._lines = lines

    def fail(self, field: str, problem: str, hint: str) -> EntryError:
        return EntryError(Problem(self.path, field, problem, hint, line=self.lines.get(field, 1)))

    def warn(self, field: str, problem: str, hint: str) -> Problem:
        return Problem(self.path, field, problem, hint, line=self.lines.get(field, 1), warning=True)

    def text(self, field: str, value: object, *, required: bool = False) -> str:
        if value is None or value == "":
            if required:
                raise self.fail(field, "is missing or empty",
                                f"add `{field}: ...` to the front matter")
            return ""
        if not isinstance(value, str):
            # Not f'"{value}"': YAML has already turned `No` into False and `1.10` into 1.1.
            raise self.fail(field, f"must be text, not {_kind(value)}",
                            f'put the value in quotes: {field}: "…"' + (
                                " (YAML reads yes, no, on and off as true/false)"
                                if isinstance(value, bool) else ""))
        cleaned = one_line(value)
        if required and not cleaned:
            raise self.fail(field, "is empty", f"give the entry a {field}")
        return cleaned

    def when(self, field: str, value: object, tz: ZoneInfo, *, required: bool = False
             ) -> datetime | None:
        """A date or datetime; naive values are on the site's clock."""
        if value is None or value == "":
            if required:
                raise self.fail(field, "is missing",
                                f"add `{field}: 2026-01-31` (or 2026-01-31T09:30:00+00:00)")
            return None
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, date):
            moment = datetime.combine(value, time())
        elif isinstance(value, str):
            if (numbers := _DAY_MONTH.match(value.strip())) and max(
                    int(n) for n in numbers.groups()) <= 12:
                raise self.fail(field, f"{value!r} is ambiguous (day/month or month/day?)",
                                "write it year first: 2026-01-31")
            try:
                moment = datetime.fromisoformat(value.strip())
            except ValueError:
                raise self.fail(field, f"{value!r} is not a date",
                                "write it as 2026-01-31 or 2026-01-31T09:30:00+01:00") from None
        else:
            raise self.fail(field, f"must be a date, not {_kind(value)}", "write it as 2026-01-31")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=tz)
        try:
            return moment.astimezone(tz)
        except (OverflowError, ValueError):  # e.g. 9999-12-31T23:00:00-05:00
            raise self.fail(field, f"{value} is out of range", "check the year") from None

    def text_list(self, field: str, value: object) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
            raise self.fail(field, f"must be a list of text, not {_kind(value)}",
                            f'write it as {field}: ["first", "second"]')
        return tuple(item for item in (one_line(str(v)) for v in value) if item)


def _kind(value: object) -> str:
    return {dict: "a mapping", list: "a list", bool: "true/false", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)
