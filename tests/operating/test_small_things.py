"""The small things of issue 18: plurals, List-Id, the missing-config error, init's timezone,
the lock holder's pid, the failed message's reason wording."""

from __future__ import annotations

import email
import fcntl
import os
import re
import threading
import time
from email import policy
from pathlib import Path

import pytest

from conftest import (
    REPO,
    Inbox,
    invoke,
    markdown_entry,
    outbox_folder,
    smtp_server,
    write_entry,
)
from pipeline.core.config import SCHEMA, load_config
from pipeline.run import run
from pipeline.state.lock import LOCK_NAME, Locked, site_lock


def one_subscriber(site: Path) -> None:
    (site / "subscribers.csv").write_text("email,name\nada@example.org,Ada\n")


def test_one_is_singular_everywhere(site: Path) -> None:
    one_subscriber(site)
    write_entry(site, "a.md", markdown_entry())
    code, out, _ = invoke("run", "--site", str(site))
    assert code == 0
    assert out.splitlines()[0].startswith("1 published entry; feeds ")
    assert "Digest 1: 1 entry, 1 message written to outbox/new." in out
    assert "1 entry ready, 0 problems." in invoke("check", "--site", str(site))[1]
    status = invoke("status", "--site", str(site))[1]
    assert "1 entry, 1 message written, 0 sent" in status
    assert "(digest 1: 1 message written)" in status
    assert "1 message is due; 0 wait for their retry time" in invoke(
        "send", "--site", str(site), "--dry-run")[1]
    for text in (out, status):
        assert not re.search(r"\b1 (entries|messages|problems|subscribers)\b", text)


def list_id(site: Path) -> tuple[bytes, str]:
    """The raw List-Id header line(s) of the first message, and the value as parsed."""
    [name, *_] = outbox_folder(site, "new")
    data = (site / "outbox" / "new" / name).read_bytes()
    raw = re.search(rb"^List-Id:.*?\r\n(?! )", data, re.S | re.M)
    assert raw is not None
    parsed = email.message_from_bytes(data, policy=policy.default)["List-Id"]
    return raw.group(0), str(parsed)


@pytest.mark.parametrize("title", [
    "Test Clinic Journal",
    "Example Clinic Health Journal, the long-form companion to the Northfield newsletter",
    "Clinique Santé — journal",
])
def test_list_id_has_no_double_space(site: Path, title: str) -> None:
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text().replace('title = "Test Clinic Journal"',
                                             f'title = "{title}"'))
    write_entry(site, "a.md", markdown_entry())
    run(site)
    raw, parsed = list_id(site)
    assert parsed == f"{title} <test-clinic-journal.example.org>"
    assert raw.startswith(b"List-Id: ") and not raw.startswith(b"List-Id:  ")
    assert not raw.startswith(b"List-Id:\r\n")  # folded after the name: read back as "  "
    assert b"  " not in raw.replace(b"\r\n ", b" ")  # unfolded, single spaces only
    assert all(len(line) <= 78 for line in raw.split(b"\r\n"))


def test_a_folder_without_a_config_says_so_plainly(tmp_path: Path) -> None:
    code, _, err = invoke("status", "--site", str(tmp_path))
    assert code == 78
    assert err == (f"error: {tmp_path / 'newsletter.toml'}: not found, so this folder is not a "
                   "site — pass --site with the site's folder, or create a site with "
                   "`newsletter init DIR`\n")


def test_init_uses_the_documented_default_timezone(tmp_path: Path) -> None:
    assert invoke("init", str(tmp_path / "new"))[0] == 0
    config = load_config(tmp_path / "new")
    assert config.timezone.key == SCHEMA["site"]["timezone"] == "UTC"
    readme = (REPO / "README.md").read_text()
    assert "| `site.timezone` | `UTC` |" in readme


def test_a_run_that_finds_the_lock_waits_for_the_holders_pid(site: Path) -> None:
    state = site / ".newsletter"
    state.mkdir()
    fd = os.open(state / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # taken, the pid not written yet

        def write_pid_soon() -> None:
            time.sleep(0.15)
            os.pwrite(fd, b"4242\n", 0)

        writer = threading.Thread(target=write_pid_soon)
        writer.start()
        with pytest.raises(Locked) as caught, site_lock(state):
            pass
        writer.join()
        assert "another run (pid 4242) is working on this site" in str(caught.value)
        os.ftruncate(fd, 0)  # a holder that never writes its pid (not ours)
        with pytest.raises(Locked) as caught, site_lock(state):
            pass
        assert "pid ?" not in str(caught.value) and "(just starting)" in str(caught.value)
    finally:
        os.close(fd)


def test_the_lock_file_holds_only_the_current_holders_pid(site: Path) -> None:
    state = site / ".newsletter"
    state.mkdir()
    (state / LOCK_NAME).write_text("123456789\n")  # a longer pid from an earlier holder
    with site_lock(state):
        assert (state / LOCK_NAME).read_text() == f"{os.getpid()}\n"


def test_the_reason_file_says_bounced_as_the_list_does(written: Path, port: int) -> None:
    inbox = Inbox()
    inbox.rcpt_reply = lambda a: "550 5.1.1 User unknown" if a.startswith("ada") else None
    with smtp_server(inbox, port):
        invoke("send", "--site", str(written))
    [failed] = outbox_folder(written, "failed")
    reason = (written / "outbox" / "failed" / f"{failed}.reason").read_text()
    assert "subscriber marked bounced" in reason and "bouncing" not in reason
    export = invoke("subscribers", "export", "--site", str(written))[1]
    assert "ada@example.org,Ada Lovelace,,bounced" in export
