"""What `newsletter send` shows while it works and when it is done: a progress bar on a
terminal, a plain line every few seconds otherwise (cron's mail, journald), then a summary."""

from __future__ import annotations

import sys
import time

import click

from pipeline.core.deliveries import SendReport
from pipeline.core.wording import counted

PLAIN_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal (and at
PLAIN_STEPS = 4  # each quarter): enough to follow in a log, few enough for cron's mail


class Progress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None
        self.last = time.monotonic()
        self.step = 0  # quarters reported so far

    def update(self, report: SendReport) -> None:
        if self.quiet:
            return
        done = report.sent + report.deferred + report.failed
        counts = f"sent {report.sent}, deferred {report.deferred}, failed {report.failed}"
        if sys.stderr.isatty():
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=report.due, unit="msg", desc="send", file=sys.stderr,
                                dynamic_ncols=True)
            self.bar.update(done - self.bar.n)
            self.bar.set_postfix_str(counts, refresh=False)
            return
        step = done * PLAIN_STEPS // max(report.due, 1)
        if step > self.step or time.monotonic() - self.last >= PLAIN_EVERY:
            self.step, self.last = step, time.monotonic()
            click.echo(f"send: {done}/{report.due} ({counts})", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def print_summary(report: SendReport, quiet: bool) -> None:
    """Failures and a stop on stderr always; the counts on stdout unless --quiet."""
    for address, reply in report.failures:
        click.echo(f"failed: {address}: {reply}", err=True)
    if report.bouncing:
        click.echo(f"marked bounced on the list (no more digests until re-imported with "
                   f"--reactivate): {', '.join(report.bouncing)}", err=True)
    if report.stopped:
        click.echo(f"stopped early: {report.stopped}; {counted(report.left, 'message')} "
                   f"{'stays' if report.left == 1 else 'stay'} queued for the next send",
                   err=True)
    if quiet:
        return
    click.echo(f"Sent {report.sent}, deferred {report.deferred}, failed {report.failed} "
               f"(of {report.due} due).")
    later = []
    one = {n: n == 1 for n in (report.waiting, report.left, report.recovered)}
    if report.waiting:
        later.append(f"{report.waiting} " + ("waits for its" if one[report.waiting]
                                             else "wait for their") + " retry time")
    if report.left and not report.stopped:
        later.append(f"{report.left} {'is' if one[report.left] else 'are'} over this run's cap")
    if report.recovered:
        later.append(f"{report.recovered} sent by an interrupted send "
                     f"{'was' if one[report.recovered] else 'were'} recorded")
    if report.withdrawn:
        later.append(f"{report.withdrawn} withdrawn (outbox/withdrawn/): their subscribers "
                     "left the list after the messages were written")
    if later:
        click.echo("; ".join(later).capitalize() + ".")
