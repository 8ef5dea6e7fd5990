"""`newsletter status`, `check`, `init` and `preview`: the commands that look at a site (or
make one) without publishing or sending."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline.cli.common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_REJECTED,
    json_option,
    site_option,
)
from pipeline.cli.common import fail as _fail
from pipeline.cli.common import print_problems as _print_problems
from pipeline.cli.output import emit
from pipeline.core.errors import ConfigError, TemplateError
from pipeline.core.wording import counted


@click.command()
@site_option
@json_option
def status(site: Path, as_json: bool) -> None:
    """Show the last run, the last digest, what is waiting and the open problems."""
    from pipeline.commands.status import gather_status, status_lines

    try:
        found = gather_status(site.resolve())
    except ConfigError as exc:
        _fail(exc, EXIT_CONFIG)
    if as_json:
        emit("newsletter.status/1", found)
        return
    for line in status_lines(found):
        click.echo(line)


@click.command()
@site_option
@json_option
def check(site: Path, as_json: bool) -> None:
    """Validate the config, every entry, the subscriber list and the templates; write nothing."""
    from pipeline.cli import output
    from pipeline.commands.check import check_site

    try:
        report = check_site(site.resolve())
    except ConfigError as exc:
        _fail(exc, EXIT_CONFIG)
    problems, errors, upcoming = report.problems, report.errors, report.upcoming
    _print_problems(problems)
    if as_json:
        emit("newsletter.check/1", {
            "entries_ready": report.ready,
            "waiting_for_date": [d.isoformat() for d in upcoming],
            "errors": len(errors), "warnings": len(problems) - len(errors),
            "problems": [output.problem(p) for p in problems]})
    else:
        waits = ""
        if upcoming:
            dates = ", ".join(f"{d:%Y-%m-%d}" for d in upcoming)
            waits = (f", {len(upcoming)} {'waits' if len(upcoming) == 1 else 'wait'} "
                     f"for {'its' if len(upcoming) == 1 else 'their'} date ({dates})")
        click.echo(f"{counted(report.ready, 'entry', 'entries')} ready"
                   f"{waits}, {counted(len(errors), 'problem')}.", err=bool(errors))
    sys.exit(EXIT_REJECTED if errors else EXIT_OK)


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--systemd", is_flag=True,
              help="Also write systemd units for `run` (service and timer) and `serve` to "
                   "DIRECTORY/deploy/; with an existing site, only those.")
@click.option("--user", default=None, metavar="NAME",
              help="The user the units run as [default: you].")
def init(directory: Path, systemd: bool, user: str | None) -> None:
    """Create a working site in DIRECTORY: config, one sample article, subscribers.csv."""
    from pipeline.commands.scaffold import scaffold

    existing = (directory / "newsletter.toml").exists()
    if not (systemd and existing):
        try:
            created = scaffold(directory)
        except FileExistsError as exc:
            click.echo(f"{exc}: already exists — choose an empty or new folder", err=True)
            sys.exit(1)
        for path in created:
            click.echo(f"created {path}")
    if systemd:
        import getpass

        from pipeline.commands.systemd import write_units

        for path, written in write_units(directory, user or getpass.getuser()):
            click.echo(f"created {path}" if written else f"kept {path}: already there")
        click.echo(f"Install them as the comment atop {directory / 'deploy' / 'newsletter.service'}"
                   " says; put secrets only in /etc/newsletter/newsletter.env (mode 0600).")
    if not existing:
        click.echo(f"Next: edit {directory / 'newsletter.toml'}, then run "
                   f"`newsletter run --site {directory}`.")


@click.command()
@site_option
@click.option("--last", is_flag=True, help="Show the last digest built instead of the next one.")
@click.option("--open", "open_browser", is_flag=True,
              help="Open the HTML part in the default web browser.")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path),
              help="Also save a full-page screenshot to this file (needs Chromium).")
@click.option("--width", type=click.IntRange(320, 1200), default=600, show_default=True,
              help="Screenshot width in px: 600 for a desktop client, 375 for a phone.")
@click.option("--dark", is_flag=True, help="Take the screenshot in dark mode.")
def preview(site: Path, last: bool, open_browser: bool, png: Path | None, width: int,
            dark: bool) -> None:
    """Write the next digest (or the last) to preview/: HTML, text and optionally a PNG.

    Nothing is sent or recorded: the ledger, feeds and outbox are left alone."""
    from pipeline.commands.preview import NothingToPreview, build_preview

    try:
        shown = build_preview(site.resolve(), last=last)
    except (ConfigError, TemplateError) as exc:
        _fail(exc, EXIT_CONFIG)
    except NothingToPreview as exc:
        _fail(exc, EXIT_REJECTED)
    _print_problems(shown.problems)
    click.echo(f"Preview of {shown.what}: {counted(shown.entries, 'entry')}, “{shown.subject}”")
    click.echo(f"  HTML: {shown.html_path} ({shown.html_bytes / 1000:.0f} KB)")
    click.echo(f"  text: {shown.text_path}")
    if png is not None:
        from pipeline.commands.screenshot import ChromiumMissing, ScreenshotError, screenshot
        from pipeline.core.atomic import write_atomic

        try:
            shot = screenshot(shown.html_path, width, dark=dark)
        except (ChromiumMissing, ScreenshotError) as exc:
            _fail(exc, EXIT_REJECTED)
        write_atomic(png, shot.png)
        click.echo(f"  screenshot: {png} ({shot.width} × {shot.height} px"
                   f"{', dark mode' if dark else ''})")
        if shot.content_width > shot.width:
            click.echo(f"warning: at {width} px the digest is {shot.content_width} px wide: "
                       "something does not shrink (a long word or link, a wide image) — "
                       "readers on small screens must scroll sideways", err=True)
    if open_browser:
        import webbrowser

        webbrowser.open(shown.html_path.as_uri())
