"""Counts in messages: "1 message", "2 messages" (English only until the catalogues come)."""

from __future__ import annotations

from datetime import datetime


def counted(n: int, singular: str, plural: str = "") -> str:
    """`n` and the noun in the number it needs: counted(1, "entry") → "1 entry", counted(3,
    "new entry") → "3 new entries". `plural` for a noun the rule gets wrong."""
    if n == 1:
        return f"{n} {singular}"
    if not plural:
        consonant_y = singular.endswith("y") and singular[-2:-1] not in tuple("aeiou")
        plural = singular[:-1] + "ies" if consonant_y else singular + "s"
    return f"{n} {plural}"


def due_line(moment: datetime | None, now: datetime | None = None) -> str:
    """When the next digest may go out, in words: "from Tue 8 Dec 2026 07:00 GMT"."""
    if moment is None:
        return "at the next run that finds new entries"
    if now is not None and moment <= now:
        return "now, at the next run that finds new entries"
    return f"from {moment:%a} {moment.day} {moment:%b %Y %H:%M %Z}"
