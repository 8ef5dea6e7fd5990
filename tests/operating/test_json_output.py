"""`--json`: one JSON object on stdout per command, in the schema the README documents. Each
test parses the real output of a real site and checks every key and its type, so a renamed or
retyped key fails here. Plus shell completion, as the README tells operators to set it up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from conftest import REPO, Inbox, invoke, markdown_entry, smtp_server, use_relay, write_entry

INT, STR, BOOL, LIST, DICT, NONE, FLOAT = int, str, bool, list, dict, type(None), float
PROBLEM = {"path": STR, "line": INT, "field": STR, "problem": STR, "hint": STR, "warning": BOOL}
SEND = {"schema": STR, "dry_run": BOOL, "due": INT, "sent": INT, "deferred": INT, "failed": INT,
        "withdrawn": INT, "waiting": INT, "left": INT, "recovered": INT, "missing": LIST,
        "failures": LIST, "bounced": LIST, "stopped": (STR, NONE), "fail_threshold": FLOAT,
        "problems": LIST}


def parsed(*args: str) -> tuple[int, dict[str, object]]:
    code, out, _ = invoke(*args, "--json")
    return code, json.loads(out)  # the whole of stdout is one JSON document


def check_keys(data: dict[str, object], schema: dict[str, object]) -> None:
    assert set(data) == set(schema), set(data) ^ set(schema)
    for key, kind in schema.items():
        assert isinstance(data[key], kind), (key, data[key])  # type: ignore[arg-type]
        if kind is INT:
            assert not isinstance(data[key], bool), key


def check_problems(problems: object) -> None:
    assert isinstance(problems, list)
    for problem in problems:
        check_keys(problem, PROBLEM)


def instant(value: object) -> datetime:
    assert isinstance(value, str)
    moment = datetime.fromisoformat(value)
    assert moment.tzinfo is not None  # always with its offset
    return moment


def test_status_json(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry())
    write_entry(site, "later.md", markdown_entry(title="Later", date="2099-12-09"))
    write_entry(site, "broken.md", "---\ntitle: [unclosed\n---\n")
    invoke("run", "--site", str(site))
    code, data = parsed("status", "--site", str(site))
    assert code == 0
    check_keys(data, {"schema": STR, "last_run": DICT, "last_digest": DICT, "subscribers": DICT,
                      "entries_waiting": INT, "waiting_for_date": LIST, "cadence": STR,
                      "timezone": STR, "next_digest": (STR, NONE), "messages_queued": INT,
                      "problems": LIST, "kept": DICT, "clock_ahead": LIST})
    assert data["schema"] == "newsletter.status/1"
    kept = data["kept"]
    check_keys(kept, {"retention_days": INT, "outbox": DICT, "ledger": DICT})  # type: ignore[arg-type]
    assert kept["outbox"]["new"] == {"messages": 2, "bytes": kept["outbox"]["new"]["bytes"]}  # type: ignore[index]
    assert kept["ledger"]["subscribers"] == 3 and kept["ledger"]["bytes"] > 0  # type: ignore[index]
    check_keys(data["last_run"], {"started": STR, "finished": STR, "outcome": STR,  # type: ignore[arg-type]
                                  "detail": STR})
    check_keys(data["last_digest"], {"id": INT, "created": STR, "complete": BOOL,  # type: ignore[arg-type]
                                     "entries": INT, "messages_written": INT, "sent": INT,
                                     "deferred": INT, "failed": INT, "withdrawn": INT,
                                     "returning_mail": (DICT, NONE)})
    assert data["subscribers"] == {"active": 2, "pending": 0, "unsubscribed": 1, "bounced": 0,
                                  "complained": 0}
    assert [instant(d).date().isoformat() for d in data["waiting_for_date"]] == ["2099-12-09"]  # type: ignore[union-attr]
    assert data["messages_queued"] == 2 and data["cadence"] == "every run"
    check_problems(data["problems"])
    assert [p["path"] for p in data["problems"]] == ["articles/broken.md"]  # type: ignore[index,union-attr]


def test_status_json_of_a_new_site(site: Path) -> None:
    code, data = parsed("status", "--site", str(site))
    assert code == 0 and data["last_run"] is None and data["last_digest"] is None


def test_check_json(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry())
    write_entry(site, "later.md", markdown_entry(title="Later", date="2099-12-09"))
    write_entry(site, "broken.md", "---\ntitle: [unclosed\n---\n")
    code, data = parsed("check", "--site", str(site))
    assert code == 1  # the exit code is the same with --json
    check_keys(data, {"schema": STR, "entries_ready": INT, "waiting_for_date": LIST,
                      "errors": INT, "warnings": INT, "problems": LIST})
    assert data["schema"] == "newsletter.check/1"
    assert data["entries_ready"] == 1 and data["errors"] == 1 and data["warnings"] == 0
    assert len(data["waiting_for_date"]) == 1  # type: ignore[arg-type]
    check_problems(data["problems"])


def test_run_json_and_its_dry_run(site: Path, port: int) -> None:
    use_relay(site, port)
    write_entry(site, "a.md", markdown_entry(title="First"))
    schema = {"schema": STR, "dry_run": BOOL, "published": INT, "feeds_changed": LIST,
              "digest": (DICT, NONE), "would_digest": (DICT, NONE), "held_back": INT,
              "next_digest": (STR, NONE), "waiting_for_date": LIST, "problems": LIST,
              "send": (DICT, NONE)}
    code, dry = parsed("run", "--site", str(site), "--dry-run")
    assert code == 0
    check_keys(dry, schema)
    assert dry["schema"] == "newsletter.run/1" and dry["dry_run"] is True
    check_keys(dry["would_digest"], {"entries": INT, "subscribers": INT, "titles": LIST})  # type: ignore[arg-type]
    assert dry["would_digest"]["titles"] == ["First"]  # type: ignore[index]
    with smtp_server(Inbox(), port):
        code, done = parsed("run", "--site", str(site), "--send")
    assert code == 0
    check_keys(done, schema)
    check_keys(done["digest"], {"id": INT, "entries": INT, "messages_written": INT})  # type: ignore[arg-type]
    assert done["digest"] == {"id": 1, "entries": 1, "messages_written": 2}
    assert "feed.xml" in done["feeds_changed"]  # type: ignore[operator]
    nested = {k: v for k, v in SEND.items() if k != "schema"}  # run's schema covers it
    check_keys(done["send"], nested)  # type: ignore[arg-type]
    assert done["send"]["sent"] == 2  # type: ignore[index]
    code, again = parsed("run", "--site", str(site))
    assert code == 0 and again["digest"] is None and again["send"] is None


def test_send_json(written: Path, port: int) -> None:
    inbox = Inbox()
    inbox.rcpt_reply = lambda a: "550 5.1.1 User unknown" if a.startswith("ada") else None
    code, dry = parsed("send", "--site", str(written), "--dry-run")
    assert code == 0
    check_keys(dry, SEND)
    assert dry["schema"] == "newsletter.send/1" and dry["dry_run"] is True and dry["due"] == 2
    with smtp_server(inbox, port):
        code, data = parsed("send", "--site", str(written))
    assert code == 1  # 1 of 2 failed: past the 5 % threshold
    check_keys(data, SEND)
    assert (data["sent"], data["failed"], data["stopped"]) == (1, 1, None)
    assert data["failures"] == [{"address": "ada@example.org",
                                 "reply": "550 5.1.1 User unknown (at RCPT)"}]
    assert data["bounced"] == ["ada@example.org"]
    code, down = parsed("send", "--site", str(written))  # no server any more; nothing due
    assert code == 0 and down["due"] == 0


def test_send_json_when_the_relay_is_down(written: Path) -> None:
    code, data = parsed("send", "--site", str(written))
    assert code == 69
    check_keys(data, SEND)
    assert isinstance(data["stopped"], str) and "cannot reach" in data["stopped"]
    assert data["left"] + data["deferred"] == 2  # type: ignore[operator]


def test_subscribers_list_json(site: Path) -> None:
    invoke("run", "--site", str(site))  # imports subscribers.csv
    code, data = parsed("subscribers", "list", "--site", str(site))
    assert code == 0
    check_keys(data, {"schema": STR, "counts": DICT, "total": INT})
    assert data["schema"] == "newsletter.subscribers.list/1"
    assert data["counts"] == {"active": 2, "pending": 0, "unsubscribed": 1, "bounced": 0,
                                  "complained": 0}
    assert data["total"] == 3


def test_bash_completion_as_the_readme_sets_it_up() -> None:
    env = {**os.environ, "_NEWSLETTER_COMPLETE": "bash_source"}
    script = Path(sys.executable).parent / "newsletter"
    if not script.exists():
        pytest.skip(f"no installed `newsletter` script beside {sys.executable}")
    source = subprocess.run([str(script)], env=env, capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert source.returncode == 0 and "complete " in source.stdout
    assert "_newsletter_completion" in source.stdout
    env = {**os.environ, "_NEWSLETTER_COMPLETE": "bash_complete",
           "COMP_WORDS": "newsletter subscribers li", "COMP_CWORD": "2"}
    done = subprocess.run([str(script)], env=env, capture_output=True, text=True, cwd=REPO,
                          timeout=60)
    assert "plain,list" in done.stdout.split()
