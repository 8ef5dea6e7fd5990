"""The subscriber list as people really keep it, and unsubscribe tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.errors import ConfigError
from pipeline.mail.tokens import token_matches, unsubscribe_token
from pipeline.subscribers.csv_file import load_subscribers

MESSY = (
    "\ufeffEmail , Name,Categories,Status\r\n"      # 1: BOM, odd spacing and case in the header
    "ada@example.org,Ada Lovelace,heart;sleep,active\r\n"  # 2
    "\r\n"                                           # 3: blank
    "not-an-address,Nobody,,active\r\n"             # 4: invalid
    "ADA@Example.org,Ada Again,,active\r\n"          # 5: duplicate in another case
    "grace@example.org,  Grace   Hopper ,,\r\n"      # 6: no status means active
    ",,,\r\n"                                        # 7: an empty row
    "left@example.org,Left Already,,unsubscribed\r\n"  # 8
    "bounced@example.org,Bounced,,Bounced\r\n"       # 9
    "alan@example.org,Alan Turing,,ACTIVE\r\n"       # 10
    "bad@@example.org,Two Ats,,active\r\n"           # 11: invalid
)


def test_a_messy_list_loads_the_active_unique_valid_addresses(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.csv"
    path.write_bytes(MESSY.encode("utf-8"))
    subscribers, problems = load_subscribers(path, "subscribers.csv")
    assert [s.email for s in subscribers] == [
        "ada@example.org", "grace@example.org", "alan@example.org"]
    ada = subscribers[0]
    assert ada.name == "Ada Lovelace"  # the first row wins over the duplicate
    assert ada.categories == ("heart", "sleep")
    assert subscribers[1].name == "Grace Hopper"
    assert [(p.line, p.field) for p in problems] == [(4, "email"), (11, "email")]
    assert all(not p.warning for p in problems)
    assert str(problems[0]).startswith("subscribers.csv:4:")
    assert "not-an-address" in str(problems[0])
    assert "bad@@example.org" in str(problems[1])


def test_an_invalid_first_row_is_reported_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.csv"
    path.write_text("email,name\nnobody@,Nobody\nada@example.org,Ada\n", encoding="utf-8")
    subscribers, problems = load_subscribers(path)
    assert [s.email for s in subscribers] == ["ada@example.org"]
    assert [p.line for p in problems] == [2]


def test_the_bom_does_not_hide_the_email_column(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.csv"
    path.write_bytes("\ufeffemail\nada@example.org\n".encode())
    subscribers, problems = load_subscribers(path)
    assert problems == []
    assert [s.email for s in subscribers] == ["ada@example.org"]


def test_unsubscribed_rows_are_skipped(config) -> None:
    subscribers, problems = load_subscribers(config.subscribers_file)
    assert problems == []
    assert [s.email for s in subscribers] == ["ada@example.org", "grace@example.org"]


def test_a_file_without_an_email_column_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.csv"
    path.write_text("address,name\nada@example.org,Ada\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:  # a list that reaches no one stops the run
        load_subscribers(path)
    (problem,) = caught.value.problems
    assert not problem.warning and problem.field == "email"


def test_a_missing_file_is_a_warning(tmp_path: Path) -> None:
    subscribers, problems = load_subscribers(tmp_path / "nope.csv")
    assert subscribers == [] and len(problems) == 1 and problems[0].warning


def test_token_matches_only_its_own_address() -> None:
    secret = b"test-secret"
    token = unsubscribe_token(secret, "ada@example.org")
    assert token_matches(secret, "ada@example.org", token)
    assert token_matches(secret, "Ada@Example.ORG", token)  # addresses compare case-insensitively
    assert not token_matches(secret, "grace@example.org", token)
    assert not token_matches(b"another-secret", "ada@example.org", token)
    assert not token_matches(secret, "ada@example.org", token[:-1])
    assert not token_matches(secret, "ada@example.org", "")


def test_tokens_are_url_safe_stable_and_distinct() -> None:
    secret = b"test-secret"
    tokens = {unsubscribe_token(secret, f"p{n}@example.org") for n in range(200)}
    assert len(tokens) == 200
    assert all(t.isascii() and set(t) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for t in tokens)


def test_tokens_already_sent_keep_working() -> None:
    # Links in delivered mail must stay valid: the token for an address never changes.
    assert unsubscribe_token(b"test-secret", "ada@example.org") == "8TkGBLkYJkjzfOS-wZ3lbcMr"
    assert token_matches(b"test-secret", "grace@example.org", "qbFIJj_rj9IQ5qglv9siHEra")
