"""The whole job through its command line, on real temporary sites."""

from __future__ import annotations

import email
import re
import shutil
import subprocess
import sys
from email import policy
from pathlib import Path

import feedparser
import pytest

from conftest import REPO, SEED, invoke, markdown_entry, write_entry
from pipeline.cli.main import cli

ACTIVE_SUBSCRIBERS = 2  # in conftest.SUBSCRIBERS


def messages(site: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default)
            for p in sorted((site / "outbox" / "new").glob("*.eml"))]


def html_of(message: email.message.EmailMessage) -> str:
    return message.get_body(("html",)).get_content()


def test_run_writes_three_feeds_and_one_message_per_subscriber(sample_site: Path) -> None:
    code, out, err = invoke("run", "--site", str(sample_site))
    assert code == 0, err
    for name in ("feed.xml", "atom.xml", "feed.json"):
        assert (sample_site / "public" / name).stat().st_size > 0
    rss = feedparser.parse((sample_site / "public" / "feed.xml").read_bytes())
    assert not rss.bozo and len(rss.entries) == 9
    sent = messages(sample_site)
    assert sorted(str(m["To"].addresses[0].addr_spec) for m in sent) == [
        "ada@example.org", "grace@example.org"]
    assert "9 entries, 2 messages" in out
    assert not list((sample_site / "outbox" / "tmp").iterdir())


def test_second_run_writes_nothing_and_exits_0(sample_site: Path) -> None:
    invoke("run", "--site", str(sample_site))
    feed_before = (sample_site / "public" / "feed.xml").stat().st_mtime_ns
    code, out, _ = invoke("run", "--site", str(sample_site))
    assert code == 0
    assert "Nothing new" in out
    assert len(messages(sample_site)) == ACTIVE_SUBSCRIBERS
    assert (sample_site / "public" / "feed.xml").stat().st_mtime_ns == feed_before


def test_quiet_run_with_nothing_new_prints_nothing(sample_site: Path) -> None:
    invoke("run", "--site", str(sample_site))
    code, out, err = invoke("run", "--site", str(sample_site), "--quiet")
    assert (code, out, err) == (0, "", "")


def test_new_entry_goes_into_the_next_digest_alone(sample_site: Path) -> None:
    invoke("run", "--site", str(sample_site))
    write_entry(sample_site, "fresh.md", markdown_entry(title="A fresh entry", date="2026-11-21"))
    code, out, _ = invoke("run", "--site", str(sample_site))
    assert code == 0 and "Digest 2: 1 entry, " in out
    newest = [m for m in messages(sample_site) if "A fresh entry" in m["Subject"]]
    assert len(newest) == ACTIVE_SUBSCRIBERS
    assert "Statins" not in html_of(newest[0])


def test_first_run_over_a_back_catalogue_sends_at_most_the_cap(site: Path) -> None:
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text().replace("max_articles = 10", "max_articles = 3"))
    for day in range(1, 8):
        entry = markdown_entry(title=f"Entry {day}", date=f"2026-05-0{day}")
        write_entry(site, f"e{day}.md", entry)
    invoke("run", "--site", str(site))
    body = html_of(messages(site)[0])
    assert [t for t in (f"Entry {d}" for d in range(1, 8)) if t in body] == [
        "Entry 5", "Entry 6", "Entry 7"]
    _, out, _ = invoke("run", "--site", str(site))  # the older four never trickle out
    assert "Nothing new" in out and len(messages(site)) == ACTIVE_SUBSCRIBERS


def test_editing_a_sent_entry_updates_the_feed_not_the_digest(sample_site: Path) -> None:
    invoke("run", "--site", str(sample_site))
    path = next((sample_site / "articles").glob("*statins*"))
    path.write_text(path.read_text().replace("Statins and Muscle Aches", "Statins, Revised"))
    code, out, _ = invoke("run", "--site", str(sample_site))
    assert code == 0 and "Nothing new" in out and "feed.xml" in out
    titles = [e.title for e in feedparser.parse(sample_site / "public" / "feed.xml").entries]
    assert any(t.startswith("Statins, Revised") for t in titles)


@pytest.mark.skipif(not SEED.exists(), reason="the shared seed entry is not beside the repo")
def test_seed_entry_becomes_a_feed_item_and_a_digest_card(site: Path) -> None:
    shutil.copy(SEED, site / "articles" / SEED.name)
    assert invoke("run", "--site", str(site))[0] == 0
    title = "CAR-NK Cells: Could 'Off-the-Shelf' Immune Therapy Follow CAR-T?"
    item = feedparser.parse(site / "public" / "feed.xml").entries[0]
    assert item.title == title
    assert item.published_parsed[:3] == (2026, 6, 23)  # midnight London (BST) is 23:00 UTC
    assert "2026-06-24" in (site / "public" / "feed.json").read_text()
    assert [t.term for t in item.tags] == ["Immune Health"]
    assert item.summary.startswith("CAR-NK therapy takes CAR-T's winning idea")
    message = messages(site)[0]
    text = message.get_body(("plain",)).get_content()
    html = html_of(message)
    for part in (text, html):
        assert "24 Jun 2026" in part and "5 min read" in part
        assert "IMMUNE HEALTH" in part.upper()
        assert "CAR-NK therapy takes CAR-T" in part
    assert "Off-the-Shelf" in html


def test_init_scaffolds_a_site_that_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", "init-test-secret-0123456789-abcdefghij")
    target = tmp_path / "new-site"
    code, out, _ = invoke("init", str(target))
    assert code == 0 and "newsletter.toml" in out
    assert invoke("check", "--site", str(target))[0] == 0
    code, out, err = invoke("run", "--site", str(target))
    assert code == 0, err
    assert len(messages(target)) == 1
    assert invoke("init", str(target))[0] == 1  # never overwrites


def test_check_lists_each_problem_with_path_line_and_field(site: Path) -> None:
    write_entry(site, "good.md", markdown_entry())
    write_entry(site, "no-title.md", "---\ndate: 2026-01-02\n---\nBody.\n")
    write_entry(site, "bad-date.md", '---\ntitle: "T"\ndate: 2025-02-30\n---\nBody.\n')
    code, _, err = invoke("check", "--site", str(site))
    assert code == 1
    assert re.search(r"^articles/no-title\.md:\d+: title: .+ — .+$", err, re.M)
    assert re.search(r"^articles/bad-date\.md:\d+: date: .+ — .+$", err, re.M)
    assert not list(site.glob("public")) and not list(site.glob("outbox"))


def test_run_with_a_rejected_entry_publishes_the_rest_and_exits_1(site: Path) -> None:
    write_entry(site, "good.md", markdown_entry(title="Good one"))
    write_entry(site, "broken.md", "---\ntitle: [unclosed\n---\n")
    code, _, err = invoke("run", "--site", str(site))
    assert code == 1
    assert "articles/broken.md" in err
    assert "Good one" in messages(site)[0]["Subject"]


def test_config_error_names_the_key_and_writes_nothing(site: Path) -> None:
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text().replace('url = "https://journal.example.org/"', ""))
    write_entry(site, "good.md", markdown_entry())
    code, _, err = invoke("run", "--site", str(site))
    assert code == 78
    assert "site.url: is required" in err
    assert not (site / "outbox").exists()


def test_python_dash_m_pipeline_runs_the_same_job(sample_site: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pipeline", "run", "--site", str(sample_site)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(messages(sample_site)) == ACTIVE_SUBSCRIBERS


def test_the_repository_is_itself_a_working_site() -> None:
    code, _, err = invoke("check", "--site", str(REPO))
    assert code == 0, err
    assert len(list((REPO / "articles").glob("*.txt"))) >= 2
    assert len(list((REPO / "articles").iterdir())) >= 8


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_help_and_a_readme_mention(command: str) -> None:
    code, out, _ = invoke(command, "--help")
    assert code == 0 and "Usage:" in out
    assert f"newsletter {command}" in (REPO / "README.md").read_text()
