"""`newsletter init --systemd`: units for `run` and `serve`, filled in for the site, checked by
systemd's own parser when it is installed; secrets only in a 0600 environment file."""

from __future__ import annotations

import configparser
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import invoke


def units(folder: Path) -> dict[str, configparser.ConfigParser]:
    parsed = {}
    for name in ("newsletter.service", "newsletter.timer", "newsletter-serve.service"):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string((folder / name).read_text())
        parsed[name] = parser
    return parsed


def test_init_systemd_writes_the_units_for_run_and_serve(tmp_path: Path) -> None:
    site = tmp_path / "my journal"
    code, out, err = invoke("init", str(site), "--systemd", "--user", "journal")
    assert code == 0, err
    deploy = site / "deploy"
    found = units(deploy)
    run, timer, serve = (found[n] for n in ("newsletter.service", "newsletter.timer",
                                            "newsletter-serve.service"))
    assert run["Service"]["Type"] == "oneshot" and run["Service"]["User"] == "journal"
    assert run["Service"]["ExecStart"].endswith(f'run --site "{site}" --quiet --send')
    assert run["Service"]["WorkingDirectory"] == str(site)
    assert run["Service"]["SuccessExitStatus"].split() == ["75"]  # never 69: an outage fails
    assert timer["Timer"]["OnCalendar"] and timer["Install"]["WantedBy"] == "timers.target"
    assert serve["Service"]["ExecStart"].endswith(f'serve --site "{site}" --host 127.0.0.1 '
                                                  "--port 8080")
    assert serve["Service"]["Restart"] == "always"
    for unit in (run, serve):
        assert unit["Service"]["EnvironmentFile"] == "-/etc/newsletter/newsletter.env"
    for name in ("newsletter.service", "newsletter.timer", "newsletter-serve.service"):
        settings = [line for line in (deploy / name).read_text().splitlines()
                    if not line.startswith("#")]
        assert not [line for line in settings  # no secret inline: unit files are world-readable
                    if line.startswith("Environment=") or "SECRET" in line or "PASSWORD" in line]
    env = deploy / "newsletter.env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert "#NEWSLETTER_SMTP_PASSWORD=" in env.read_text()
    assert (site / "newsletter.toml").exists() and f"created {env}" in out


def test_init_systemd_on_an_existing_site_writes_only_the_units_and_keeps_edits(
        site: Path) -> None:
    config = (site / "newsletter.toml").read_text()
    assert invoke("init", str(site), "--systemd")[0] == 0
    assert (site / "newsletter.toml").read_text() == config
    service = site / "deploy" / "newsletter.service"
    service.write_text(service.read_text() + "# my edit\n")
    code, out, _ = invoke("init", str(site), "--systemd")
    assert code == 0 and "kept" in out and service.read_text().endswith("# my edit\n")
    assert invoke("init", str(site))[0] == 1  # without --systemd an existing site is refused


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: cannot ask systemd to read the units")
    site = tmp_path / "site"
    assert invoke("init", str(site), "--systemd", "--user", "root")[0] == 0
    deploy = site / "deploy"
    result = subprocess.run([analyze, "verify", "newsletter.service", "newsletter.timer",
                             "newsletter-serve.service"], cwd=deploy, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "newsletter" not in result.stderr, result.stderr  # no warning about our units


def test_the_readme_unit_does_not_count_an_outage_as_success() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    settings = re.findall(r"^SuccessExitStatus=(.*)$", readme, re.M)
    assert settings and all(value.split() == ["75"] for value in settings)
