"""The `newsletter` command: parse options, call the pipeline, map outcomes to exit codes."""

from __future__ import annotations

import logging
import os
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from pipeline import __version__
from pipeline.cli.common import (  # the exit codes are documented in the README
    EXIT_CANTCREAT,
    EXIT_CONFIG,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_SOFTWARE,
    EXIT_UNAVAILABLE,
    json_option,
    site_option,
)
from pipeline.cli.common import fail as _fail
from pipeline.cli.common import print_problems as _print_problems
from pipeline.cli.output import emit, run_json, send_json
from pipeline.core.errors import ConfigError, TemplateError
from pipeline.core.models import RunReport
from pipeline.core.wording import counted, due_line

if TYPE_CHECKING:
    from pipeline.core.deliveries import SendReport


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
    # --quiet: only problems no earlier run reported (the ledger keeps the open ones)
    fresh = report.fresh_problems
    _print_problems(fresh if quiet and fresh is not None else report.problems)
    if dry_run and not as_json:
        _print_plan(report)
    elif not (quiet or as_json):
        _print_run(report)
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
              help="Send at most N messages now (the backend's max_per_run also applies).")
@click.option("--rate", type=RateType(), default=None,
              help="At most R messages per second, e.g. 10/s [default: the backend's rate].")
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
    """Hand the messages in outbox/new/ to the delivery backend ([delivery] in
    newsletter.toml; the SMTP relay in [smtp] by default)."""
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


def _feeds_line(changed: list[str]) -> str:
    """The site feeds by name, the per-category ones counted: a run prints one short line."""
    site = [name for name in changed if "/" not in name]
    categories = len(changed) - len(site)
    return ", ".join([*site, *([f"{categories} category feeds"] if categories else [])])


def _register() -> None:
    from pipeline.cli.bounces import bounces
    from pipeline.cli.ledger_commands import backup, restore
    from pipeline.cli.site_commands import check, init, preview, status
    from pipeline.cli.subscribers import serve, subscribers, unsubscribe

    for command in (status, check, init, preview, subscribers, unsubscribe, serve, backup,
                    restore, bounces):
        cli.add_command(command)


_register()


def _send(site: Path, *, limit: int = 0, rate: float | None = None, quiet: bool = False,
          wait: float = 0.0, retry_now: bool = False,
          json_out: dict[str, object] | None = None) -> int:
    """Send, print the outcome (or put it in `json_out`) and return the exit code."""
    from pipeline.cli.progress import Progress, print_summary
    from pipeline.core.config import load_config
    from pipeline.delivery.folders import OutboxError
    from pipeline.delivery.send import send as send_outbox
    from pipeline.delivery.stopping import Stopped
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
    fresh = note_problems(config.state_dir, "send", report.problems)
    _print_problems(fresh if quiet else report.problems)
    print_summary(report, quiet or json_out is not None)
    over = _over_threshold(report, config.fail_threshold)
    if report.failed and not over:
        click.echo(f"{counted(report.failed, 'message')} failed for good "
                   f"({_share(report)} of those tried; delivery.fail_threshold "
                   f"is {config.fail_threshold:g}%): the send still counts as a success",
                   err=True)
    if json_out is not None:
        json_out.update(send_json(report, dry_run=False, fail_threshold=config.fail_threshold))
    if report.signal:
        return 128 + report.signal  # as a shell reports a process the signal ended
    if report.stopped:
        return EXIT_UNAVAILABLE  # the relay or provider cannot be reached: the rest waits
    return EXIT_REJECTED if over or report.missing else EXIT_OK


def _over_threshold(report: SendReport, threshold: float) -> bool:
    """Whether the permanent failures pass delivery.fail_threshold (percent of the messages
    tried): a bounce or two in a list is normal; many mean the list or the mail is wrong."""
    tried = report.sent + report.deferred + report.failed
    return report.failed > 0 and report.failed * 100 > threshold * tried


def _share(report: SendReport) -> str:
    tried = report.sent + report.deferred + report.failed
    return f"{report.failed * 100 / tried:.1f}%" if tried else "0%"


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
    from pipeline.delivery.transport import TransportBusy, TransportDown, TransportSetupError

    try:
        outcome = send_test(site, address)
    except ConfigError as exc:
        _fail(exc, EXIT_CONFIG)
    except TransportSetupError as exc:
        _fail(exc, EXIT_CONFIG)
    except (TransportDown, TransportBusy) as exc:
        _fail(f"{exc} — try again later", EXIT_UNAVAILABLE)
    except ValueError as exc:
        _fail(exc, EXIT_REJECTED)
    if outcome.state != "sent":
        _fail(f"the relay did not take the test message: {outcome.reply}", EXIT_REJECTED)
    click.echo(f"Test message sent to {address}: {outcome.reply}")
    return EXIT_OK


def _waiting(report: RunReport) -> str:
    """"3 new entries wait" (held back by digest.cadence)."""
    return (f"{counted(report.held_back, 'new entry')} "
            f"{'waits' if report.held_back == 1 else 'wait'}")


def _print_run(report: RunReport) -> None:
    feeds = _feeds_line(report.feeds_changed) or "unchanged"
    click.echo(f"{counted(report.published, 'published entry')}; feeds {feeds}.")
    if report.digest_id is not None:
        click.echo(f"Digest {report.digest_id}: {counted(report.new, 'entry')}, "
                   f"{counted(report.written, 'message')} written to {report.written_to}.")
    elif report.held_back:
        click.echo(f"{_waiting(report)} for the next digest "
                   f"(digest.cadence: {due_line(report.next_digest)}); feeds refreshed.")
    else:
        click.echo("Nothing new for the digest; no messages written.")


def _print_plan(report: RunReport) -> None:
    feeds = _feeds_line(report.feeds_changed) or "none"
    click.echo(f"Dry run: nothing written. {counted(report.published, 'published entry')}; "
               f"feeds that would change: {feeds}.")
    if report.digest_id is not None:
        click.echo(f"Digest {report.digest_id} is unfinished: {report.written} of "
                   f"{counted(report.subscribers, 'subscriber')} still need their message.")
    elif report.held_back:
        click.echo(f"{_waiting(report)} for digest.cadence: the next digest is due "
                   f"{due_line(report.next_digest)}.")
    elif report.new:
        click.echo(f"A digest of {counted(report.new, 'entry')} would go to "
                   f"{counted(report.subscribers, 'subscriber')}:")
        for title in report.new_titles:
            click.echo(f"  - {title}")
    else:
        click.echo("Nothing new for the digest.")
    if report.next_digest is not None and not report.held_back:
        click.echo(f"digest.cadence: the next digest may go out "
                   f"{due_line(report.next_digest, datetime.now(UTC))}.")
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


def main() -> None:
    try:
        cli(standalone_mode=True)
    except SystemExit as done:
        _leave(done.code)
    except Exception as exc:  # the last resort: one line, not a traceback, for cron's mail
        click.echo(f"unexpected failure: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_SOFTWARE)


def _leave(code: object) -> NoReturn:
    """Exit once the command is done, without the interpreter's teardown (freeing every
    object module by module: ~20 ms after a run, as long as a no-op run's own work): what
    the command wrote is closed by then, and the logs and output are flushed here. A normal
    exit when it must do more: another thread is still running (it would wait for it), or
    the code is a message to print."""
    if (code is None or isinstance(code, int)) and threading.active_count() == 1:
        logging.shutdown()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):  # a closed pipe: the normal exit reports it
            raise SystemExit(code) from None
        os._exit(code or 0)
    raise SystemExit(code)
