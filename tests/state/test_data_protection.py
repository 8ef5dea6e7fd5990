"""Data protection on disk: private modes whatever the umask, a secret that cannot be weak,
a ledger that cannot silently go missing (backup and restore), retention, a clock far ahead."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import (
    Inbox,
    invoke,
    markdown_entry,
    outbox_folder,
    smtp_server,
    use_relay,
    write_entry,
)
from pipeline.delivery.send import send
from pipeline.run import run
from pipeline.state.ledger import open_ledger
from pipeline.state.secret import SECRET_ENV


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- permissions ------------------------------------------------------------------------------

def test_state_outbox_and_messages_are_private_whatever_the_umask(
        site: Path, port: int, umask_022: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV)  # the generated secret file too
    use_relay(site, port)
    write_entry(site, "a.md", markdown_entry())
    inbox = Inbox()
    inbox.data_reply = lambda address: "554 5.7.1 refused" if address.startswith("ada") else None
    with open_ledger(site / ".newsletter") as ledger:  # held open: the -wal and -shm exist
        ledger.digest_count()
        assert run(site).written == 2
        with smtp_server(inbox, port):
            send(site)
        state = site / ".newsletter"
        assert mode(state) == 0o700
        for name in ("state.sqlite3", "state.sqlite3-wal", "state.sqlite3-shm", "secret",
                     "run.lock", "send.lock"):
            assert mode(state / name) == 0o600, name
    outbox = site / "outbox"
    assert mode(outbox) == 0o700
    files = [p for p in outbox.rglob("*") if p.is_file()]
    assert {p.parent.name for p in files} == {"sent", "failed"}
    assert any(p.name.endswith(".reason") for p in files)
    assert all(mode(p) == 0o600 for p in files), [(p, oct(mode(p))) for p in files]
    assert all(mode(p) == 0o700 for p in outbox.iterdir())
    assert mode(site / "public" / "feed.xml") == 0o644  # the public site stays readable


def test_an_existing_sites_open_folders_are_tightened(site: Path, umask_022: None) -> None:
    write_entry(site, "a.md", markdown_entry())
    run(site)
    os.chmod(site / ".newsletter", 0o755)
    os.chmod(site / ".newsletter" / "state.sqlite3", 0o644)
    os.chmod(site / "outbox", 0o755)
    os.chmod(site / "outbox" / "new", 0o755)
    write_entry(site, "b.md", markdown_entry(title="Second", date="2026-03-15"))
    run(site)
    assert mode(site / ".newsletter") == 0o700
    assert mode(site / ".newsletter" / "state.sqlite3") == 0o600
    assert mode(site / "outbox") == 0o700 and mode(site / "outbox" / "new") == 0o700


# --- the secret ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["change-me", "s", "x" * 31,
                                   "change-me-change-me-change-me-change-me"])
def test_a_placeholder_or_short_secret_is_refused(site: Path, value: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, value)
    write_entry(site, "a.md", markdown_entry())
    code, _, err = invoke("run", "--site", str(site))
    assert code == 78
    assert f"{SECRET_ENV}:" in err and ("placeholder" in err or "at least 32" in err)
    assert "0600" in err and (len(value) < 8 or value not in err)  # never echoed
    assert outbox_folder(site, "new") == []


@pytest.mark.parametrize("content", [b"", b"\n", b"cut-short"])
def test_an_empty_or_short_secret_file_stops_every_command_that_needs_it(
        site: Path, content: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV)
    state = site / ".newsletter"
    state.mkdir()
    (state / "secret").write_bytes(content)
    write_entry(site, "a.md", markdown_entry())
    for command in (["run"], ["subscribers", "add", "new@example.org"]):
        toml = site / "newsletter.toml"
        if command[0] == "subscribers":  # a confirmation needs a token
            toml.write_text(toml.read_text() + "\n[subscribers]\ndouble_opt_in = true\n")
        code, _, err = invoke(*command, "--site", str(site))
        assert code == 78, (command, err)
        assert ".newsletter/secret" in err and "restore it" in err and "delete it" in err
    assert outbox_folder(site, "new") == []
    assert (state / "secret").read_bytes() == content  # never replaced behind one's back


def secret_lines(site: Path) -> tuple[int, list[str]]:
    """`check`'s exit code and its problem lines about the secret."""
    code, out, err = invoke("check", "--site", str(site))
    return code, [line for line in (out + err).splitlines()
                  if SECRET_ENV in line.split(" — ")[0] or "secret:" in line]


@pytest.mark.parametrize("value", ["change-me", "x" * 31])
def test_check_warns_of_a_weak_environment_secret(site: Path, value: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, value)
    write_entry(site, "a.md", markdown_entry())
    code, lines = secret_lines(site)
    assert code == 0  # a warning: check itself does not need the secret
    assert len(lines) == 1 and lines[0].startswith(f"environment: warning: {SECRET_ENV}: ")
    assert "exit 78" in lines[0] and "0600 environment file" in lines[0]
    assert value not in lines[0]  # never echoed
    monkeypatch.setenv(SECRET_ENV, "a-long-random-value-0123456789abcdefghij")
    assert secret_lines(site) == (0, [])


@pytest.mark.parametrize("content", [b"", b"cut-short"])
def test_check_warns_of_a_weak_secret_file(site: Path, content: bytes,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV)
    (site / ".newsletter").mkdir()
    (site / ".newsletter" / "secret").write_bytes(content)
    code, lines = secret_lines(site)
    assert code == 0 and len(lines) == 1
    assert lines[0].startswith(".newsletter/secret: warning: ")
    assert "restore it from your backup" in lines[0] and "exit 78" in lines[0]
    assert (site / ".newsletter" / "secret").read_bytes() == content  # check writes nothing


def test_check_warns_of_a_missing_secret_only_once_links_were_mailed(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV)
    write_entry(site, "a.md", markdown_entry())
    assert secret_lines(site) == (0, [])  # a new site: the first run makes one
    assert not (site / ".newsletter" / "secret").exists()  # ... not check
    assert run(site).written == 2
    assert secret_lines(site) == (0, [])
    (site / ".newsletter" / "secret").unlink()
    code, lines = secret_lines(site)
    assert code == 0 and len(lines) == 1
    assert lines[0].startswith(".newsletter/secret: warning: is missing and NEWSLETTER_SECRET "
                               "is not set")
    assert "restore .newsletter/secret from your backup" in lines[0]
    assert "link already sent would stop working" in lines[0]


def test_the_generated_secret_is_whole_and_kept(site: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV)
    write_entry(site, "a.md", markdown_entry())
    assert run(site).written == 2
    secret = (site / ".newsletter" / "secret").read_bytes()
    assert len(secret) >= 32
    assert [p.name for p in (site / ".newsletter").iterdir() if p.name.startswith(".")] == []
    write_entry(site, "b.md", markdown_entry(title="Second", date="2026-03-15"))
    run(site)
    assert (site / ".newsletter" / "secret").read_bytes() == secret


# --- a missing ledger, backup and restore -------------------------------------------------------

def test_a_run_without_its_ledger_stops_instead_of_sending_again(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry())
    assert run(site).written == 2
    shutil.rmtree(site / ".newsletter")  # "generated", the operator thought
    code, _, err = invoke("run", "--site", str(site))
    assert code == 78
    assert "ledger: is missing or empty" in err and "public/digests/" in err
    assert "newsletter restore" in err
    assert len(outbox_folder(site, "new")) == 2  # nothing written again


def test_the_outbox_history_alone_also_stops_the_run(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry())
    run(site)
    shutil.rmtree(site / ".newsletter")
    shutil.rmtree(site / "public")
    code, _, err = invoke("run", "--site", str(site))
    assert code == 78 and "(outbox/)" in err


def test_backup_and_restore_bring_back_what_was_sent(site: Path, tmp_path: Path,
                                                     port: int) -> None:
    use_relay(site, port)
    write_entry(site, "a.md", markdown_entry())
    assert run(site).written == 2
    assert invoke("unsubscribe", "grace@example.org", "--site", str(site))[0] == 0
    backup = tmp_path / "backups" / "ledger.sqlite3"
    backup.parent.mkdir()
    code, _, err = invoke("backup", str(backup), "--site", str(site))
    assert code == 0, err
    assert mode(backup) == 0o600 and not list(backup.parent.glob(".*"))
    shutil.rmtree(site / ".newsletter")
    assert invoke("run", "--site", str(site))[0] == 78
    code, out, err = invoke("restore", str(backup), "--site", str(site))
    assert "restored the ledger" in out
    assert code == 0, err
    write_entry(site, "b.md", markdown_entry(title="Second", date="2026-03-15"))
    report = run(site)
    assert report.digest_id == 2 and report.written == 1  # ada only: grace stays unsubscribed
    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        assert ledger.integrity_problems() == [] and ledger.journal_mode() == "wal"
        assert ledger.message_count(1) == 2


def test_restore_refuses_a_file_that_is_not_a_ledger(site: Path, tmp_path: Path) -> None:
    write_entry(site, "a.md", markdown_entry())
    run(site)
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a database at all, just some text " * 100)
    code, _, err = invoke("restore", str(bogus), "--site", str(site))
    assert code == 1 and "not an SQLite database" in err
    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        assert ledger.digest_count() == 1  # untouched


# --- retention ----------------------------------------------------------------------------------

def test_run_prunes_what_is_older_than_the_retention_period(site: Path, port: int) -> None:
    use_relay(site, port)
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text() + "\n[retention]\ndays = 30\n")
    write_entry(site, "a.md", markdown_entry())
    now = datetime.now(UTC)
    run(site, now)
    inbox = Inbox()
    with smtp_server(inbox, port):
        assert send(site).sent == 2
    out = invoke("status", "--site", str(site))[1]
    assert "Outbox keeps: new/ 0 messages (0 B), sent/ 2 messages (" in out and "for 30 days" in out
    assert "Ledger keeps: 3 subscribers, 2 messages, 2 delivery details" in out
    write_entry(site, "b.md", markdown_entry(title="Second", date="2026-03-15"))
    run(site, now + timedelta(days=29))  # not yet
    assert len(outbox_folder(site, "sent")) == 2
    write_entry(site, "c.md", markdown_entry(title="Third", date="2026-03-16"))
    run(site, now + timedelta(days=31))
    assert outbox_folder(site, "sent") == []  # the first digest's messages went
    assert len(outbox_folder(site, "new")) == 4  # the later digests' are waiting
    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        assert ledger.deliveries() == [] and ledger.message_count(1) == 0
        assert ledger.message_count(2) == 2 and ledger.message_count(3) == 2
    out = invoke("status", "--site", str(site))[1]
    assert "Ledger keeps: 3 subscribers, 4 messages, 0 delivery details" in out


def test_retention_days_must_be_a_whole_number(site: Path) -> None:
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text() + '\n[retention]\ndays = "forever"\n')
    code, _, err = invoke("check", "--site", str(site))
    assert code == 78 and "retention.days: must be a whole number" in err


# --- a clock that was far ahead -----------------------------------------------------------------

def test_a_digest_dated_a_year_ahead_is_reported_and_holds_nothing_back(site: Path) -> None:
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text().replace("max_articles = 10",
                                             'max_articles = 10\ncadence = "daily"'))
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    write_entry(site, "a.md", markdown_entry(title="First"))
    assert run(site, now + timedelta(days=365)).digest_id == 1  # the clock a year ahead
    write_entry(site, "b.md", markdown_entry(title="Second", date="2026-11-22"))
    report = run(site, now)  # the clock put right
    assert report.digest_id == 2 and report.held_back == 0
    warnings = [str(p) for p in report.problems if p.field == "clock"]
    assert len(warnings) == 1 and report.rejected == 0
    assert "the last digest (#1) is dated 2027-11-23 09:00 UTC, 365 days ahead" in warnings[0]
    out = invoke("status", "--site", str(site))[1]
    assert "Warning: a digest is dated 2027-11-23 09:00 UTC" in out
    assert "Warning: a run is dated 2027-11-23 09:00 UTC" in out
    write_entry(site, "c.md", markdown_entry(title="Third", date="2026-11-22"))
    report = run(site, now + timedelta(days=1))  # daily cadence: the next day, no warning
    assert report.digest_id == 3 and report.problems == []


@pytest.mark.parametrize("command", [["serve", "--port", "0"],
                                     ["send", "--test", "me@example.org"]])
def test_serve_and_a_test_send_refuse_a_short_secret(site: Path, port: int, command: list[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    use_relay(site, port)
    write_entry(site, "a.md", markdown_entry())
    run(site)
    monkeypatch.setenv(SECRET_ENV, "too-short")
    code, _, err = invoke(*command, "--site", str(site))
    assert code == 78 and "at least 32" in err


def test_processes_generating_the_secret_at_once_all_use_the_same_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.state.secret import load_secret

    monkeypatch.delenv(SECRET_ENV, raising=False)
    state = tmp_path / ".newsletter"
    for _ in range(20):
        shutil.rmtree(state, ignore_errors=True)
        with ThreadPoolExecutor(8) as pool:
            made = set(pool.map(lambda _: load_secret(state), range(8)))
        assert len(made) == 1 and (state / "secret").read_bytes() in made
        assert sorted(p.name for p in state.iterdir()) == ["secret"]  # no temporary left
