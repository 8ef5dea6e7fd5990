"""`send --now` retries deferred messages at once; `send --dry-run` needs no [smtp]."""

from __future__ import annotations

from pathlib import Path

from conftest import Inbox, invoke, markdown_entry, outbox_folder, smtp_server, write_entry
from pipeline.run import run


def test_now_retries_deferred_messages_before_their_retry_time(written: Path,
                                                               port: int) -> None:
    inbox = Inbox()
    inbox.data_reply = lambda a: "451 4.3.0 Try again later" if a.startswith("ada") else None
    with smtp_server(inbox, port):
        code, out, _ = invoke("send", "--site", str(written))
        assert code == 0 and "Sent 1, deferred 1" in out
    inbox.data_reply = lambda a: None
    with smtp_server(inbox, port):
        code, out, _ = invoke("send", "--site", str(written))  # the backoff holds it back
        assert code == 0 and "Sent 0" in out and "1 waits for its retry time" in out
        code, out, _ = invoke("send", "--site", str(written), "--dry-run", "--now")
        assert "1 message is due" in out
        code, out, _ = invoke("send", "--site", str(written), "--now")
        assert code == 0 and "Sent 1, deferred 0, failed 0 (of 1 due)" in out
    assert inbox.recipients() == ["ada@example.org", "grace@example.org"]
    assert not outbox_folder(written, "new")


def test_dry_run_without_smtp_says_what_is_due_and_what_is_missing(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry())
    run(site)
    code, out, err = invoke("send", "--site", str(site), "--dry-run")
    assert code == 0
    assert "2 messages are due" in out
    assert "warning: smtp.host: is not set" in err and "[smtp]" in err
    assert invoke("send", "--site", str(site))[0] == 78  # a real send still needs it
