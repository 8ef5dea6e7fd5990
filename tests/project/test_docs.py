"""The README is the reference: every command, option and newsletter.toml key is in it.

After sqlite-utils' tests/test_docs.py: the lists come from the code itself, so a command,
option or key added without a line in the README fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from pipeline.cli import cli
from pipeline.core.config import SCHEMA

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
SHARED_OPTIONS = {"--site", "--help"}  # documented once, under Commands


def _commands(group: click.Group, prefix: str = "newsletter") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            found += _commands(command, path)
        else:
            found.append((path, command))
    return found


COMMANDS = _commands(cli)


def _lines_about(path: str) -> list[str]:
    """README lines that name the command, e.g. a row of the commands table."""
    pattern = re.compile(rf"`{re.escape(path)}(?![\w-])")
    return [line for line in README.splitlines() if pattern.search(line)]


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS])
def test_every_command_is_in_the_readme(path: str) -> None:
    assert _lines_about(path), f"{path} is not in the README"


@pytest.mark.parametrize(("path", "option"), [
    (path, option) for path, command in COMMANDS for param in command.params
    if isinstance(param, click.Option)
    for option in param.opts if option.startswith("--") and option not in SHARED_OPTIONS])
def test_every_option_is_in_its_commands_line(path: str, option: str) -> None:
    lines = _lines_about(path)
    assert any(re.search(rf"{re.escape(option)}(?![\w-])", line) for line in lines), (
        f"{path} {option} is not on the README line that documents {path}")


@pytest.mark.parametrize("key", [f"{table}.{key}" for table, keys in SCHEMA.items()
                                 for key in keys])
def test_every_config_key_is_in_the_readme(key: str) -> None:
    assert f"`{key}`" in README, f"newsletter.toml key {key} is not in the README"


def test_shared_options_are_documented_once() -> None:
    assert "`--site` defaults to the current folder" in README
