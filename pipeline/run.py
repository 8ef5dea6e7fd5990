"""One run of the main job, top to bottom: collect → feeds → new → digest → outbox.

A cron run every few minutes usually finds nothing to do; it must then cost little more than an
interpreter start. So: unchanged entries come from the ledger's cache, feeds are rendered only
when their inputs changed, and the heavy libraries are imported only on the paths that use them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from pipeline import __version__
from pipeline.core.config import CONFIG_NAME, Config, load_config
from pipeline.core.errors import Problem
from pipeline.core.models import Article, RunReport
from pipeline.entries.collect import collect_articles, scan
from pipeline.publishing.feed_types import FEEDS
from pipeline.state.ledger import Ledger, open_ledger
from pipeline.state.lock import site_lock

log = logging.getLogger("pipeline")
HUB_OWED = "websub_owed"  # the ledger's note of feed URLs the hub has not been told about yet


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
    scan_problems: list[Problem] = []
    files = scan(config, scan_problems)
    quiet = _quiet_key(files, config)
    if _still_quiet(quiet, config, ledger, now):
        log.info("nothing changed since the last run")
        return RunReport(published=int(ledger.get_state("published") or 0))
    from pipeline.subscribers.manage import sync_site_csv

    # Before anything is written: a list that cannot be read stops the run (ConfigError) rather
    # than let a digest go to no one and count its entries as sent.
    list_problems = sync_site_csv(config, ledger, now)
    upcoming: list[datetime] = []
    articles, problems = collect_articles(config, now, ledger, files, upcoming)
    log.info("collected %d entries", len(articles))
    report = RunReport(problems=[*config.warnings, *scan_problems, *problems, *list_problems],
                       published=len(articles))
    report = _publish(articles, report, config, ledger, now)
    if not report.problems and not report.held_back:
        # Until an entry file, the config or the code changes, or the next dated entry is due,
        # runs can stop right here: nothing they could do would differ from this one.
        ledger.set_state("quiet", quiet)
        ledger.set_state("next_due", min(upcoming).isoformat() if upcoming else "")
        ledger.set_state("published", str(len(articles)))
    return report


def _fingerprint(config: Config, parts: Iterable[str]) -> str:
    """A hash of the code's version, the config file and `parts`: what a stored result (the
    feeds, a quiet run) was made from."""
    digest = hashlib.sha256(__version__.encode())
    digest.update((config.site_dir / CONFIG_NAME).read_bytes())
    for part in parts:
        digest.update(f"\0{part}".encode())
    return digest.hexdigest()


def _quiet_key(files: list[tuple[str, os.stat_result]], config: Config) -> str:
    try:  # an edited list is imported (and checked) by the next run, not left for later
        stat = config.subscribers_file.stat()
        subscribers = f"{stat.st_size}\0{stat.st_mtime_ns}"
    except FileNotFoundError:
        subscribers = "-"
    return _fingerprint(config, [subscribers, *(f"{key}\0{stat.st_size}\0{stat.st_mtime_ns}"
                                                for key, stat in files)])


def _still_quiet(quiet: str, config: Config, ledger: Ledger, now: datetime) -> bool:
    if ledger.get_state("quiet") != quiet or ledger.open_digest() is not None:
        return False
    next_due = ledger.get_state("next_due")
    if next_due and now >= datetime.fromisoformat(next_due):
        return False
    return _feeds_present(config)


def _feeds_present(config: Config) -> bool:
    return all((config.public_dir / feed.name).exists() for feed in FEEDS)


def _publish(articles: list[Article], report: RunReport, config: Config, ledger: Ledger,
             now: datetime) -> RunReport:
    report.feeds_changed = _refresh_feeds(articles, config, ledger)
    log.info("feeds: %s", ", ".join(report.feeds_changed) or "unchanged")
    if config.websub_hub:
        report.problems += _tell_hub(report.feeds_changed, config, ledger)

    digest = ledger.open_digest()  # a digest a crashed run left unfinished comes first
    fresh = digest is None
    if digest is None:
        new, passed_over = _unsent(articles, ledger, config)
        if new and not _cadence_allows(ledger, config, now):
            report.held_back = len(new)
            return report
        if not new:
            return report
        from pipeline.publishing.digest import render_digest, size_problems, subject_for

        html, text = render_digest(new, now, config)  # every entry: for those who chose none
        report.problems += size_problems(html, config)
        # Before the digest is frozen: no message may link to a web copy that is not there.
        _write_web_copy(new, now, config)
        digest = ledger.create_digest(now, subject_for(new, now, config), html, text,
                                      [a.slug for a in new], [a.slug for a in passed_over])
        log.info("digest %d: built with %d entries", digest.id, len(new))
        _refresh_archive(config, ledger, digest_built=True)
    else:
        log.info("digest %d: finishing what an earlier run started", digest.id)
        _refresh_archive(config, ledger, digest_built=False)
    report.digest_id, report.new = digest.id, len(digest.slugs)
    from pipeline.mail.outbox import write_outbox
    from pipeline.mail.segments import Renditions
    from pipeline.state.secret import load_secret
    from pipeline.state.subscribers import SubscriberBook

    book = SubscriberBook(ledger)
    renditions = Renditions(digest, articles, config, ledger)
    for segment in sorted(book.active_segments()):  # freeze every rendition before writing
        renditions.for_segment(segment)
    report.written = write_outbox(digest, book.active(), config, ledger,
                                  load_secret(config.state_dir), now,
                                  renditions.for_subscriber, fresh=fresh)
    return report


def _refresh_feeds(articles: list[Article], config: Config, ledger: Ledger) -> list[str]:
    """Render and write the feeds only when what they are made of changed; returns the files
    whose bytes changed."""
    shown = articles[: config.feed_max_items]
    fingerprint = _feed_fingerprint(shown, config)
    if _feeds_present(config) and ledger.get_state("feeds") == fingerprint:
        return []
    from pipeline.core.atomic import write_if_changed
    from pipeline.publishing.feeds import render_feeds
    from pipeline.publishing.shown_bodies import keep_bodies, recall_bodies

    recall_bodies(shown, ledger)  # most were shown last time: no Markdown to render again
    changed = [name for name, data in render_feeds(shown, config).items()
               if write_if_changed(config.public_dir / name, data)]
    keep_bodies(shown, ledger)
    ledger.set_state("feeds", fingerprint)
    return changed


def _tell_hub(changed: list[str], config: Config, ledger: Ledger) -> list[Problem]:
    """Ping the WebSub hub about the feeds that changed, and again about those an earlier
    run could not tell it (kept in the ledger until the hub takes them)."""
    owed = set((ledger.get_state(HUB_OWED) or "").split())
    urls = sorted(owed | {config.site_url + name for name in changed})
    if not urls:
        return []
    from pipeline.publishing.websub import ping_hub

    problems = ping_hub(config.websub_hub, urls)
    if problems or owed:
        ledger.set_state(HUB_OWED, "\n".join(urls) if problems else "")
    return problems


def _write_web_copy(new: list[Article], now: datetime, config: Config) -> None:
    from pipeline.core.atomic import write_if_changed
    from pipeline.publishing.digest import render_web_html
    from pipeline.publishing.web_copies import web_copy

    path, data = web_copy(render_web_html(new, now, config), now, new[0].slug, config)
    write_if_changed(config.public_dir / path, data)


def _refresh_archive(config: Config, ledger: Ledger, *, digest_built: bool) -> None:
    """The archive page lists every digest: rewritten when one is added (or it is missing)."""
    from pipeline.publishing.web_copies import ARCHIVE_PAGE, render_archive

    page = config.public_dir / ARCHIVE_PAGE
    if digest_built or not page.exists():
        from pipeline.core.atomic import write_if_changed

        write_if_changed(page, render_archive(ledger.digest_listing(), config))


def _feed_fingerprint(articles: list[Article], config: Config) -> str:
    """Everything the feeds' bytes depend on: the code, the config, each shown entry's file."""
    return _fingerprint(config, (f"{a.path}\0{a.checksum}" for a in articles))


def plan(site: Path, now: datetime | None = None) -> RunReport:
    """What `run` would do now, writing nothing: for --dry-run."""
    now = now or datetime.now(UTC)
    config = load_config(site)
    articles, problems = collect_articles(config, now)
    report = RunReport(problems=[*config.warnings, *problems], published=len(articles))
    from pipeline.publishing.feeds import render_feeds

    for name, data in render_feeds(articles, config).items():
        path = config.public_dir / name
        if not path.exists() or path.read_bytes() != data:
            report.feeds_changed.append(name)
    with open_ledger(config.state_dir, read_only=True) as ledger:
        report.subscribers = _subscriber_count(config, ledger, report.problems)
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


def _subscriber_count(config: Config, ledger: Ledger, problems: list[Problem]) -> int:
    """Active subscribers once subscribers.csv is imported (an upper bound: segments whose
    categories have nothing new get no message)."""
    from pipeline.core.models import ACTIVE
    from pipeline.state.subscribers import SubscriberBook
    from pipeline.subscribers.csv_file import read_rows

    book = SubscriberBook(ledger)
    count = book.counts()[ACTIVE]
    shown = config.subscribers_file.relative_to(config.site_dir)
    for row in read_rows(config.subscribers_file, problems, shown):
        if row.status == ACTIVE and book.get(row.email) is None:
            count += 1
    return count


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
