"""subscribers.csv as people really keep it and as other tools export it: messy rows, bad rows
reported with their line and skipped, a list that cannot be read at all stops the run before
the digest is built (so its entries still go out once the list is fixed), and every address
that goes out is one we can put in a header."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import SUBSCRIBERS, markdown_entry, messages, write_entry
from pipeline.cli.main import cli
from pipeline.core.errors import ConfigError
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


HEADER = "email,name,categories,status\n"


def run(site: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["run", "--site", str(site)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stderr


def test_bad_rows_are_reported_with_their_line_and_the_rest_get_the_digest(site: Path) -> None:
    (site / "subscribers.csv").write_text(
        HEADER + "ada@example.org,Ada,,active\n"
        "not-an-address,Nobody,,active\n"
        "josé@example.org,José,,active\n"  # needs SMTPUTF8, which the outbox does not send
        "grace@example.org,Grace,,active\n"
        "ADA@example.org,Ada again,,active\n", encoding="utf-8")  # a duplicate, silently once
    write_entry(site, "entry.md", markdown_entry())
    code, err = run(site)
    assert code == 1
    assert re.search(r"^subscribers\.csv:3: email: 'not-an-address': .+ — correct the address "
                     r"or remove the row$", err, re.M)
    assert re.search(r"^subscribers\.csv:4: email: 'josé@example.org': .*before the @-sign",
                     err, re.M)
    assert sorted(m["To"].addresses[0].addr_spec for m in messages(site)) == [
        "ada@example.org", "grace@example.org"]


def test_an_international_domain_is_written_as_punycode(site: Path) -> None:
    (site / "subscribers.csv").write_text(HEADER + "kim@bücher.example,Kim,,active\n",
                                          encoding="utf-8")
    write_entry(site, "entry.md", markdown_entry())
    assert run(site)[0] == 0
    (message,) = messages(site)
    assert message["To"].addresses[0].addr_spec == "kim@xn--bcher-kva.example"


UNREADABLE = {
    "windows-1252": ((HEADER + "zoe@example.org,Zoë,,active\n").encode("cp1252"),
                     'subscribers.csv:2: file: is not UTF-8 (byte 47) — export it as "CSV UTF-8"'),
    "utf-16": ((HEADER + "ada@example.org,Ada,,active\n").encode("utf-16"),
               'subscribers.csv:1: file: is UTF-16, not UTF-8 — export it as "CSV UTF-8"'),
    "binary": (bytes(range(256)), "subscribers.csv:2: file: is not UTF-8"),
    "no email column": (b"address,name\nada@example.org,Ada\n",
                        "subscribers.csv:1: email: no `email` column — start the file with"),
    "empty": (b"", "subscribers.csv:1: email: no `email` column"),
    "a huge field": (HEADER.encode() + b"ada@example.org," + b"x" * 200_000 + b",,active\n",
                     "file: is not valid CSV (field larger than field limit"),
}


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
def test_an_unreadable_list_stops_the_run_before_the_digest_and_loses_nothing(
        site: Path, kind: str) -> None:
    data, message = UNREADABLE[kind]
    (site / "subscribers.csv").write_bytes(data)
    write_entry(site, "entry.md", markdown_entry(title="Waiting for readers"))
    code, err = run(site)
    assert code == 78
    assert message in err
    assert not (site / "outbox").exists()
    assert not (site / "public").exists()
    (site / "subscribers.csv").write_text(SUBSCRIBERS, encoding="utf-8")  # fixed
    assert run(site) == (0, "")
    assert [str(m["Subject"]) for m in messages(site)] == [
        "Test Clinic Journal: Waiting for readers"] * 2


def test_check_lists_an_unreadable_list_as_a_problem(site: Path) -> None:
    (site / "subscribers.csv").write_bytes(UNREADABLE["windows-1252"][0])
    result = CliRunner().invoke(cli, ["check", "--site", str(site)])
    assert result.exit_code == 1
    assert "subscribers.csv:2: file: is not UTF-8" in result.stderr


def test_names_and_categories_keep_their_text(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.csv"
    path.write_text(HEADER + 'ada@example.org,"  Ada\tLovelace ",Heart Health; Sleep ;,\n',
                    encoding="utf-8-sig")
    (subscriber,), problems = load_subscribers(path)
    assert problems == []
    assert subscriber.name == "Ada Lovelace"
    assert subscriber.categories == ("Heart Health", "Sleep")


def test_a_column_named_twice_is_read_from_its_last_and_a_short_row_counts_as_blank(
        tmp_path: Path) -> None:
    """As spreadsheets' CSV readers (and csv.DictReader, which this reading replaced) have it:
    a row too short to reach the last `email` column has no address, and is skipped as blank
    rather than reported."""
    path = tmp_path / "subscribers.csv"
    path.write_text("email,status,email\nAnn\nold@example.org,active,ada@example.org\n",
                    encoding="utf-8")
    found, problems = load_subscribers(path)
    assert [s.email for s in found] == ["ada@example.org"]
    assert problems == []


def test_a_large_list_is_read_in_order_with_its_opt_outs_winning(tmp_path: Path) -> None:
    """Read as a stream, 20,000 rows keep their order, and an opt-out at the end still wins
    over the same address's earlier active row."""
    path = tmp_path / "subscribers.csv"
    rows = [f"r{n:05d}@example.org,,,active\n" for n in range(20_000)]
    path.write_text(HEADER + "".join(rows) + "R00007@Example.org,,,unsubscribed\n",
                    encoding="utf-8")
    found, problems = load_subscribers(path)
    assert len(found) == 19_999 and found[0].email == "r00000@example.org"
    assert "r00007@example.org" not in {s.email for s in found}
    assert [p.line for p in problems] == [9]
