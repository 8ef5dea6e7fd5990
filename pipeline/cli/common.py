"""What every command shares: exit codes, the --site and --json options, how a problem or
an error is printed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from pipeline.core.errors import Problem

# Exit codes (documented in the README); from sysexits where one fits.
EXIT_OK = 0
EXIT_REJECTED = 1  # the run finished, but some entries (or subscriber rows) were left out
EXIT_UNAVAILABLE = 69  # the relay or provider cannot be reached (EX_UNAVAILABLE): mail waits
EXIT_SOFTWARE = 70  # unexpected failure
EXIT_CANTCREAT = 73  # send cannot move or record messages (outbox not writable, disk full)
EXIT_LOCKED = 75  # another run holds the site (EX_TEMPFAIL: cron may simply try again)
EXIT_CONFIG = 78  # configuration or template error: nothing was done

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print the outcome as one JSON object (schema in the README).")

site_option = click.option(
    "--site", type=click.Path(file_okay=False, path_type=Path), default=".",
    show_default=True, help="The site folder (holds newsletter.toml).")


def print_problems(problems: list[Problem]) -> None:
    for problem in problems:
        click.echo(str(problem), err=True)


def fail(exc: Exception | str, code: int) -> NoReturn:
    click.echo(f"error: {exc}", err=True)
    sys.exit(code)
