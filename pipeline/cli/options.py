"""What every command shares: the `--site` option and the exit codes (documented in the
README; from sysexits where one fits)."""

from __future__ import annotations

from pathlib import Path

import click

EXIT_OK = 0
EXIT_REJECTED = 1  # the run finished, but some entries (or subscriber rows) were left out
EXIT_SOFTWARE = 70  # unexpected failure
EXIT_LOCKED = 75  # another run holds the site (EX_TEMPFAIL: cron may simply try again)
EXIT_CONFIG = 78  # configuration or template error: nothing was done

site_option = click.option(
    "--site", type=click.Path(file_okay=False, path_type=Path), default=".",
    show_default=True, help="The site folder (holds newsletter.toml).")
