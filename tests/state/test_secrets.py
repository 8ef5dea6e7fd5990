"""Secrets never appear in what a run prints, in its failure messages, in public/, outbox/ or
the ledger: only in the environment, or in .newsletter/secret where a generated one belongs.

SECRETS lists the environment variables that hold secrets; a new one (an SMTP password, say)
is covered by adding its name here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import markdown_entry, write_entry
from pipeline.cli.main import cli
from pipeline.state.secret import SECRET_ENV

SECRETS = {SECRET_ENV: "s3cr3t-Zebra-0451-do-not-print-ever-again"}


@pytest.fixture(autouse=True)
def secrets_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def newsletter(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as cron runs it: a real process with the last-resort handler in main()."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args, "--site", str(site)],
                          capture_output=True, text=True, env=dict(os.environ), timeout=120)


def printed(site: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--site", str(site)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout + result.stderr


def leaks(site: Path, secret: str, *, allowed: tuple[Path, ...] = ()) -> list[str]:
    """Every file under the site, the ledger included, that holds the secret."""
    return [str(p.relative_to(site)) for p in sorted(site.rglob("*"))
            if p.is_file() and p not in allowed and secret.encode() in p.read_bytes()]


def test_an_environment_secret_is_never_printed_or_written(site: Path) -> None:
    write_entry(site, "entry.md", markdown_entry(body="Token: {token}. Secret: {secret}."))
    output = "".join(printed(site, *args) for args in (
        ["run", "--dry-run"], ["run", "--verbose"], ["status"], ["check"], ["run"]))
    assert (site / "outbox" / "new").is_dir() and (site / "public" / "feed.xml").exists()
    for secret in SECRETS.values():
        assert secret not in output
        assert leaks(site, secret) == []


@pytest.mark.parametrize("failure", ["config", "template", "unexpected"])
def test_a_failing_run_prints_one_line_and_no_secret(site: Path, failure: str) -> None:
    write_entry(site, "entry.md", markdown_entry())
    if failure == "config":  # a secret pasted into the config is not echoed back either
        toml = site / "newsletter.toml"
        toml.write_text(toml.read_text().replace('url = "https://journal.example.org/"', "")
                        + f'\n[smtp]\npassword = "{SECRETS[SECRET_ENV]}"\n')
    elif failure == "template":
        (site / "templates").mkdir()
        (site / "templates" / "digest.txt.j2").write_text("{{ secret }}{{ config }}")
    else:
        (site / "outbox").write_text("a file where the outbox folder should be")
    done = newsletter(site, "run")
    assert done.returncode == {"config": 78, "template": 78, "unexpected": 70}[failure]
    assert "Traceback" not in done.stderr
    if failure != "config":
        assert len(done.stderr.splitlines()) == 1, done.stderr
    for secret in SECRETS.values():
        assert secret not in done.stdout + done.stderr
        assert leaks(site, secret, allowed=(site / "newsletter.toml",)) == []


def test_a_generated_secret_stays_in_its_own_file(site: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV)
    write_entry(site, "entry.md", markdown_entry())
    output = printed(site, "run", "--verbose") + printed(site, "status")
    secret_file = site / ".newsletter" / "secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32
    assert secret not in output
    assert leaks(site, secret, allowed=(secret_file,)) == []
