"""The `newsletter backup` and `restore` commands (the ledger's safety copy, for cron)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline.core.errors import ConfigError

site_option = click.option(
    "--site", type=click.Path(file_okay=False, path_type=Path), default=".",
    show_default=True, help="The site folder (holds newsletter.toml).")


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@site_option
def backup(file: Path, site: Path) -> None:
    """Copy the ledger to FILE (SQLite's online backup: safe while runs and sends go on)."""
    from pipeline.commands.backup import backup_site

    try:
        backup_site(site.resolve(), file.resolve())
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(78)
    except FileNotFoundError:
        click.echo("error: this site has no ledger (.newsletter/state.sqlite3) to back up",
                   err=True)
        sys.exit(1)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@site_option
@click.option("--wait", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Seconds to wait for a run or send on the site to finish.")
def restore(file: Path, site: Path, wait: float) -> None:
    """Replace the site's ledger with FILE, a copy made by `newsletter backup`."""
    from pipeline.commands.backup import NotALedger, restore_site
    from pipeline.state.lock import Locked

    try:
        restore_site(site.resolve(), file.resolve(), wait)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(78)
    except NotALedger as exc:
        click.echo(f"error: {exc} — give a file made by `newsletter backup`", err=True)
        sys.exit(1)
    except Locked as exc:
        click.echo(f"error: {exc}; nothing was restored — try again later, or pass --wait",
                   err=True)
        sys.exit(75)
    click.echo(f"restored the ledger from {file}")
