"""One run of the main job, top to bottom: collect → feeds → new → digest → outbox.

A cron run every few minutes usually finds nothing to do; it must then cost little more than an
interpreter start. So: unchanged entries come from the ledger's cache, feeds are rendered only
when their inputs changed, and the heavy libraries are imported only on the paths that use them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline import __version__
from pipeline.core.config import CONFIG_NAME, Config, load_config
from pipeline.core.errors import ConfigError, Problem
from pipeline.core.models import Article, RunReport
from pipeline.delivery.transport import unknown_tables
from pipeline.entries.collect import collect_articles, scan
from pipeline.publishing.feed_types import FEEDS, feed_entries
from pipeline.state.ledger import LEDGER_NAME, Ledger, open_ledger
from pipeline.state.lock import site_lock
from pipeline.state.problems import note as note_problems

log = logging.getLogger("pipeline")
CADENCE_SINCE = "cadence_since"  # the timed digest.cadence and when a run first saw it
HUB_OWED = "websub_owed"  # the ledger's note of feed URLs the hub has not been told about yet
FEEDS_MADE_OF = "feeds"  # the ledger's note of what each feed was last written from


def run(site: Path, now: datetime | None = None, *, wait: float = 0.0) -> RunReport:
    """The cron job. Raises ConfigError, TemplateError or Locked before writing anything."""
    now = now or datetime.now(UTC)
    config = load_config(site)
    with site_lock(config.state_dir, wait), open_ledger(config.state_dir) as ledger:
        _check_history(config, ledger)
        run_id = ledger.start_run(now)
        try:
            _prune(config, ledger, now)
            report = _run(config, ledger, now)
            report.fresh_problems = note_problems(ledger, "run", report.problems)
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
    articles, problems = collect_articles(config, now, ledger, files, upcoming,
                                          meanwhile=lambda: _import_publishing(config))
    log.info("collected %d entries", len(articles))
    report = RunReport(problems=[*config.warnings, *unknown_tables(config), *scan_problems,
                                 *problems, *list_problems],
                       published=len(articles), upcoming=sorted(upcoming))
    report = _publish(articles, report, config, ledger, now)
    if not report.problems and not report.held_back:
        # Until an entry file, the config or the code changes, or the next dated entry is due,
        # runs can stop right here: nothing they could do would differ from this one.
        ledger.set_state("quiet", quiet)
        ledger.set_state("next_due", min(upcoming).isoformat() if upcoming else "")
        ledger.set_state("published", str(len(articles)))
    return report


def _import_publishing(config: Config) -> None:
    """What _publish imports, imported while a fork reads entries (a first run over a large
    archive): the fork then takes a larger share of the reading, so the imports cost about
    half their time. The digest's first-render costs likewise (digest.warm_up)."""
    import pipeline.core.atomic
    import pipeline.delivery.settings
    import pipeline.mail.compact
    import pipeline.mail.outbox
    import pipeline.mail.segments
    import pipeline.publishing.digest
    import pipeline.publishing.feeds
    import pipeline.publishing.shown_bodies
    import pipeline.publishing.web_copies
    import pipeline.state.secret
    import pipeline.state.subscribers

    pipeline.publishing.digest.warm_up(config)


def _fingerprint(config: Config, parts: Iterable[str]) -> str:
    """A hash of the code's version, the config file and `parts`: what a stored result (the
    feeds, a quiet run) was made from."""
    return _fingerprint_of(config, parts).hexdigest()


def _fingerprint_of(config: Config, parts: Iterable[str]) -> hashlib._Hash:
    digest = hashlib.sha256(__version__.encode())
    digest.update((config.site_dir / CONFIG_NAME).read_bytes())
    for part in parts:
        digest.update(f"\0{part}".encode())
    return digest


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
    allowed, report.next_digest = next_digest(ledger, config, now, remember=True)
    if digest is None:
        new, passed_over = ledger.unsent(articles, config.max_articles)
        report.problems += _clock_problems(config, ledger, now)
        if new and not allowed:
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
    from pipeline.delivery.settings import run_signer

    signer, dkim_problems = run_signer(config)  # each message signed as it is written
    report.problems += dkim_problems
    report.written = write_outbox(digest, book.active(), config, ledger,
                                  load_secret(config.state_dir), now,
                                  renditions.for_subscriber, fresh=fresh, signer=signer)
    from pipeline.mail.compact import CompactStore

    if CompactStore.of(config.outbox_dir, digest).exists():
        report.written_to = "outbox/compact"
    return report


def _refresh_feeds(articles: list[Article], config: Config, ledger: Ledger) -> list[str]:
    """Render and write each feed only when what it is made of changed (after one new entry:
    the site feeds and its category's, not the other categories'); returns the files whose
    bytes changed."""
    shown = articles[: config.feed_max_items]
    made_of = _feed_fingerprints(shown, config)
    kept = _kept_feed_fingerprints(ledger)
    stale = {path for path, fingerprint in made_of.items()
             if kept.get(path) != fingerprint or not (config.public_dir / path).exists()}
    if not stale:
        return []
    from pipeline.core.atomic import write_if_changed
    from pipeline.publishing.feeds import render_feeds
    from pipeline.publishing.shown_bodies import keep_bodies, recall_bodies

    recall_bodies(shown, ledger)  # most were shown last time: no Markdown to render again
    changed = [name for name, data in render_feeds(shown, config, only=stale).items()
               if write_if_changed(config.public_dir / name, data)]
    keep_bodies(shown, ledger)
    ledger.set_state(FEEDS_MADE_OF, json.dumps(made_of, sort_keys=True))
    return changed


def _kept_feed_fingerprints(ledger: Ledger) -> dict[str, str]:
    """What each feed was last written from (empty if unknown, e.g. kept by a version that
    stored one fingerprint for all: every feed is then written once more)."""
    try:
        kept = json.loads(ledger.get_state(FEEDS_MADE_OF) or "{}")
    except ValueError:
        return {}
    return kept if isinstance(kept, dict) else {}


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
    from pipeline.publishing.public_paths import ARCHIVE_PAGE
    from pipeline.publishing.web_copies import render_archive

    page = config.public_dir / ARCHIVE_PAGE
    if digest_built or not page.exists():
        from pipeline.core.atomic import write_if_changed

        write_if_changed(page, render_archive(ledger.digest_listing(), config))


def _feed_fingerprints(shown: list[Article], config: Config) -> dict[str, str]:
    """{feed path: everything its bytes depend on}: the code, the config, the files of the
    entries it shows."""
    common = _fingerprint_of(config, ())
    made_of = {}
    for path, entries in feed_entries(shown).items():
        digest = common.copy()
        for a in entries:
            digest.update(f"\0{a.path}\0{a.checksum}".encode())
        made_of[path] = digest.hexdigest()
    return made_of


def plan(site: Path, now: datetime | None = None) -> RunReport:
    """What `run` would do now, writing nothing: for --dry-run."""
    now = now or datetime.now(UTC)
    config = load_config(site)
    upcoming: list[datetime] = []
    articles, problems = collect_articles(config, now, upcoming=upcoming)
    report = RunReport(problems=[*config.warnings, *unknown_tables(config), *problems],
                       published=len(articles), upcoming=sorted(upcoming))
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
        new, _ = ledger.unsent(articles, config.max_articles)
        allowed, report.next_digest = next_digest(ledger, config, now)
        if new and not allowed:
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


def next_digest(ledger: Ledger, config: Config, now: datetime, *, remember: bool = False
                ) -> tuple[bool, datetime | None]:
    """(whether a digest may be built now, when the next one may, on the site's clock: None
    for "every run").

    A timed schedule counts from when it was first seen (kept in the ledger), so one set up
    on a Friday for Tuesdays does not send at once; `remember` records that moment."""
    schedule = config.schedule
    last = ledger.last_digest()
    since = now
    if schedule.timed:
        seen = (ledger.get_state(CADENCE_SINCE) or "").split("\n")
        if len(seen) == 2 and seen[0] == config.cadence:
            since = datetime.fromisoformat(seen[1])
        elif remember:
            ledger.set_state(CADENCE_SINCE, f"{config.cadence}\n{now.isoformat()}")
    # A last digest dated more than a day ahead was made with a wrong clock: it holds nothing
    # back (_clock_problems reports it).
    from pipeline.state.upkeep import FUTURE_SLACK

    created = last.created if last and last.created <= now + FUTURE_SLACK else None
    due = schedule.next_due(created, since, now, config.timezone)
    return (schedule.allows(created, since, now, config.timezone),
            due.astimezone(config.timezone) if due else None)


def _clock_problems(config: Config, ledger: Ledger, now: datetime) -> list[Problem]:
    """A warning when the last digest is dated far ahead: made while the clock was wrong.
    (`status` lists every such time; a run names the one that would have held it back.)"""
    from pipeline.state.upkeep import FUTURE_SLACK

    last = ledger.last_digest()
    if last is None or last.created <= now + FUTURE_SLACK:
        return []
    return [Problem(config.state_dir.relative_to(config.site_dir) / LEDGER_NAME, "clock",
                    f"the last digest (#{last.id}) is dated {last.created:%Y-%m-%d %H:%M %Z}, "
                    f"{(last.created - now).days} days ahead of this machine's clock",
                    "check the clock (timedatectl); the digest cadence is not held back by it",
                    warning=True)]


PRUNED = "pruned"  # the ledger's note of when retention was last applied


def _prune(config: Config, ledger: Ledger, now: datetime) -> None:
    """Apply retention at most once a day: messages and delivery details older than
    retention.days leave the outbox and the ledger (a no-op run stays one lookup)."""
    last = ledger.get_state(PRUNED)
    if last and timedelta(0) <= now - datetime.fromisoformat(last) < timedelta(days=1):
        return
    from pipeline.mail.outbox_folders import Outbox
    from pipeline.state.upkeep import prune

    before = now - timedelta(days=config.retention_days)
    files = Outbox(config.outbox_dir).prune(before)
    rows = prune(ledger, before)
    ledger.set_state(PRUNED, now.isoformat())
    log.info("retention: %d files and %d delivery details older than %d days removed", files,
             rows.deliveries + rows.messages + rows.notices, config.retention_days)


def _check_history(config: Config, ledger: Ledger) -> None:
    """Stop (ConfigError) when the ledger knows no digest but the site shows it sent some:
    the ledger was deleted or lost, and a run now would send the last digest to everyone
    again and mail people who unsubscribed."""
    if ledger.digest_count():
        return
    from pipeline.mail.outbox_folders import Outbox
    from pipeline.publishing.public_paths import ARCHIVE_PAGE

    seen = []
    # The archive page, not a web copy: a digest's web copy is written before the ledger
    # records the digest, so a first run killed in between leaves one behind with nothing sent;
    # the archive page is written once the ledger holds a digest.
    if (config.public_dir / ARCHIVE_PAGE).exists():
        seen.append("public/digests/")
    if Outbox(config.outbox_dir).has_digest_history():
        seen.append("outbox/")
    if seen:
        raise ConfigError([Problem(
            config.state_dir.relative_to(config.site_dir) / LEDGER_NAME, "ledger",
            f"is missing or empty, but this site has sent digests before ({', '.join(seen)})",
            "restore it from a backup: `newsletter restore FILE` (see the README's Backups); "
            "a run now would send the last digest again and mail people who left. To start "
            "over on purpose, move public/digests/ and outbox/ away first")])
