"""When a digest may go out: `digest.cadence`, on the site's clock.

    every run                      whenever a run finds new entries (the default)
    daily | weekly                 at most one per calendar day / ISO week (Monday first)
    daily at 06:30                 once a day, at the first run from 06:30 on
    weekly on Tuesday at 07:00     once a week, at the first run from Tuesday 07:00 on
    monthly on the 1st at 08:00    once a month (the 29th–31st: the month's last day if shorter)

A timed schedule has "slots", instants on the site's clock. A digest is due when the latest
slot up to now is later than both the last digest and the moment the schedule was first seen
(so a schedule set up on a Friday sends its first weekly digest on Tuesday, not at once). A
run after a missed slot (the machine was off) catches up once, not once per slot missed.

Daylight-saving changes: a slot at a time the clocks skip (01:30 on the spring change in
Europe/London) falls an hour later that day (02:30); a slot at a time that happens twice (the
autumn change) is its first occurrence, and only one digest goes out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
EXAMPLES = ('"every run"', '"daily"', '"weekly"', '"daily at 06:30"',
            '"weekly on Tuesday at 07:00"', '"monthly on the 1st at 08:00"')

# Patterns, not compiled ones: compiling costs every run a few ms, and most sites never use them.
_AT = r" at (?P<hour>\d{1,2}):(?P<minute>\d{2})"
_DAILY = rf"daily{_AT}"
_WEEKLY = rf"weekly on (?P<day>[a-z]+?)s?{_AT}"
_MONTHLY = rf"monthly on (?:the )?(?P<dom>\d{{1,2}})(?:st|nd|rd|th)?{_AT}"


class ScheduleError(ValueError):
    """A cadence that cannot be read; its message says what is wrong."""


@dataclass(frozen=True)
class Schedule:
    kind: str  # "every run", "daily", "weekly" (calendar periods) or "daily at", "weekly at",
    # "monthly at" (slots)
    at: time | None = None
    weekday: int = 0  # Monday 0, for "weekly at"
    day: int = 1  # of the month, for "monthly at"

    @property
    def timed(self) -> bool:
        return self.at is not None

    def allows(self, last: datetime | None, since: datetime, now: datetime, tz: ZoneInfo
               ) -> bool:
        """Whether a digest may be built at `now`, the last one having been built at `last`
        (None: never) and this schedule first seen at `since`."""
        if self.kind == "every run":
            return True
        if not self.timed:
            if last is None:
                return True
            return self._period(now, tz) > self._period(last, tz)
        slot = self.latest_slot(now, tz)
        return slot is not None and slot > since and (last is None or slot > last)

    def next_due(self, last: datetime | None, since: datetime, now: datetime, tz: ZoneInfo
                 ) -> datetime | None:
        """When the next digest may be built: `now` if it may now, None for "every run"."""
        if self.kind == "every run":
            return None
        if self.allows(last, since, now, tz):
            return now
        if not self.timed:
            assert last is not None
            return self._period_start_after(last, tz)
        slot = self.latest_slot(now, tz)
        assert slot is not None
        return self._slot_after(slot, tz)

    # --- calendar periods ("daily", "weekly") -------------------------------------------------

    def _period(self, when: datetime, tz: ZoneInfo) -> tuple[int, int]:
        local = when.astimezone(tz)
        if self.kind == "daily":
            return local.toordinal(), 0
        return local.isocalendar()[:2]

    def _period_start_after(self, when: datetime, tz: ZoneInfo) -> datetime:
        local = when.astimezone(tz).date()
        ahead = 7 - local.weekday() if self.kind == "weekly" else 1  # next Monday / tomorrow
        return _instant(local + timedelta(days=ahead), time(0, 0), tz)

    # --- slots ---------------------------------------------------------------------------------

    def _slot_on(self, day: date, tz: ZoneInfo) -> datetime | None:
        """This schedule's slot on `day`, if it has one that day."""
        assert self.at is not None
        if self.kind == "weekly at" and day.weekday() != self.weekday:
            return None
        if self.kind == "monthly at" and day.day != min(self.day, _last_day(day)):
            return None
        return _instant(day, self.at, tz)

    def latest_slot(self, now: datetime, tz: ZoneInfo) -> datetime | None:
        """The last slot at or before `now` (within the last ~month)."""
        today = now.astimezone(tz).date()
        for back in range(0, 32):
            slot = self._slot_on(today - timedelta(days=back), tz)
            if slot is not None and slot <= now:
                return slot
        return None

    def _slot_after(self, slot: datetime, tz: ZoneInfo) -> datetime:
        day = slot.astimezone(tz).date()
        for ahead in range(1, 33):
            found = self._slot_on(day + timedelta(days=ahead), tz)
            if found is not None and found > slot:
                return found
        raise AssertionError("every schedule has a slot within 32 days")


def _last_day(day: date) -> int:
    """The number of the last day of `day`'s month (no `calendar`: it costs a run ~5 ms)."""
    following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return (following - timedelta(days=1)).day


def _instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The instant the site's clock shows `at` on `day`: the first of two in the autumn hour,
    an hour later for a time the spring change skips."""
    # fold=0 takes the offset in force before a change: for a skipped time that is the
    # winter offset (so 01:30 reads as 02:30 summer time), for a repeated one the summer one.
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def parse_cadence(text: str) -> Schedule:
    """The schedule `digest.cadence` names; ScheduleError says what is wrong."""
    spoken = " ".join(text.lower().split())
    if spoken in ("every run", "daily", "weekly"):
        return Schedule(spoken)
    for pattern, kind in ((_DAILY, "daily at"), (_WEEKLY, "weekly at"),
                          (_MONTHLY, "monthly at")):
        match = re.fullmatch(pattern, spoken)
        if match is None:
            continue
        hour, minute = int(match["hour"]), int(match["minute"])
        if hour > 23 or minute > 59:
            raise ScheduleError(f"{match['hour']}:{match['minute']} is not a time of day "
                                "(write 24-hour time, 00:00 to 23:59)")
        at = time(hour, minute)
        if kind == "weekly at":
            day = match["day"]
            if day not in DAYS:
                raise ScheduleError(f"{day!r} is not a day of the week")
            return Schedule(kind, at, weekday=DAYS.index(day))
        if kind == "monthly at":
            dom = int(match["dom"])
            if not 1 <= dom <= 31:
                raise ScheduleError(f"the {dom} is not a day of the month (1 to 31)")
            return Schedule(kind, at, day=dom)
        return Schedule(kind, at)
    raise ScheduleError(f"{text!r} is not a cadence")
