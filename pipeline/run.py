"""One run of the main job, top to bottom: collect → summarise → feeds → new → digest → outbox."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from pipeline.atomic import write_if_changed
from pipeline.collect import collect_articles
from pipeline.config import Config, load_config, load_secret
from pipeline.feeds import render_feeds
from pipeline.ledger import Ledger, open_ledger
from pipeline.lock import site_lock
from pipeline.models import Article, RunReport, Subscriber
from pipeline.subscribers import load_subscribers
from pipeline.summarise import summarise

log = logging.getLogger("pipeline")


def run(site: Path, now: datetime | None = None, *, wait: float = 0.0) -> RunReport:
    """The cron job. Raises ConfigError, TemplateError or Locked before writing anything."""
    now = now or datetime.now(UTC)
    config = load_config(site)
    with site_lock(config.state_dir, wait), open_ledger(config.state_dir) as ledger:
        run_id = ledger.start_run(now)
        try:
            report = _run(config, ledger, now)
        except BaseException as exc:
            ledger.finish_run(run_id, datetime.now(UTC), "failed", f"{type(exc).__name__}: {exc}")
            raise
        ledger.finish_run(run_id, datetime.now(UTC), "ok", report.outcome)
    return report


def _run(config: Config, ledger: Ledger, now: datetime) -> RunReport:
    articles, subscribers, report = _gather(config, now)
    for name, data in render_feeds(articles, config).items():
        if write_if_changed(config.public_dir / name, data):
            report.feeds_changed.append(name)
    log.info("feeds: %s", ", ".join(report.feeds_changed) or "unchanged")

    digest = ledger.open_digest()  # a digest a crashed run left unfinished comes first
    if digest is None:
        new, passed_over = _unsent(articles, ledger, config)
        if new and not _cadence_allows(ledger, config, now):
            report.held_back = len(new)
            return report
        if not new:
            return report
        from pipeline.digest import render_digest, subject_for  # heavy imports: only when needed

        html, text = render_digest(new, now, config)
        digest = ledger.create_digest(now, subject_for(new, now, config), html, text,
                                      [a.slug for a in new], [a.slug for a in passed_over])
        log.info("digest %d: built with %d entries", digest.id, len(new))
    else:
        log.info("digest %d: finishing what an earlier run started", digest.id)
    report.digest_id, report.new = digest.id, len(digest.slugs)
    from pipeline.outbox import write_outbox

    report.written = write_outbox(digest, subscribers, config, ledger,
                                  load_secret(config.state_dir), now)
    return report


def plan(site: Path, now: datetime | None = None) -> RunReport:
    """What `run` would do now, writing nothing: for --dry-run."""
    now = now or datetime.now(UTC)
    config = load_config(site)
    articles, _, report = _gather(config, now)
    for name, data in render_feeds(articles, config).items():
        path = config.public_dir / name
        if not path.exists() or path.read_bytes() != data:
            report.feeds_changed.append(name)
    with open_ledger(config.state_dir, read_only=True) as ledger:
        digest = ledger.open_digest()
        if digest is not None:
            report.digest_id, report.new = digest.id, len(digest.slugs)
            report.written = report.subscribers - len(ledger.written_addresses(digest.id))
            return report
        new, _ = _unsent(articles, ledger, config)
        if new and not _cadence_allows(ledger, config, now):
            report.held_back = len(new)
        else:
            report.new, report.written = len(new), report.subscribers if new else 0
            report.new_titles = [a.title for a in new]
    return report


def _gather(config: Config, now: datetime) -> tuple[list[Article], list[Subscriber], RunReport]:
    articles, problems = collect_articles(config, now)
    articles = [summarise(a) for a in articles]
    subscribers, subscriber_problems = load_subscribers(
        config.subscribers_file, config.subscribers_file.relative_to(config.site_dir))
    log.info("collected %d entries, %d subscribers", len(articles), len(subscribers))
    report = RunReport(problems=[*config.warnings, *problems, *subscriber_problems],
                       published=len(articles), subscribers=len(subscribers))
    return articles, subscribers, report


def _unsent(articles: list[Article], ledger: Ledger, config: Config
            ) -> tuple[list[Article], list[Article]]:
    """(the next digest's entries, older ones passed over by max_articles); newest first."""
    sent = ledger.sent_slugs()
    unsent = [a for a in articles if a.slug not in sent]
    return unsent[: config.max_articles], unsent[config.max_articles:]


def _cadence_allows(ledger: Ledger, config: Config, now: datetime) -> bool:
    """At most one digest per calendar day or ISO week on the site's clock, if so configured."""
    last = ledger.last_digest()
    if config.cadence == "every run" or last is None:
        return True
    then, today = last.created.astimezone(config.timezone), now.astimezone(config.timezone)
    if config.cadence == "daily":
        return today.date() > then.date()
    return today.isocalendar()[:2] > then.isocalendar()[:2]
