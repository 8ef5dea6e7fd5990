"""The list in the ledger through `newsletter subscribers …` and `newsletter unsubscribe`:
messy imports, statuses that stick, export, and runs that pick up subscribers.csv."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from conftest import NOW, markdown_entry, write_entry
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
        "email,name,categories,status\n"
        'ada@example.org,"Ada, Countess",heart health;Sleep,active\n'
        "grace@example.org,,,unsubscribed\n")
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
