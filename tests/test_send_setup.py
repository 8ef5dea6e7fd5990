"""Sending's settings, and what the operator sees: a progress bar on a terminal, plain
lines in a log."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import (
    Inbox,
    add_subscribers,
    free_port,
    markdown_entry,
    smtp_server,
    use_relay,
    write_entry,
)
from pipeline.cli.main import cli
from pipeline.core.config import load_config
from pipeline.core.errors import ConfigError
from pipeline.delivery.settings import delivery_settings
from pipeline.run import run


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


def test_a_log_gets_plain_progress_lines_and_a_summary(site: Path) -> None:
    port = free_port()
    use_relay(site, port)
    add_subscribers(site, 12)
    write_entry(site, "a.md", markdown_entry())
    run(site)
    with smtp_server(Inbox(), port):
        result = CliRunner().invoke(cli, ["send", "--site", str(site)])
    assert result.exit_code == 0
    assert "send: 12/12 (sent 12, deferred 0, failed 0)" in result.stderr
    assert "\r" not in result.stderr
    assert result.stdout == "Sent 12, deferred 0, failed 0 (of 12 due).\n"


def test_a_terminal_gets_a_progress_bar(site: Path) -> None:
    port = free_port()
    use_relay(site, port)
    add_subscribers(site, 12)
    write_entry(site, "a.md", markdown_entry())
    run(site)
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 wide
    with smtp_server(Inbox(), port):
        sender = subprocess.Popen([sys.executable, "-m", "pipeline", "send", "--site", str(site)],
                                  stdout=subprocess.PIPE, stderr=terminal, text=True)
        os.close(terminal)
        screen = b""
        while select.select([controller], [], [], 30)[0]:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            screen += chunk
        out, _ = sender.communicate(timeout=30)
    os.close(controller)
    assert sender.returncode == 0
    assert b"send: 100%" in screen and b"12/12" in screen and b"sent 12" in screen
    assert "Sent 12" in out
