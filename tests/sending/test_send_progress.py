"""What the operator sees while a send runs: a progress bar on a terminal, plain lines and a
summary in a log."""

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
from pipeline.run import run


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
