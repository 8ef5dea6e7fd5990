"""The delivery seam: `send` drives whichever backend `[delivery] backend` names, through the
transport interface only; each backend checks its own settings.

The second backend here is a real one, small enough to live in a test: it delivers into a
folder (as a pickup directory would), one file per message and recipient."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from conftest import Inbox, free_port, markdown_entry, smtp_server, use_relay, write_entry
from pipeline.cli.main import cli
from pipeline.core.config import Config, load_config
from pipeline.core.errors import ConfigError, Problem
from pipeline.delivery.send import send
from pipeline.delivery.settings import Values, delivery_settings
from pipeline.delivery.transport import BACKENDS, Entry, Outcome
from pipeline.run import run


class FolderTransport:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, sender: str, recipients: Sequence[str], data: bytes) -> Outcome:
        for recipient in recipients:
            (self.folder / f"{recipient}.eml").write_bytes(data)
        return Outcome("sent", f"written for {len(recipients)}")

    def close(self) -> None:
        pass


class FolderSettings:
    def __init__(self, folder: Path | None, envelope_from: str) -> None:
        self.folder, self.envelope_from = folder, envelope_from
        self.connections, self.rate, self.max_per_run = 2, 0.0, 0
        self.retry_after, self.max_attempts = 60.0, 3


class FolderBackend:
    name = "folder"
    schema: ClassVar[Mapping[str, Mapping[str, object]]] = {"folder": {"path": ""}}

    def settings(self, values: Values, config: Config) -> FolderSettings:
        name = values.string("folder.path")
        return FolderSettings(config.site_dir / name if name else None,
                              config.from_address.addr_spec)

    def check(self, settings: FolderSettings, config: Config) -> list[Problem]:
        if settings.folder is None or not settings.folder.is_dir():
            return [config.problem("folder.path", "is not a folder", "create it")]
        return []

    def transports(self, settings: FolderSettings) -> Callable[[], FolderTransport]:
        assert settings.folder is not None
        return lambda: FolderTransport(settings.folder)


BACKEND = FolderBackend()


@pytest.fixture
def folder_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKENDS, "folder", Entry(__name__, ("folder",)))


def test_the_backend_named_in_the_config_delivers_and_smtp_is_not_required(
        site: Path, folder_backend: None) -> None:
    (site / "picked-up").mkdir()
    with (site / "newsletter.toml").open("a") as f:
        f.write('[delivery]\nbackend = "folder"\n[folder]\npath = "picked-up"\n')
    write_entry(site, "a.md", markdown_entry())
    run(site)
    written = {p.name: p.read_bytes() for p in (site / "outbox" / "new").glob("*.eml")}
    report = send(site)  # no [smtp] at all: the folder backend checks only its own table
    assert report.sent == 2 and report.failed == 0
    got = sorted(p.name for p in (site / "picked-up").iterdir())
    assert got == ["ada@example.org.eml", "grace@example.org.eml"]
    assert sorted(written.values()) == sorted(p.read_bytes()
                                              for p in (site / "picked-up").iterdir())
    assert sorted((site / "outbox" / "sent").glob("*.eml")) != []


def test_a_backend_checks_its_own_settings(site: Path, folder_backend: None) -> None:
    with (site / "newsletter.toml").open("a") as f:
        f.write('[delivery]\nbackend = "folder"\n[folder]\npath = "nowhere"\ncolour = 1\n')
    write_entry(site, "a.md", markdown_entry())
    run(site)
    result = CliRunner().invoke(cli, ["send", "--site", str(site)])
    assert result.exit_code == 78
    assert "folder.path: is not a folder" in result.stderr
    assert "smtp.host" not in result.stderr


def test_smtp_is_the_default_backend_and_an_unknown_one_is_a_config_error(
        site: Path, port: int) -> None:
    use_relay(site, port)
    write_entry(site, "a.md", markdown_entry())
    run(site)
    inbox = Inbox()
    with smtp_server(inbox, port):
        assert send(site).sent == 2
    assert inbox.recipients() == ["ada@example.org", "grace@example.org"]
    with (site / "newsletter.toml").open("a") as f:
        f.write('[delivery]\nbackend = "pigeon"\n')
    with pytest.raises(ConfigError, match="'pigeon' is not a delivery backend"):
        delivery_settings(load_config(site))


def test_unknown_keys_of_a_backend_table_are_warned_about_by_check_and_send(
        site: Path, port: int) -> None:
    use_relay(site, port, colour="blue")
    with (site / "newsletter.toml").open("a") as f:
        f.write("[smpt]\nhost = 'x'\n")
    result = CliRunner().invoke(cli, ["check", "--site", str(site)])
    assert "warning: smtp.colour: unknown key" in result.stderr
    assert "warning: smpt: unknown table" in result.stderr
    dry = CliRunner().invoke(cli, ["send", "--site", str(site), "--dry-run"])
    assert dry.exit_code == 0 and "warning: smtp.colour: unknown key" in dry.stderr


def test_a_bad_smtp_setting_does_not_stop_publishing_but_stops_sending(site: Path) -> None:
    use_relay(site, free_port(), tls="ssl")
    write_entry(site, "a.md", markdown_entry())
    published = CliRunner().invoke(cli, ["run", "--site", str(site)])
    assert published.exit_code == 0 and (site / "public" / "feed.xml").exists()
    sending = CliRunner().invoke(cli, ["send", "--site", str(site)])
    assert sending.exit_code == 78 and "smtp.tls: 'ssl' is not a TLS mode" in sending.stderr
    checked = CliRunner().invoke(cli, ["check", "--site", str(site)])
    assert checked.exit_code == 1 and "smtp.tls" in checked.stderr
