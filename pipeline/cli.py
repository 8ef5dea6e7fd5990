"""The `newsletter` command: parse options, call the pipeline, map outcomes to exit codes."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from pipeline import __version__
from pipeline.errors import ConfigError, Problem, TemplateError

# Exit codes (documented in the README); from sysexits where one fits.
EXIT_OK = 0
EXIT_REJECTED = 1  # the run finished, but some entries (or subscriber rows) were left out
EXIT_SOFTWARE = 70  # unexpected failure
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
def run(site: Path, quiet: bool) -> None:
    """Collect entries, write the feeds to public/ and new digests to outbox/."""
    from pipeline.run import run as run_pipeline

    try:
        report = run_pipeline(site.resolve())
    except (ConfigError, TemplateError) as exc:
        _fail(exc, EXIT_CONFIG)
    _print_problems(report.problems)
    if not quiet:
        feeds = ", ".join(report.feeds_changed) or "unchanged"
        click.echo(f"{report.published} published entries; feeds {feeds}.")
        if report.digest_id is None:
            click.echo("Nothing new for the digest; no messages written.")
        else:
            click.echo(f"Digest {report.digest_id}: {report.new} entries, "
                       f"{report.written} messages written to outbox/new.")
    sys.exit(EXIT_REJECTED if report.rejected else EXIT_OK)


@cli.command()
@site_option
def check(site: Path) -> None:
    """Validate the config, every entry, the subscriber list and the templates; write nothing."""
    from pipeline.collect import collect_articles
    from pipeline.config import load_config
    from pipeline.digest import render_digest
    from pipeline.subscribers import load_subscribers
    from pipeline.summarise import summarise

    site = site.resolve()
    try:
        config = load_config(site)
    except ConfigError as exc:
        _fail(exc, EXIT_CONFIG)
    now = datetime.now(UTC)
    articles, problems = collect_articles(config, now)
    _, subscriber_problems = load_subscribers(config.subscribers_file,
                                              config.subscribers_file.relative_to(site))
    problems = [*config.warnings, *problems, *subscriber_problems]
    if articles:
        try:
            render_digest([summarise(a) for a in articles[: config.max_articles]], now, config)
        except TemplateError as exc:
            problems.append(Problem("templates", "template", str(exc), "fix the template"))
    _print_problems(problems)
    errors = [p for p in problems if not p.warning]
    click.echo(f"{len(articles)} entries ready, {len(errors)} problems.", err=bool(errors))
    sys.exit(1 if errors else EXIT_OK)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Create a working site in DIRECTORY: config, one sample article, subscribers.csv."""
    from pipeline.scaffold import scaffold

    try:
        created = scaffold(directory)
    except FileExistsError as exc:
        click.echo(f"{exc}: already exists — choose an empty or new folder", err=True)
        sys.exit(1)
    for path in created:
        click.echo(f"created {path}")
    click.echo(f"Next: edit {directory / 'newsletter.toml'}, then run "
               f"`newsletter run --site {directory}`.")


def _print_problems(problems: list[Problem]) -> None:
    for problem in problems:
        click.echo(str(problem), err=True)


def _fail(exc: Exception, code: int) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(code)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except Exception as exc:  # the last resort: one line, not a traceback, for cron's mail
        click.echo(f"unexpected failure: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_SOFTWARE)
