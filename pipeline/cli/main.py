"""The `newsletter` command: parse options, call the pipeline, map outcomes to exit codes."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from pipeline import __version__
from pipeline.cli.output import emit, run_json, send_json
from pipeline.core.errors import ConfigError, Problem, TemplateError
from pipeline.core.models import RunReport
from pipeline.core.wording import counted, due_line

if TYPE_CHECKING:
    from pipeline.core.deliveries import SendReport

# Exit codes (documented in the README); from sysexits where one fits.
EXIT_OK = 0
EXIT_REJECTED = 1  # the run finished, but some entries (or subscriber rows) were left out
EXIT_UNAVAILABLE = 69  # the relay or provider cannot be reached (EX_UNAVAILABLE): mail waits
EXIT_SOFTWARE = 70  # unexpected failure
EXIT_LOCKED = 75  # another run holds the site (EX_TEMPFAIL: cron may simply try again)
EXIT_CONFIG = 78  # configuration or template error: nothing was done

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print the outcome as one JSON object (schema in the README).")

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
@json_option
def run(site: Path, quiet: bool, verbose: bool, dry_run: bool, wait: float,
        then_send: bool, as_json: bool) -> None:
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
    quiet_once = quiet and report.fresh_problems is not None
    _print_problems(report.fresh_problems if quiet_once else report.problems)  # type: ignore[arg-type]
    if as_json:
        pass
    elif dry_run:
        _print_plan(report)
    elif not quiet:
        feeds = _feeds_line(report.feeds_changed) or "unchanged"
        click.echo(f"{counted(report.published, 'published entry')}; feeds {feeds}.")
        if report.digest_id is not None:
            click.echo(f"Digest {report.digest_id}: {counted(report.new, 'entry')}, "
                       f"{counted(report.written, 'message')} written to outbox/new.")
        elif report.held_back:
            click.echo(f"{counted(report.held_back, 'new entry')} "
                       f"{'waits' if report.held_back == 1 else 'wait'} for the next digest "
                       f"(digest.cadence: {due_line(report.next_digest)}); "
                       "feeds refreshed.")
        else:
            click.echo("Nothing new for the digest; no messages written.")
    code = EXIT_REJECTED if report.rejected else EXIT_OK
    data = run_json(report, dry_run=dry_run) if as_json else None
    if then_send and not dry_run:
        sent: dict[str, object] | None = {} if as_json else None
        code = _send(site.resolve(), quiet=quiet, wait=wait, json_out=sent) or code
        if data is not None:
            data["send"] = sent
    if data is not None:
        emit("newsletter.run/1", data)
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
@click.option("--now", "retry_now", is_flag=True,
              help="Retry deferred messages now, without waiting for their retry time.")
@json_option
def send(site: Path, limit: int | None, rate: float | None, dry_run: bool, test_to: str | None,
         quiet: bool, verbose: bool, wait: float, retry_now: bool, as_json: bool) -> None:
    """Hand the messages in outbox/new/ to the SMTP relay (smtp.* in newsletter.toml)."""
    _setup_logging(verbose)
    site = site.resolve()
    if test_to is not None:
        sys.exit(_send_test(site, test_to))
    if dry_run:
        sys.exit(_send_plan(site, limit or 0, retry_now=retry_now, as_json=as_json))
    data: dict[str, object] | None = {} if as_json else None
    code = _send(site, limit=limit or 0, rate=rate, quiet=quiet, wait=wait,
                 retry_now=retry_now, json_out=data)
    if data is not None:
        emit("newsletter.send/1", data)
    sys.exit(code)


@cli.command()
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


@cli.command()
@site_option
@json_option
def check(site: Path, as_json: bool) -> None:
    """Validate the config, every entry, the subscriber list and the templates; write nothing."""
    from pipeline.cli import output
    from pipeline.commands.checks import sending_problems
    from pipeline.core.config import load_config
    from pipeline.entries.collect import collect_articles
    from pipeline.entries.summarise import summarise
    from pipeline.publishing.digest import render_digest, size_problems
    from pipeline.subscribers.rules import load_subscribers

    site = site.resolve()
    try:
        config = load_config(site)
    except ConfigError as exc:
        _fail(exc, EXIT_CONFIG)
    now = datetime.now(UTC)
    upcoming: list[datetime] = []
    articles, problems = collect_articles(config, now, upcoming=upcoming)
    try:
        _, subscriber_problems = load_subscribers(config.subscribers_file,
                                                  config.subscribers_file.relative_to(site))
    except ConfigError as exc:  # an unreadable list stops a run; here it is one more problem
        subscriber_problems = exc.problems
    problems = [*config.warnings, *problems, *subscriber_problems, *sending_problems(config)]
    if articles:
        try:
            html, _ = render_digest([summarise(a) for a in articles[: config.max_articles]],
                                    now, config)
            problems += size_problems(html, config)
        except TemplateError as exc:
            problems.append(exc.problem)
    _print_problems(problems)
    errors = [p for p in problems if not p.warning]
    upcoming.sort()
    if as_json:
        emit("newsletter.check/1", {
            "entries_ready": len(articles),
            "waiting_for_date": [d.isoformat() for d in upcoming],
            "errors": len(errors), "warnings": len(problems) - len(errors),
            "problems": [output.problem(p) for p in problems]})
    else:
        waits = ""
        if upcoming:
            dates = ", ".join(f"{d:%Y-%m-%d}" for d in upcoming)
            waits = (f", {len(upcoming)} {'waits' if len(upcoming) == 1 else 'wait'} "
                     f"for {'its' if len(upcoming) == 1 else 'their'} date ({dates})")
        click.echo(f"{len(articles)} {'entry' if len(articles) == 1 else 'entries'} ready"
                   f"{waits}, {counted(len(errors), 'problem')}.", err=bool(errors))
    sys.exit(1 if errors else EXIT_OK)


@cli.command()
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
          wait: float = 0.0, retry_now: bool = False,
          json_out: dict[str, object] | None = None) -> int:
    """Send, print the outcome (or put it in `json_out`) and return the exit code."""
    from pipeline.cli.progress import Progress, print_summary
    from pipeline.core.config import load_config
    from pipeline.delivery.send import send as send_outbox
    from pipeline.delivery.smtp import RelaySetupError
    from pipeline.delivery.transport import TransportSetupError
    from pipeline.state.lock import Locked
    from pipeline.state.problems import note_problems

    progress = Progress(quiet or json_out is not None)
    try:
        config = load_config(site)
        report = send_outbox(site, limit=limit, rate=rate, wait=wait, progress=progress.update,
                             retry_now=retry_now)
    except ConfigError as exc:
        _fail(exc, EXIT_CONFIG)
    except (TransportSetupError, RelaySetupError) as exc:  # RelaySetupError: until the seam
        _fail(f"{exc}; the messages not yet sent stay queued in outbox/new", EXIT_CONFIG)
    except Locked as exc:
        _fail(f"{exc}; nothing was sent — try again later, or pass --wait SECONDS", EXIT_LOCKED)
    finally:
        progress.close()
    fresh = note_problems(config.state_dir, "send", report.problems)
    _print_problems(fresh if quiet else report.problems)
    print_summary(report, quiet or json_out is not None)
    over = _over_threshold(report.failed, report, config.fail_threshold)
    if report.failed and not over:
        click.echo(f"{counted(report.failed, 'message')} failed for good "
                   f"({_share(report.failed, report)} of those tried; delivery.fail_threshold "
                   f"is {config.fail_threshold:g}%): the send still counts as a success",
                   err=True)
    if json_out is not None:
        json_out.update(send_json(report, dry_run=False, fail_threshold=config.fail_threshold))
    if report.stopped:
        return EXIT_UNAVAILABLE  # the relay or provider cannot be reached: the rest waits
    return EXIT_REJECTED if over or report.missing else EXIT_OK


def _over_threshold(failed: int, report: SendReport, threshold: float) -> bool:
    """Whether the permanent failures pass delivery.fail_threshold (percent of the messages
    tried): a bounce or two in a list is normal; many mean the list or the mail is wrong."""
    tried = report.sent + report.deferred + report.failed
    return failed > 0 and failed * 100 > threshold * tried


def _share(failed: int, report: SendReport) -> str:
    tried = report.sent + report.deferred + report.failed
    return f"{failed * 100 / tried:.1f}%" if tried else "0%"


def _send_plan(site: Path, limit: int, *, retry_now: bool = False, as_json: bool = False
               ) -> int:
    from pipeline.core.config import load_config
    from pipeline.delivery.send import plan_send

    try:
        report = plan_send(site, limit=limit, retry_now=retry_now)
        threshold = load_config(site).fail_threshold
    except ConfigError as exc:
        _fail(exc, EXIT_CONFIG)
    _print_problems(report.problems)
    if as_json:
        emit("newsletter.send/1", send_json(report, dry_run=True, fail_threshold=threshold))
        return EXIT_OK
    waits = "waits for its" if report.waiting == 1 else "wait for their"
    click.echo(f"Dry run: nothing sent. {counted(report.due, 'message')} "
               + ("is" if report.due == 1 else "are") + " due"
               + (f" ({report.left} more over the cap)" if report.left else "")
               + f"; {report.waiting} {waits} retry time"
               + (" (--now: due now)" if retry_now else "") + ".")
    if report.recovered:
        click.echo(f"{counted(report.recovered, 'message')} moved by an interrupted send "
                   "would be recorded.")
    if report.withdrawn:
        click.echo(f"{counted(report.withdrawn, 'message')} would be withdrawn: their "
                   "subscribers left the list after they were written.")
    return EXIT_OK


def _send_test(site: Path, address: str) -> int:
    from pipeline.delivery.send import send_test
    from pipeline.delivery.smtp import RelayDown, RelaySetupError
    from pipeline.delivery.transport import TransportDown, TransportSetupError

    # RelayDown and RelaySetupError become TransportDown and TransportSetupError with the
    # delivery seam; both are caught until every backend raises the new ones.
    try:
        outcome = send_test(site, address)
    except ConfigError as exc:
        _fail(exc, EXIT_CONFIG)
    except (TransportSetupError, RelaySetupError) as exc:
        _fail(exc, EXIT_CONFIG)
    except (TransportDown, RelayDown) as exc:
        _fail(f"{exc} — try again later", EXIT_UNAVAILABLE)
    except ValueError as exc:
        _fail(exc, EXIT_REJECTED)
    if outcome.state != "sent":
        _fail(f"the relay did not take the test message: {outcome.reply}", EXIT_REJECTED)
    click.echo(f"Test message sent to {address}: {outcome.reply}")
    return EXIT_OK


def _print_plan(report: RunReport) -> None:
    feeds = _feeds_line(report.feeds_changed) or "none"
    click.echo(f"Dry run: nothing written. {counted(report.published, 'published entry')}; "
               f"feeds that would change: {feeds}.")
    if report.digest_id is not None:
        click.echo(f"Digest {report.digest_id} is unfinished: {report.written} of "
                   f"{counted(report.subscribers, 'subscriber')} still need their message.")
    elif report.held_back:
        click.echo(f"{counted(report.held_back, 'new entry')} "
                   f"{'waits' if report.held_back == 1 else 'wait'} for digest.cadence: the "
                   f"next digest is due {due_line(report.next_digest)}.")
    elif report.new:
        click.echo(f"A digest of {counted(report.new, 'entry')} would go to "
                   f"{counted(report.subscribers, 'subscriber')}:")
        for title in report.new_titles:
            click.echo(f"  - {title}")
    else:
        click.echo("Nothing new for the digest.")
    if report.upcoming:
        one = len(report.upcoming) == 1
        click.echo(f"{counted(len(report.upcoming), 'entry')} {'waits' if one else 'wait'} "
                   f"for {'its' if one else 'their'} date "
                   f"({', '.join(f'{d:%Y-%m-%d}' for d in report.upcoming)}).")


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
