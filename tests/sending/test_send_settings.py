"""Sending's settings: every problem reported at once, defaults that follow the TLS mode and
the From address, and what is refused before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import (
    free_port,
    use_relay,
)
from pipeline.cli.main import cli
from pipeline.core.config import load_config
from pipeline.core.errors import ConfigError
from pipeline.delivery.settings import delivery_settings


def test_every_smtp_and_dkim_problem_is_reported_at_once(site: Path) -> None:
    with (site / "newsletter.toml").open("a") as f:
        f.write('[smtp]\nhost = "smtp.example.net"\ntls = "ssl"\nrate = -1\nconnections = 0\n'
                'colour = "blue"\n[dkim]\nselector = "s1"\n')
    with pytest.raises(ConfigError) as caught:
        delivery_settings(load_config(site))
    text = str(caught.value)
    for expected in ("smtp.tls: 'ssl' is not a TLS mode", "smtp.rate: must be a number of 0",
                     "smtp.connections: must be a whole number of 1",
                     "dkim.private_key: is missing", "warning: smtp.colour: unknown key"):
        assert expected in text


def test_a_password_over_plain_smtp_to_another_machine_is_refused(site: Path) -> None:
    with (site / "newsletter.toml").open("a") as f:
        f.write('[smtp]\nhost = "smtp.example.net"\ntls = "none"\nuser = "journal"\n')
    with pytest.raises(ConfigError, match="unencrypted"):
        delivery_settings(load_config(site))


def test_smtp_defaults_follow_the_tls_mode_and_the_from_address(site: Path) -> None:
    with (site / "newsletter.toml").open("a") as f:
        f.write('[smtp]\nhost = "smtp.example.net"\ntls = "implicit"\n')
    delivery = delivery_settings(load_config(site))
    smtp = delivery.transport
    assert (smtp.port, smtp.envelope_from, delivery.dkim) == (465, "journal@example.org", None)


def test_a_user_without_a_password_in_the_environment_is_a_config_error(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSLETTER_SMTP_PASSWORD", raising=False)
    use_relay(site, free_port(), user="journal")
    result = CliRunner().invoke(cli, ["send", "--site", str(site)])
    assert result.exit_code == 78
    assert "NEWSLETTER_SMTP_PASSWORD: is empty" in result.stderr and "export" in result.stderr
