"""Every exit code the README's table promises, each brought about for real: a real SMTP
server on loopback (or none listening), a real lock held, a real broken config."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import (
    REPO,
    Inbox,
    add_subscribers,
    invoke,
    markdown_entry,
    outbox_folder,
    smtp_server,
    use_relay,
    write_entry,
)
from pipeline.run import run
from pipeline.state.lock import SEND_LOCK_NAME, site_lock


def newsletter(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed entry point in a process of its own (main()'s last-resort handler)."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120,
                          env={**os.environ,
                               "NEWSLETTER_SECRET": "test-secret-for-this-site-0123456789"})


def refuse(names: set[str]) -> Callable[[str], str | None]:
    """An Inbox.rcpt_reply that refuses these local parts as unknown users."""
    return lambda address: (f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
                            if address.split("@")[0] in names else None)


def test_0_a_run_with_nothing_wrong(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry())
    assert invoke("run", "--site", str(site))[0] == 0
    assert invoke("run", "--site", str(site))[0] == 0  # nothing new is success too


def test_1_a_run_that_left_an_entry_out(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry())
    write_entry(site, "broken.md", "---\ntitle: [unclosed\n---\nbody\n")
    code, _, err = invoke("run", "--site", str(site))
    assert code == 1 and "broken.md" in err


def test_2_wrong_usage(site: Path) -> None:
    assert invoke("run", "--site", str(site), "--no-such-option")[0] == 2


def test_69_the_relay_cannot_be_reached_and_75_is_only_the_lock(written: Path) -> None:
    code, _, err = invoke("send", "--site", str(written))  # nothing listens on its port
    assert code == 69 and "queued for the next send" in err
    assert len(outbox_folder(written, "new")) == 2
    code, _, err = invoke("send", "--site", str(written), "--test", "you@example.org")
    assert code == 69 and "try again later" in err


def test_69_from_run_send_too(site: Path, port: int) -> None:
    use_relay(site, port)
    write_entry(site, "a.md", markdown_entry())
    code, out, _ = invoke("run", "--site", str(site), "--send")
    assert code == 69 and "2 messages written" in out


def test_70_an_unexpected_failure_is_one_line(site: Path) -> None:
    (site / ".newsletter").write_text("a file where the state folder belongs")
    result = newsletter("run", "--site", str(site))
    assert result.returncode == 70
    assert result.stderr.startswith("unexpected failure:") and "Traceback" not in result.stderr


def test_75_another_run_or_send_holds_the_lock(written: Path) -> None:
    with site_lock(written / ".newsletter"):
        code, _, err = invoke("run", "--site", str(written))
        assert code == 75 and "another run" in err
    with site_lock(written / ".newsletter", name=SEND_LOCK_NAME):
        code, _, err = invoke("send", "--site", str(written))
        assert code == 75 and "another send" in err


def test_78_configuration(site: Path) -> None:
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text().replace('title = "Test Clinic Journal"', "title = 3"))
    code, _, err = invoke("run", "--site", str(site))
    assert code == 78 and "site.title" in err
    code, _, err = invoke("send", "--site", str(site))
    assert code == 78


def test_one_hard_bounce_in_a_list_is_reported_and_counted_but_exits_0(
        site: Path, port: int) -> None:
    use_relay(site, port)
    [first, *_] = add_subscribers(site, 40)
    write_entry(site, "a.md", markdown_entry())
    run(site)
    inbox = Inbox()
    inbox.rcpt_reply = refuse({first.split("@")[0]})
    with smtp_server(inbox, port):
        code, out, err = invoke("send", "--site", str(site))
    assert code == 0, err
    assert "Sent 39, deferred 0, failed 1" in out
    assert "failed: " in err and "550 5.1.1" in err  # still listed, with the relay's reply
    assert "1 message failed for good (2.5% of those tried; delivery.fail_threshold is 5%)" in err
    assert len(inbox.received) == 39


def test_failures_past_the_threshold_exit_1(site: Path, port: int) -> None:
    use_relay(site, port)
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text() + "\n[delivery]\nfail_threshold = 0\n")
    write_entry(site, "a.md", markdown_entry())
    run(site)
    inbox = Inbox()
    inbox.rcpt_reply = refuse({"ada"})
    with smtp_server(inbox, port):
        code, out, err = invoke("send", "--site", str(site))
    assert code == 1  # 0: any permanent failure fails the job, as before
    assert "failed 1" in out and "failed: ada@example.org" in err


def test_a_threshold_that_is_not_a_percentage_is_a_config_error(site: Path) -> None:
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text() + "\n[delivery]\nfail_threshold = 150\n")
    code, _, err = invoke("check", "--site", str(site))
    assert code == 78 and "delivery.fail_threshold: must be a percentage from 0 to 100" in err
