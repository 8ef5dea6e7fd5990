"""The `newsletter subscribers …`, `unsubscribe` and `serve` commands (cli.py stays short)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.cli.common import EXIT_CONFIG, EXIT_LOCKED, EXIT_OK, EXIT_REJECTED, site_option
from pipeline.core.errors import ConfigError
from pipeline.core.wording import counted

if TYPE_CHECKING:  # `newsletter run` imports this module: keep its start cheap
    from pipeline.core.config import Config
    from pipeline.state.ledger import Ledger


@contextmanager
def _site(site: Path) -> Iterator[tuple[Config, Ledger]]:
    from pipeline.core.config import load_config
    from pipeline.state.ledger import open_ledger

    try:
        config = load_config(site.resolve())
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        with open_ledger(config.state_dir) as ledger:
            yield config, ledger
    except ConfigError as exc:  # e.g. a weak site secret, found when a confirmation is made
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


def _address(raw: str) -> str:
    from pipeline.core.addresses import normalise_address

    try:
        return normalise_address(raw)
    except ValueError as exc:
        raise click.BadParameter(f"{raw!r}: {exc}") from None


@click.group()
def subscribers() -> None:
    """Manage the subscriber list (kept in the ledger; subscribers.csv is import/export)."""


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--reactivate", is_flag=True,
              help="Put back addresses that unsubscribed or bounced if the file says active.")
@site_option
def import_(file: Path, reactivate: bool, site: Path) -> None:
    """Import FILE (CSV: email, name, categories, status); bad rows are reported and skipped."""
    from pipeline.subscribers.manage import import_file

    with _site(site) as (config, ledger):
        report, problems = import_file(config, ledger, file, datetime.now(UTC),
                                       reactivate=reactivate)
    for problem in problems:
        click.echo(str(problem), err=True)
    rejected = [p for p in problems if not p.warning]
    click.echo(f"{report.added} added, {report.status_changed} taken off the list, "
               f"{report.reactivated} re-activated, {report.unchanged} unchanged, "
               f"{counted(len(rejected), 'row')} rejected.")
    if report.kept_out:
        one = len(report.kept_out) == 1
        click.echo(f"{counted(len(report.kept_out), 'address', 'addresses')} marked active in "
                   "the file had left the list and will stay off it (pass --reactivate only if "
                   f"{'its owner' if one else 'their owners'} asked to come back).")
    sys.exit(EXIT_REJECTED if rejected else EXIT_OK)


@subscribers.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@site_option
def export(file: Path | None, site: Path) -> None:
    """Write the whole list as CSV to FILE (or stdout), in the format `import` reads, with
    each signup's consent (time, source, form page, confirmed) in extra columns."""
    from pipeline.state.subscribers import SubscriberBook
    from pipeline.subscribers.csv_file import write_csv

    with _site(site) as (_, ledger):
        book = SubscriberBook(ledger)
        if file is None:
            write_csv(sys.stdout, book.everyone(), book.consents())
            return
        with file.open("w", encoding="utf-8", newline="") as out:
            count = write_csv(out, book.everyone(), book.consents())
    if file:
        click.echo(f"{counted(count, 'subscriber')} written to {file}.")


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default=None, help="The subscriber's name.")
@click.option("--categories", default=None,
              help="Topics, separated by `;` (\"\": every entry).")
@site_option
def add(email: str, name: str | None, categories: str | None, site: Path) -> None:
    """Add EMAIL (pending until confirmed, with double opt-in), or change what is given of a
    known one's name and topics."""
    from pipeline.core.models import parse_categories
    from pipeline.entries.collect import published_categories
    from pipeline.subscribers.manage import add as add_subscriber

    address = _address(email)
    chosen = parse_categories(categories) if categories is not None else None
    with _site(site) as (config, ledger):
        now = datetime.now(UTC)
        known = published_categories(config, now, ledger)
        keys = {c.casefold() for c in known}
        for topic in chosen or ():
            if topic.casefold() not in keys:
                click.echo(f"warning: topic {topic!r} is not a category of any published entry "
                           f"(known: {', '.join(known) or 'none yet'}) — check the spelling: "
                           "a subscriber gets only entries in their topics", err=True)
        row, new = add_subscriber(config, ledger, address, now,
                                  name=" ".join(name.split()) if name is not None else None,
                                  categories=chosen)
    click.echo(f"{'added' if new else 'updated'} {row.email} ({row.status})"
               + (": a confirmation message is in the outbox" if new and
                  row.status == "pending" else ""))


@subscribers.command("remove")
@click.argument("email")
@site_option
def remove(email: str, site: Path) -> None:
    """Erase EMAIL from the whole site: the list, the ledger, the outbox, subscribers.csv
    (to stop mail but remember it, use unsubscribe)."""
    from pipeline.state.lock import Locked
    from pipeline.subscribers.erasure import erase

    address = _address(email)
    with _site(site) as (config, ledger):
        try:
            report = erase(config, ledger, address, datetime.now(UTC))
        except Locked as exc:
            click.echo(f"error: {exc}; nothing was erased — try again when it is done",
                       err=True)
            sys.exit(EXIT_LOCKED)
    if not report.found:
        click.echo(f"{address} is not on the list", err=True)
        sys.exit(EXIT_REJECTED)
    click.echo(f"removed {address}: {report.ledger_rows} ledger rows, {report.files} outbox "
               f"files, {report.csv_rows} subscribers.csv rows")
    if not report.wal_truncated:
        click.echo("warning: another process was reading the ledger, so its WAL could not be "
                   "emptied yet; the next run empties it", err=True)


@subscribers.command("history")
@click.argument("email")
@site_option
def history(email: str, site: Path) -> None:
    """Every status and topic change of EMAIL, oldest first: when, what, and how (one-click,
    page, confirmation, mail request, cli, import, sending, bounce, complaint, signup)."""
    from pipeline.state.subscribers import SubscriberBook

    address = _address(email)
    with _site(site) as (_, ledger):
        book = SubscriberBook(ledger)
        who = book.get(address)
        if who is None:
            click.echo(f"{address} is not on the list", err=True)
            sys.exit(1)
        events = book.history(who.id)
        consent = book.consents().get(who.id)
    click.echo(f"{who.email}: {who.status}"
               + (f", topics: {'; '.join(who.categories)}" if who.categories else ""))
    if consent is not None:
        confirmed = (f", confirmed {consent.confirmed:%Y-%m-%d %H:%M:%S} UTC"
                     if consent.confirmed else ", not confirmed")
        click.echo(f"consent: {consent.at:%Y-%m-%d %H:%M:%S} UTC via {consent.source} on "
                   f"{consent.form or 'an unknown page'}{confirmed}")
    for event in events:
        if event.change == "signup":
            what = f"signup on {event.detail or 'an unknown page'}"
        else:
            what = (f"{event.change}: {event.old or '(new)'} -> {event.new or '(none)'}"
                    + (f" ({event.detail})" if event.detail else ""))
        click.echo(f"{event.at:%Y-%m-%d %H:%M:%S} UTC  {event.source:<12}  {what}")
    if not events:
        click.echo("no recorded changes (they are recorded from this version on)")


@subscribers.command("list")
@site_option
@click.option("--json", "as_json", is_flag=True,
              help="Print the counts as one JSON object (schema in the README).")
def list_(site: Path, as_json: bool) -> None:
    """Counts per status."""
    from pipeline.state.subscribers import SubscriberBook

    with _site(site) as (_, ledger):
        counts = SubscriberBook(ledger).counts()
    if as_json:
        from pipeline.cli.output import emit

        emit("newsletter.subscribers.list/1", {"counts": dict(counts),
                                                "total": sum(counts.values())})
        return
    for status, count in counts.items():
        click.echo(f"{status}: {count}")
    click.echo(f"total: {sum(counts.values())}")


@subscribers.command("process")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@site_option
def process(file: Path, site: Path) -> None:
    """Apply FILE's `unsubscribe ADDRESS` and `bounce ADDRESS` lines."""
    from pipeline.subscribers.manage import process_file

    with _site(site) as (_, ledger):
        report, problems = process_file(ledger, file, datetime.now(UTC))
    for problem in problems:
        click.echo(str(problem), err=True)
    for address in report.unknown:
        click.echo(f"{file}: {address}: not on the list — nothing to do", err=True)
    click.echo(f"{report.unsubscribed} unsubscribed, {report.bounced} bounced, "
               f"{len(report.unknown)} not on the list, {len(problems)} lines rejected.")
    sys.exit(EXIT_REJECTED if problems else EXIT_OK)


@click.command()
@click.argument("email")
@site_option
def unsubscribe(email: str, site: Path) -> None:
    """Unsubscribe EMAIL now (e.g. a request that came by mail); later imports keep it off."""
    from pipeline.subscribers.manage import unsubscribe as unsubscribe_address

    address = _address(email)
    with _site(site) as (_, ledger):
        row = unsubscribe_address(ledger, address, datetime.now(UTC))
    if row is None:
        click.echo(f"{address} is not on the list — nothing to do", err=True)
        sys.exit(EXIT_REJECTED)
    click.echo(f"unsubscribed {row.email}")


@click.command()
@site_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; keep loopback and put the web server in front.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256),
              help="Requests handled at once (idle and slow connections take no thread).")
@click.option("--trusted-proxy", default=None, metavar="ADDRESS",
              help="The proxy in front (e.g. 127.0.0.1) whose X-Forwarded-For names the "
                   "client, for the per-client signup limit.")
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="One line a request on stderr (no tokens, no addresses).")
def serve(site: Path, host: str, port: int, threads: int, trusted_proxy: str | None,
          access_log: bool) -> None:
    """Serve the unsubscribe, preferences, confirmation and signup pages (waitress)."""
    import logging
    import signal

    from pipeline.core.errors import TemplateError
    from pipeline.subscribers.web_app import App
    from pipeline.subscribers.web_server import WebServer

    # A burst queues requests by design (the backlog is sized for it): waitress would warn
    # "Task queue depth is N" once a request while it drains.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    if access_log:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger = logging.getLogger("pipeline.access")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        server = WebServer(App(site.resolve()), host, port, threads, trusted_proxy)
    except (ConfigError, TemplateError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    except OSError as exc:
        click.echo(f"error: cannot listen on {host}:{port}: {exc.strerror}", err=True)
        sys.exit(EXIT_REJECTED)
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown_soon())
    click.echo(f"Serving on http://{host}:{server.server_address[1]}/ with {threads} threads "
               "(Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
