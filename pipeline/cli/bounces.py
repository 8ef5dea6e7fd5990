"""The `newsletter bounces …` commands: returning mail from files or an IMAP mailbox."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.cli.common import (
    EXIT_CONFIG,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_UNAVAILABLE,
    site_option,
)
from pipeline.core.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.subscribers.returns.intake import IntakeReport

ORDER = ("bounced", "complained", "counted", "policy", "ignored", "kept", "refused",
         "seen before")

quiet_option = click.option("--quiet", "-q", is_flag=True,
                            help="Print nothing unless something needs a look.")
wait_option = click.option("--wait", type=click.FloatRange(min=0), default=0, show_default=True,
                           help="Seconds to wait for another `bounces` run on the same site.")


@click.group()
def bounces() -> None:
    """Read returning mail (bounces, complaints) and change the list by it."""


@bounces.command()
@site_option
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@quiet_option
@wait_option
def process(site: Path, paths: tuple[Path, ...], quiet: bool, wait: float) -> None:
    """Read returning mail from Maildir folders, mbox files or .eml files."""
    from pipeline.subscribers.returns.intake import process_paths

    sys.exit(_run(lambda: process_paths(site.resolve(), [p.resolve() for p in paths],
                                        wait=wait), quiet))


@bounces.command()
@site_option
@quiet_option
@wait_option
def fetch(site: Path, quiet: bool, wait: float) -> None:
    """Read returning mail from the [bounces] IMAP mailbox; handled mail is moved to
    bounces.processed_folder (or bounces.kept_folder), never deleted."""
    from pipeline.subscribers.returns.intake import fetch as fetch_mail

    sys.exit(_run(lambda: fetch_mail(site.resolve(), wait=wait), quiet, imap=True))


def _run(work: Callable[[], IntakeReport], quiet: bool, imap: bool = False) -> int:
    from pipeline.core.bounce_settings import IMAP_PASSWORD_ENV
    from pipeline.state.lock import Locked
    from pipeline.subscribers.returns.sources import ImapDown, ImapRefused

    try:
        if imap:
            _check_imap()
        report: IntakeReport = work()
    except ConfigError as exc:
        return _fail(str(exc), EXIT_CONFIG)
    except Locked as exc:
        return _fail(f"{exc}; nothing was done — try again later, or pass --wait SECONDS",
                     EXIT_LOCKED)
    except ImapDown as exc:
        return _fail(f"{exc}; nothing was done — the next fetch tries again",
                     EXIT_UNAVAILABLE)
    except ImapRefused as exc:
        return _fail(f"{exc} ({IMAP_PASSWORD_ENV} holds the password)", EXIT_CONFIG)
    for problem in report.problems:
        click.echo(str(problem), err=True)
    for name, reason in report.kept:
        click.echo(f"{name}: kept aside: {reason}", err=True)
    if not quiet:
        counts = ", ".join(f"{report.outcomes[k]} {k}" for k in ORDER if report.outcomes[k])
        click.echo(f"{report.total} messages" + (f": {counts}" if counts else "") + ".")
        for address, status, code in report.changes:
            click.echo(f"  {address}: {status}" + (f" ({code})" if code else ""))
    errors = [p for p in report.problems if not p.warning]
    return EXIT_REJECTED if errors or report.kept else EXIT_OK


def _check_imap() -> None:
    """The IMAP settings are there, and the password is in the environment."""
    import os

    from pipeline.core.bounce_settings import IMAP_PASSWORD_ENV
    from pipeline.core.config import CONFIG_NAME, load_config
    from pipeline.core.errors import Problem

    site = Path(click.get_current_context().params["site"]).resolve()
    config = load_config(site)
    problems = []
    if not config.bounces.imap_host:
        problems.append(Problem(site / CONFIG_NAME, "bounces.imap_host", "is not set",
                                'add [bounces] with imap_host = "imap.your-provider.example" '
                                "and imap_user"))
    if not os.environ.get(IMAP_PASSWORD_ENV):
        problems.append(Problem("environment", IMAP_PASSWORD_ENV, "is empty",
                                f"export {IMAP_PASSWORD_ENV}=… in the job's environment "
                                "(never in newsletter.toml)"))
    if problems:
        raise ConfigError(problems)


def _fail(message: str, code: int) -> int:
    click.echo(f"error: {message}", err=True)
    return code
