"""Runs that cron can start, kill and start again: locked, crash-proof, idempotent, quiet."""

from __future__ import annotations

import email
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email import policy
from email.utils import format_datetime
from pathlib import Path

import feedparser
from click.testing import CliRunner

from conftest import REPO, markdown_entry, write_entry
from pipeline.cli.main import cli
from pipeline.run import run
from pipeline.state.ledger import LEDGER_NAME, open_ledger
from pipeline.state.lock import site_lock

SUBSCRIBERS = 1000


def big_site(tmp_path: Path, name: str = "site") -> Path:
    """The sample articles and SUBSCRIBERS subscribers."""
    site = tmp_path / name
    shutil.copytree(REPO / "articles", site / "articles")
    shutil.copy(REPO / "newsletter.toml", site / "newsletter.toml")
    rows = [f"reader{n:04d}@example.org,Reader {n},,active" for n in range(SUBSCRIBERS)]
    (site / "subscribers.csv").write_text("email,name,categories,status\n" + "\n".join(rows))
    return site


def start(site: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NEWSLETTER_SECRET": "kill-test-secret-0123456789-abcdefghij"}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "--site", str(site), "--verbose", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEWSLETTER_SECRET": "kill-test-secret-0123456789-abcdefghij"}
    return subprocess.run([sys.executable, "-m", "pipeline", "run", "--site", str(site), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def outbox_texts(site: Path) -> dict[str, str]:
    """Recipient → plain-text part, for every message in outbox/new; fails on a duplicate."""
    texts: dict[str, str] = {}
    for path in sorted((site / "outbox" / "new").glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        to = message["To"].addresses[0].addr_spec
        assert to not in texts, f"{to} has two messages"
        texts[to] = message.get_body(("plain",)).get_content()
    return texts


def normalised_outbox(site: Path) -> dict[str, bytes]:
    """Recipient → message bytes with the digest's own key and date masked (they differ from
    site to site); fails on a duplicate. Byte comparison keeps 24 kill runs fast."""
    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        assert ledger.digest_count() == 1
        digest = ledger.last_digest()
    assert digest is not None
    key, date = digest.key, format_datetime(digest.created).encode()
    messages: dict[str, bytes] = {}
    for path in (site / "outbox" / "new").glob("*.eml"):
        raw = path.read_bytes()
        to = re.search(rb"^To: .*<(.+?)>", raw, re.M)
        assert to, raw[:300]
        assert to.group(1).decode() not in messages, f"{to.group(1)} has two messages"
        messages[to.group(1).decode()] = raw.replace(key.encode(), b"KEY").replace(
            key[:8].encode(), b"KEY").replace(date, b"DATE")
    return messages


def assert_consistent(site: Path) -> None:
    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        assert ledger.integrity_problems() == []
        assert ledger.digest_count() == 1 and ledger.open_digest() is None  # complete
        assert ledger.message_count(1) == SUBSCRIBERS
        assert len(ledger.sent_slugs()) == 9
    for name in ("feed.xml", "atom.xml"):
        assert not feedparser.parse(site / "public" / name).bozo
    assert not list((site / "outbox" / "tmp").iterdir())


def timeline(site: Path) -> list[tuple[float, str]]:
    """Seconds from start at which each stage's log line appears, in one whole run."""
    began = time.monotonic()
    process = start(site)
    marks = [(0.0, "start")]
    assert process.stderr is not None
    for line in process.stderr:
        marks.append((time.monotonic() - began, line.strip()))
    assert process.wait() == 0
    marks.append((time.monotonic() - began, "exit"))
    return marks


def kill_points(marks: list[tuple[float, str]], per_stage: int = 4) -> list[float]:
    """`per_stage` moments inside each stage: interpreter start and collect, feeds, digest
    rendering, the outbox fan-out, and the end."""
    points = []
    for (begin, _), (end, _) in itertools.pairwise(marks):
        points += [begin + (end - begin) * (k + 0.5) / per_stage for k in range(per_stage)]
    return sorted(points)


def test_a_run_killed_at_any_moment_is_finished_by_the_next(tmp_path: Path) -> None:
    reference = big_site(tmp_path, "reference")
    marks = timeline(reference)
    assert_consistent(reference)
    expected = normalised_outbox(reference)
    assert len(expected) == SUBSCRIBERS
    sample = next(iter(expected.values()))  # the masked parts are what differs, and only them
    assert b"KEY" in sample and b"DATE" in sample
    points = kill_points(marks)
    assert len(points) >= 20 and len(marks) >= 5, marks
    outcomes = []
    for n, delay in enumerate(points):
        site = big_site(tmp_path, f"kill-{n}")
        process = start(site)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        before = len(list((site / "outbox" / "new").glob("*.eml"))) \
            if (site / "outbox" / "new").exists() else 0
        outcomes.append(before)
        done = finish(site)
        assert done.returncode == 0, done.stderr
        assert_consistent(site)
        assert normalised_outbox(site) == expected  # what an uninterrupted run writes
        shutil.rmtree(site)
    # The kills really landed across the run: before, during and after the fan-out.
    assert 0 in outcomes
    assert any(0 < k < SUBSCRIBERS for k in outcomes), outcomes


def test_two_runs_at_once_write_each_message_once(tmp_path: Path) -> None:
    site = big_site(tmp_path)
    first, second = start(site), start(site)
    codes = sorted([first.wait(), second.wait()])
    assert codes in ([0, 0], [0, 75]), codes
    if codes == [0, 75]:
        loser = first if first.returncode == 75 else second
        assert "another run" in (loser.stderr.read() if loser.stderr else "")
    assert len(outbox_texts(site)) == SUBSCRIBERS


def test_a_second_run_with_wait_queues_behind_the_first(tmp_path: Path) -> None:
    site = big_site(tmp_path)
    first, second = start(site, "--wait", "120"), start(site, "--wait", "120")
    assert [first.wait(), second.wait()] == [0, 0]
    assert len(outbox_texts(site)) == SUBSCRIBERS


def test_a_locked_site_exits_75_and_touches_nothing(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry())
    with site_lock(site / ".newsletter"):
        result = CliRunner().invoke(cli, ["run", "--site", str(site)])
    assert result.exit_code == 75
    assert "another run" in result.stderr and "try again" in result.stderr
    assert not (site / "outbox").exists() and not (site / "public").exists()


def test_dry_run_shows_the_plan_and_writes_nothing(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry(title="Planned entry"))
    result = CliRunner().invoke(cli, ["run", "--site", str(site), "--dry-run"])
    assert result.exit_code == 0
    assert "Planned entry" in result.stdout and "2 subscribers" in result.stdout
    assert sorted(p.name for p in site.iterdir()) == ["articles", "newsletter.toml",
                                                     "subscribers.csv"]


def test_status_shows_last_run_digest_and_what_waits(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry(title="First"))
    runner = CliRunner()
    assert "Last run: never" in runner.invoke(cli, ["status", "--site", str(site)]).stdout
    runner.invoke(cli, ["run", "--site", str(site)])
    write_entry(site, "b.md", markdown_entry(title="Second", date="2026-03-15"))
    out = runner.invoke(cli, ["status", "--site", str(site)]).stdout
    assert "Last run:" in out and ": ok (digest 1: 2 messages written)" in out
    assert "Last digest: #1" in out and "1 entry, 2 messages written, 0 sent" in out
    assert "Entries waiting for the next digest: 1" in out
    assert "Messages waiting in the outbox: 2" in out


def test_a_killed_run_shows_as_interrupted(site: Path) -> None:
    db_dir = site / ".newsletter"
    db_dir.mkdir()
    (db_dir / LEDGER_NAME).touch()  # an empty file is an empty SQLite database
    write_entry(site, "a.md", markdown_entry())
    run(site)
    with open_ledger(db_dir) as ledger:  # a run that started and was killed: never finished
        ledger.start_run(datetime.now(UTC))
    out = CliRunner().invoke(cli, ["status", "--site", str(site)]).stdout
    assert "interrupted" in out


def test_daylight_saving_and_midnight_neither_skip_nor_repeat_entries(site: Path) -> None:
    entries = {
        "ambiguous.md": "2026-10-25 01:30:00",  # happens twice in London as clocks go back
        "missing.md": "2026-03-29 01:30:00",  # never happens in London as clocks go forward
        "midnight.md": "2026-10-26",  # midnight on the site's clock
        "offset.md": "2026-10-25T01:30:00+00:00",
    }
    for name, when in entries.items():
        write_entry(site, name, markdown_entry(title=name, date=when))
    digests: dict[str, list[int]] = {}
    now = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)
    while now < datetime(2026, 10, 26, 2, 0, tzinfo=UTC):  # every 10 minutes across both
        report = run(site, now)
        if report.digest_id is not None:
            with open_ledger(site / ".newsletter", read_only=True) as ledger:
                for slug in ledger.claimed_slugs(report.digest_id):
                    digests.setdefault(slug, []).append(report.digest_id)
        if now == datetime(2026, 10, 25, 23, 50, tzinfo=UTC):  # 23:50 GMT: not yet midnight
            assert "midnight" not in digests
        now += timedelta(minutes=10)
    assert sorted(digests) == ["ambiguous", "midnight", "missing", "offset"]
    assert all(len(ids) == 1 for ids in digests.values()), digests


def test_daily_cadence_holds_new_entries_until_the_next_day(site: Path) -> None:
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text().replace("max_articles = 10",
                                             'max_articles = 10\ncadence = "daily"'))
    write_entry(site, "a.md", markdown_entry(title="Monday"))
    monday = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert run(site, monday).digest_id == 1
    write_entry(site, "b.md", markdown_entry(title="Later on Monday", date="2026-11-23"))
    later = run(site, monday + timedelta(hours=8))
    assert later.digest_id is None and later.held_back == 1
    assert "Later on Monday" in (site / "public" / "feed.xml").read_text()  # feeds refreshed
    assert run(site, monday + timedelta(days=1)).digest_id == 2
