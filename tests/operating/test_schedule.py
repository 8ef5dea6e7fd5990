"""digest.cadence on the site's clock: each schedule around midnight and across both
daylight-saving changes, in Europe/London and America/New_York; then real runs of a site."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import invoke, markdown_entry, write_entry
from pipeline.core.schedule import Schedule, ScheduleError, parse_cadence
from pipeline.run import plan, run

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)  # the schedule was set up long before


def at(tz: ZoneInfo, text: str, fold: int = 0) -> datetime:
    """A wall-clock time on the site's clock, as an instant."""
    return datetime.fromisoformat(text).replace(tzinfo=tz, fold=fold)


def fires(cadence: str, tz: ZoneInfo, start: datetime, end: datetime,
          since: datetime = LONG_AGO, step: timedelta = timedelta(minutes=1)
          ) -> list[datetime]:
    """Every minute from start to end, a run: the instants at which a digest goes out (the
    last one before went out at `start`, a first run)."""
    schedule, last, sent = parse_cadence(cadence), start - timedelta(seconds=1), []
    now = start.astimezone(UTC)
    while now <= end:
        if schedule.allows(last, since, now, tz):
            sent.append(now)
            last = now
        now += step
    return sent


def local(moments: list[datetime], tz: ZoneInfo) -> list[str]:
    return [m.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") for m in moments]


# --- reading digest.cadence -----------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("every run", Schedule("every run")),
    ("daily", Schedule("daily")),
    ("weekly", Schedule("weekly")),
    ("daily at 06:30", Schedule("daily at", parse_cadence("daily at 6:30").at)),
    ("Weekly on Tuesday at 07:00", Schedule("weekly at", parse_cadence("daily at 07:00").at,
                                            weekday=1)),
    ("weekly on sundays at 7:00", Schedule("weekly at", parse_cadence("daily at 07:00").at,
                                           weekday=6)),
    ("monthly on the 1st at 08:00", Schedule("monthly at", parse_cadence("daily at 8:00").at,
                                             day=1)),
    ("monthly on 15 at 08:00", Schedule("monthly at", parse_cadence("daily at 8:00").at,
                                        day=15)),
])
def test_cadences_are_read(text: str, expected: Schedule) -> None:
    assert parse_cadence(text) == expected


@pytest.mark.parametrize("text", ["hourly", "daily at 24:00", "daily at 6.30",
                                  "weekly on Tusday at 07:00", "monthly on the 32nd at 08:00",
                                  "daily at"])
def test_bad_cadences_are_refused(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse_cadence(text)


def test_a_bad_cadence_is_a_config_error_with_examples(site: Path) -> None:
    with_cadence(site, "weekly on Tusday at 07:00")
    code, _, err = invoke("check", "--site", str(site))
    assert code == 78
    assert "digest.cadence: 'tusday' is not a day of the week" in err
    assert '"monthly on the 1st at 08:00"' in err


# --- around midnight ---------------------------------------------------------------------------

@pytest.mark.parametrize("tz", [LONDON, NEW_YORK])
def test_daily_at_midnight_fires_at_midnight_once(tz: ZoneInfo) -> None:
    sent = fires("daily at 00:00", tz, at(tz, "2026-06-10T23:50"), at(tz, "2026-06-12T00:10"))
    assert local(sent, tz)[0].startswith("2026-06-11 00:00")
    assert [s[:16] for s in local(sent, tz)] == ["2026-06-11 00:00", "2026-06-12 00:00"]


@pytest.mark.parametrize("tz", [LONDON, NEW_YORK])
def test_daily_just_before_midnight_is_not_repeated_after_it(tz: ZoneInfo) -> None:
    sent = fires("daily at 23:59", tz, at(tz, "2026-06-10T23:50"), at(tz, "2026-06-11T23:58"))
    assert [s[:16] for s in local(sent, tz)] == ["2026-06-10 23:59"]


def test_plain_daily_and_weekly_turn_at_local_midnight() -> None:
    last = at(LONDON, "2026-06-10T23:30")  # 22:30 UTC: still the 10th in London
    schedule = parse_cadence("daily")
    assert not schedule.allows(last, LONG_AGO, at(LONDON, "2026-06-10T23:59"), LONDON)
    assert schedule.allows(last, LONG_AGO, at(LONDON, "2026-06-11T00:00"), LONDON)
    weekly = parse_cadence("weekly")  # 2026-06-14 is a Sunday
    last = at(LONDON, "2026-06-08T00:30")
    assert not weekly.allows(last, LONG_AGO, at(LONDON, "2026-06-14T23:59"), LONDON)
    assert weekly.allows(last, LONG_AGO, at(LONDON, "2026-06-15T00:00"), LONDON)
    assert weekly.next_due(last, LONG_AGO, at(LONDON, "2026-06-10T12:00"), LONDON) == \
        at(LONDON, "2026-06-15T00:00")


def test_weekly_on_tuesday_fires_on_tuesday_after_a_monday_midnight() -> None:
    # 2026-12-07 is a Monday
    sent = fires("weekly on Tuesday at 07:00", LONDON, at(LONDON, "2026-12-07T23:00"),
                 at(LONDON, "2026-12-16T12:00"), step=timedelta(minutes=15))
    assert local(sent, LONDON) == ["2026-12-08 07:00 GMT", "2026-12-15 07:00 GMT"]


def test_monthly_on_the_1st_after_the_last_night_of_the_month() -> None:
    sent = fires("monthly on the 1st at 08:00", NEW_YORK, at(NEW_YORK, "2026-11-30T23:00"),
                 at(NEW_YORK, "2027-01-02T00:00"), step=timedelta(minutes=15))
    assert local(sent, NEW_YORK) == ["2026-12-01 08:00 EST", "2027-01-01 08:00 EST"]


def test_monthly_on_the_31st_falls_on_the_last_day_of_a_short_month() -> None:
    sent = fires("monthly on the 31st at 08:00", LONDON, at(LONDON, "2027-02-01T00:00"),
                 at(LONDON, "2027-04-01T00:00"), step=timedelta(minutes=30))
    assert local(sent, LONDON) == ["2027-02-28 08:00 GMT", "2027-03-31 08:00 BST"]


# --- daylight saving ---------------------------------------------------------------------------

@pytest.mark.parametrize(("tz", "day", "skipped", "fired"), [
    # London jumps 01:00 GMT → 02:00 BST on 29 March 2026; New York 02:00 EST → 03:00 EDT on
    # 8 March 2026. A time the clocks skip falls an hour later that day.
    (LONDON, "2026-03-29", "01:30", "2026-03-29 02:30 BST"),
    (NEW_YORK, "2026-03-08", "02:30", "2026-03-08 03:30 EDT"),
])
def test_spring_forward_a_skipped_time_fires_once_an_hour_later(
        tz: ZoneInfo, day: str, skipped: str, fired: str) -> None:
    start = at(tz, f"{day}T00:00") - timedelta(days=1)
    sent = fires(f"daily at {skipped}", tz, start, start + timedelta(days=3))
    assert fired in local(sent, tz)
    assert len(sent) == 3  # one a day: the day before, the change, the day after
    assert [s[:10] for s in local(sent, tz)] == sorted({s[:10] for s in local(sent, tz)})


@pytest.mark.parametrize(("tz", "day", "repeated", "fired"), [
    # London falls back 02:00 BST → 01:00 GMT on 25 October 2026; New York 02:00 EDT →
    # 01:00 EST on 1 November 2026. A time that happens twice fires at its first occurrence.
    (LONDON, "2026-10-25", "01:30", "2026-10-25 01:30 BST"),
    (NEW_YORK, "2026-11-01", "01:30", "2026-11-01 01:30 EDT"),
])
def test_fall_back_a_repeated_time_fires_once(tz: ZoneInfo, day: str, repeated: str,
                                             fired: str) -> None:
    start = at(tz, f"{day}T00:00")
    sent = fires(f"daily at {repeated}", tz, start, start + timedelta(hours=5))
    assert local(sent, tz) == [fired]


@pytest.mark.parametrize(("tz", "day"), [(LONDON, "2026-03-29"), (LONDON, "2026-10-25"),
                                         (NEW_YORK, "2026-03-08"), (NEW_YORK, "2026-11-01")])
def test_a_morning_digest_keeps_its_wall_clock_time_across_the_change(tz: ZoneInfo,
                                                                      day: str) -> None:
    start = at(tz, f"{day}T00:00") - timedelta(days=1)
    sent = fires("daily at 06:30", tz, start, start + timedelta(days=3))
    assert [s[11:16] for s in local(sent, tz)] == ["06:30", "06:30", "06:30"]


def test_weekly_across_the_change_is_exactly_one_a_week() -> None:
    # Sundays 22 and 29 March and 5 April 2026 in London, the middle one the change day
    sent = fires("weekly on Sunday at 01:30", LONDON, at(LONDON, "2026-03-21T00:00"),
                 at(LONDON, "2026-04-06T00:00"), step=timedelta(minutes=5))
    assert local(sent, LONDON) == ["2026-03-22 01:30 GMT", "2026-03-29 02:30 BST",
                                   "2026-04-05 01:30 BST"]


# --- the schedule's first slot, missed slots, next due --------------------------------------

def test_a_schedule_first_seen_after_its_slot_waits_for_the_next_one() -> None:
    schedule = parse_cadence("weekly on Tuesday at 07:00")
    since = at(LONDON, "2026-12-04T10:00")  # set up on a Friday
    for day in ("2026-12-04T10:00", "2026-12-05T12:00", "2026-12-08T06:59"):
        assert not schedule.allows(None, since, at(LONDON, day), LONDON), day
    assert schedule.next_due(None, since, at(LONDON, "2026-12-05T12:00"), LONDON) == \
        at(LONDON, "2026-12-08T07:00")
    assert schedule.allows(None, since, at(LONDON, "2026-12-08T07:00"), LONDON)


def test_a_machine_that_was_off_catches_up_once_not_once_per_slot() -> None:
    schedule = parse_cadence("daily at 06:30")
    last = at(LONDON, "2026-06-01T06:30")
    back = at(LONDON, "2026-06-05T09:00")  # off for three slots
    assert schedule.allows(last, LONG_AGO, back, LONDON)
    assert not schedule.allows(back, LONG_AGO, back + timedelta(hours=1), LONDON)
    assert schedule.next_due(back, LONG_AGO, back + timedelta(hours=1), LONDON) == \
        at(LONDON, "2026-06-06T06:30")


# --- real runs of a site -------------------------------------------------------------------------

def with_cadence(site: Path, cadence: str) -> None:
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text().replace("[digest]", f'[digest]\ncadence = "{cadence}"'))


def test_runs_hold_the_digest_until_its_time_and_say_when(site: Path) -> None:
    with_cadence(site, "daily at 06:30")
    write_entry(site, "a.md", markdown_entry(date="2026-11-20"))
    first = run(site, at(LONDON, "2026-11-24T12:00"))  # the schedule is seen first here
    assert first.digest_id is None and first.held_back == 1
    assert first.next_digest == at(LONDON, "2026-11-25T06:30")
    assert first.next_digest.utcoffset() == timedelta(0)  # on the site's clock (GMT)
    early = plan(site, at(LONDON, "2026-11-25T06:29"))
    assert early.held_back == 1 and early.next_digest == at(LONDON, "2026-11-25T06:30")
    assert run(site, at(LONDON, "2026-11-25T06:29")).digest_id is None
    built = run(site, at(LONDON, "2026-11-25T06:31"))
    assert built.digest_id == 1 and built.written == 2
    write_entry(site, "b.md", markdown_entry(title="Later the same day", date="2026-11-25"))
    later = run(site, at(LONDON, "2026-11-25T18:00"))
    assert later.digest_id is None and later.held_back == 1
    assert later.next_digest == at(LONDON, "2026-11-26T06:30")
    assert run(site, at(LONDON, "2026-11-26T06:45")).digest_id == 2


def test_status_and_dry_run_say_when_the_next_digest_is_due(site: Path) -> None:
    with_cadence(site, "monthly on the 1st at 08:00")
    write_entry(site, "a.md", markdown_entry())
    code, out, _ = invoke("run", "--site", str(site))
    assert code == 0 and "1 new entry waits for the next digest (digest.cadence: from " in out
    due = r"from \w{3} 1 \w{3} \d{4} 08:00 (GMT|BST)"
    status = invoke("status", "--site", str(site))[1]
    assert re.search(rf"Next digest \(monthly on the 1st at 08:00\): {due}", status), status
    dry = invoke("run", "--site", str(site), "--dry-run")[1]
    assert re.search(rf"1 new entry waits for digest.cadence: the next digest is due {due}",
                     dry), dry


def test_a_dry_run_with_nothing_new_still_says_when_the_next_digest_may_go(site: Path) -> None:
    with_cadence(site, "weekly on Tuesday at 07:00")
    dry = invoke("run", "--site", str(site), "--dry-run")[1]
    assert "Nothing new for the digest." in dry
    assert re.search(r"digest.cadence: the next digest may go out from Tue \d+ \w{3} \d{4} "
                     r"07:00 (GMT|BST)\.", dry), dry


def test_entries_dated_in_the_future_are_counted_with_their_dates(site: Path) -> None:
    for n in range(3):
        write_entry(site, f"now{n}.md", markdown_entry(title=f"Now {n}", date=f"2026-03-1{n}"))
    write_entry(site, "later.md", markdown_entry(title="Later", date="2099-12-09"))
    code, out, _ = invoke("check", "--site", str(site))
    assert code == 0
    assert "3 entries ready, 1 waits for its date (2099-12-09), 0 problems." in out
    assert "Entries waiting for their date: 1 (2099-12-09)" in invoke("status", "--site",
                                                                      str(site))[1]
    dry = invoke("run", "--site", str(site), "--dry-run")[1]
    assert "1 entry waits for its date (2099-12-09)" in dry
