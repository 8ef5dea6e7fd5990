"""The `newsletter` command: parse options, call the pipeline, map outcomes to exit codes."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import click

from pipeline import __version__
from pipeline.core.errors import ConfigError, Problem, TemplateError
from pipeline.core.models import RunReport

# Exit codes (documented in the README); from sysexits where one fits.
EXIT_OK = 0
EXIT_REJECTED = 1  # the run finished, but some entries (or subscriber rows) were left out
EXIT_SOFTWARE = 70  # unexpected failure
EXIT_CANTCREAT = 73  # send cannot move or record messages (outbox not writable, disk full)
EXIT_LOCKED = 75  # another run holds the site (EX_TEMPFAIL: cron may simply try again)
EXIT_CONFIG = 78  # configuration or template error: nothing was done

site_option = click.option(
    "--site", type=click.Path(file_okay=False, path_type=Path), default=".",
    show_default=True, help="The site folder (holds newsletter.toml).")


@click.group()
@click.version_option(__version__, prog_name="newsletter")
def cli() -> None:
    """Publish the journal: feeds for readers, an email digest for subscribers."""


@cli.command()
@site_option
@click.option("--quiet", "-q", is_flag=True, help="Print nothing unless something is wrong.")
@click.option("--verbose", "-v", is_flag=True, help="Log each stage to stderr.")
@click.option("--dry-run", is_flag=True,
              help="Show what would be published and to how many subscribers; write nothing.")
@click.option("--wait", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Seconds to wait for another run on the same site before giving up.")
@click.option("--send", "then_send", is_flag=True,
              help="Then send what is in the outbox, as `newsletter send` does.")
def run(site: Path, quiet: bool, verbose: bool, dry_run: bool, wait: float,
        then_send: bool) -> None:
    """Collect entries, write the feeds to public/ and new digests to outbox/."""
    from pipeline.run import plan
    from pipeline.run import run as run_pipeline
    from pipeline.state.lock import Locked

    _setup_logging(verbose)
    try:
        report = plan(site.resolve()) if dry_run else run_pipeline(site.resolve(), wait=wait)
    except (ConfigError, TemplateError) as exc:
        _fail(exc, EXIT_CONFIG)
    except Locked as exc:
        _fail(f"{exc}; nothing was done — try again later, or pass --wait SECONDS", EXIT_LOCKED)
    _print_problems(report.problems)
    if dry_run:
        _print_plan(report)
    elif not quiet:
        feeds = _feeds_line(report.feeds_changed) or "unchanged"
        click.echo(f"{report.published} published entries; feeds {feeds}.")
        if report.digest_id is not None:
            click.echo(f"Digest {report.digest_id}: {report.new} entries, "
                       f"{report.written} messages written to outbox/new.")
        elif report.held_back:
            click.echo(f"{report.held_back} new entries wait for the next digest "
                       "(digest.cadence); feeds refreshed.")
        else:
            click.echo("Nothing new for the digest; no messages written.")
    code = EXIT_REJECTED if report.rejected else EXIT_OK
    if then_send and not dry_run:
        code = _send(site.resolve(), quiet=quiet, wait=wait) or code
    sys.exit(code)


class RateType(click.ParamType):
    name = "R/s"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        text = str(value).strip().lower().removesuffix("/s")
        try:
            rate = float(text)
        except ValueError:
            rate = -1.0
        if not rate > 0:
            self.fail(f"{value!r} is not a rate: give messages per second, e.g. 10 or 10/s",
                      param, ctx)
        return rate


@cli.command()
@site_option
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Send at most N messages now (smtp.max_per_run also applies).")
@click.option("--rate", type=RateType(), default=None,
              help="At most R messages per second, e.g. 10/s [default: smtp.rate].")
@click.option("--dry-run", is_flag=True, help="Show what would be sent; connect to nothing.")
@click.option("--test", "test_to", metavar="ADDRESS",
              help="Send the latest digest to ADDRESS only, subject prefixed [TEST]; "
                   "the outbox and ledger are left alone.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing unless something is wrong.")
@click.option("--verbose", "-v", is_flag=True, help="Log each step to stderr.")
@click.option("--wait", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Seconds to wait for another send on the same site before giving up.")
def send(site: Path, limit: int | None, rate: float | None, dry_run: bool, test_to: str | None,
         quiet: bool, verbose: bool, wait: float) -> None:
    """Hand the messages in outbox/new/ to the delivery backend ([delivery] in
    newsletter.toml; the SMTP relay in [smtp] by default)."""
    _setup_logging(verbose)
    site = site.resolve()
    if test_to is not None:
        sys.exit(_send_test(site, test_to))
    if dry_run:
        sys.exit(_send_plan(site, limit or 0))
    sys.exit(_send(site, limit=limit or 0, rate=rate, quiet=quiet, wait=wait))


@cli.command()
@site_option
def status(site: Path) -> None:
    """Show the last run, the last digest and what is waiting."""
    from pipeline.commands.status import site_status

    try:
        lines = site_status(site.resolve())
    except ConfigError as exc:
        _fail(exc, EXIT_CONFIG)
    for line in lines:
        click.echo(line)


@cli.command()
@site_option
def check(site: Path) -> None:
    """Validate the config, every entry, the subscriber list and the templates; write nothing."""
    from pipeline.core.config import load_config
    from pipeline.delivery.settings import delivery_settings
    from pipeline.entries.collect import collect_articles
    from pipeline.entries.summarise import summarise
    from pipeline.publishing.digest import render_digest, size_problems
    from pipeline.subscribers.rules import load_subscribers

    site = site.resolve()
    try:
        config = load_config(site)
    except ConfigError as exc:
        _fail(exc, EXIT_CONFIG)
    try:
        delivery_problems = list(delivery_settings(config).warnings)
    except ConfigError as exc:  # reported with the rest; sending is not needed to publish
        delivery_problems = exc.problems
    now = datetime.now(UTC)
    articles, problems = collect_articles(config, now)
    try:
        _, subscriber_problems = load_subscribers(config.subscribers_file,
                                                  config.subscribers_file.relative_to(site))
    except ConfigError as exc:  # an unreadable list stops a run; here it is one more problem
        subscriber_problems = exc.problems
    problems = [*config.warnings, *delivery_problems, *problems, *subscriber_problems]
    if articles:
        try:
            html, _ = render_digest([summarise(a) for a in articles[: config.max_articles]],
                                    now, config)
            problems += size_problems(html, config)
        except TemplateError as exc:
            problems.append(exc.problem)
    _print_problems(problems)
    errors = [p for p in problems if not p.warning]
    click.echo(f"{len(articles)} entries ready, {len(errors)} problems.", err=bool(errors))
    sys.exit(1 if errors else EXIT_OK)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Create a working site in DIRECTORY: config, one sample article, subscribers.csv."""
    from pipeline.commands.scaffold import scaffold

    try:
        created = scaffold(directory)
    except FileExistsError as exc:
        click.echo(f"{exc}: already exists — choose an empty or new folder", err=True)
        sys.exit(1)
    for path in created:
        click.echo(f"created {path}")
    click.echo(f"Next: edit {directory / 'newsletter.toml'}, then run "
               f"`newsletter run --site {directory}`.")


@cli.command()
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
    click.echo(f"Preview of {shown.what}: {shown.entries} entries, “{shown.subject}”")
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


def _feeds_line(changed: list[str]) -> str:
    """The site feeds by name, the per-category ones counted: a run prints one short line."""
    site = [name for name in changed if "/" not in name]
    categories = len(changed) - len(site)
    return ", ".join([*site, *([f"{categories} category feeds"] if categories else [])])


def _register() -> None:
    from pipeline.cli.subscribers import serve, subscribers, unsubscribe

    for command in (subscribers, unsubscribe, serve):
        cli.add_command(command)


_register()


def _send(site: Path, *, limit: int = 0, rate: float | None = None, quiet: bool = False,
          wait: float = 0.0) -> int:
    from pipeline.cli.progress import Progress, print_summary
    from pipeline.delivery.folders import OutboxError
    from pipeline.delivery.send import send as send_outbox
    from pipeline.delivery.stopping import Stopped
    from pipeline.delivery.transport import TransportSetupError
    from pipeline.state.lock import Locked

    progress = Progress(quiet)
    try:
        report = send_outbox(site, limit=limit, rate=rate, wait=wait, progress=progress.update)
    except ConfigError as exc:
        _fail(exc, EXIT_CONFIG)
    except Stopped as exc:
        _fail(f"stopped by {exc} before any message was handed over; everything stays "
              "queued", 128 + exc.signum)
    except OutboxError as exc:
        _fail(exc, EXIT_CANTCREAT)
    except TransportSetupError as exc:
        _fail(f"{exc}; the messages not yet sent stay queued in outbox/new", EXIT_CONFIG)
    except Locked as exc:
        _fail(f"{exc}; nothing was sent — try again later, or pass --wait SECONDS", EXIT_LOCKED)
    finally:
        progress.close()
    _print_problems(report.problems)
    print_summary(report, quiet)
    if report.signal:
        return 128 + report.signal  # as a shell reports a process the signal ended
    if report.stopped:
        return EXIT_LOCKED  # the relay could not be reached: EX_TEMPFAIL, cron tries again
    return EXIT_REJECTED if report.failed or report.missing else EXIT_OK


def _send_plan(site: Path, limit: int) -> int:
    from pipeline.delivery.send import plan_send

    try:
        report = plan_send(site, limit=limit)
    except ConfigError as exc:
        _fail(exc, EXIT_CONFIG)
    _print_problems(report.problems)
    click.echo(f"Dry run: nothing sent. {report.due} messages are due"
               + (f" ({report.left} more over the cap)" if report.left else "")
               + f"; {report.waiting} wait for their retry time.")
    if report.recovered:
        click.echo(f"{report.recovered} messages moved by an interrupted send would be recorded.")
    if report.withdrawn:
        click.echo(f"{report.withdrawn} messages would be withdrawn: their subscribers left "
                   "the list after they were written.")
    return EXIT_OK


def _send_test(site: Path, address: str) -> int:
    from pipeline.delivery.send import send_test
    from pipeline.delivery.transport import TransportBusy, TransportDown, TransportSetupError

    try:
        outcome = send_test(site, address)
    except ConfigError as exc:
        _fail(exc, EXIT_CONFIG)
    except TransportSetupError as exc:
        _fail(exc, EXIT_CONFIG)
    except (TransportDown, TransportBusy) as exc:
        _fail(f"{exc} — try again later", EXIT_LOCKED)
    except ValueError as exc:
        _fail(exc, EXIT_REJECTED)
    if outcome.state != "sent":
        _fail(f"the relay did not take the test message: {outcome.reply}", EXIT_REJECTED)
    click.echo(f"Test message sent to {address}: {outcome.reply}")
    return EXIT_OK


def _print_plan(report: RunReport) -> None:
    feeds = _feeds_line(report.feeds_changed) or "none"
    click.echo(f"Dry run: nothing written. {report.published} published entries; "
               f"feeds that would change: {feeds}.")
    if report.digest_id is not None:
        click.echo(f"Digest {report.digest_id} is unfinished: {report.written} of "
                   f"{report.subscribers} subscribers still need their message.")
    elif report.held_back:
        click.echo(f"{report.held_back} new entries wait for the cadence (digest.cadence).")
    elif report.new:
        click.echo(f"A digest of {report.new} entries would go to "
                   f"{report.subscribers} subscribers:")
        for title in report.new_titles:
            click.echo(f"  - {title}")
    else:
        click.echo("Nothing new for the digest.")


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("pipeline")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False


def _print_problems(problems: list[Problem]) -> None:
    for problem in problems:
        click.echo(str(problem), err=True)


def _fail(exc: Exception | str, code: int) -> NoReturn:
    click.echo(f"error: {exc}", err=True)
    sys.exit(code)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except Exception as exc:  # the last resort: one line, not a traceback, for cron's mail
        click.echo(f"unexpected failure: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_SOFTWARE)
