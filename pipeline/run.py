"""One run of the main job, top to bottom: collect → summarise → feeds → new → digest → outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pipeline.atomic import write_if_changed
from pipeline.collect import collect_articles
from pipeline.config import load_config, load_secret
from pipeline.digest import render_digest, subject_for
from pipeline.feeds import render_feeds
from pipeline.ledger import open_ledger
from pipeline.models import RunReport
from pipeline.outbox import write_outbox
from pipeline.subscribers import load_subscribers
from pipeline.summarise import summarise


def run(site: Path, now: datetime | None = None) -> RunReport:
    now = now or datetime.now(UTC)
    config = load_config(site)
    articles, problems = collect_articles(config, now)
    articles = [summarise(a) for a in articles]
    report = RunReport(problems=list(config.warnings) + problems, published=len(articles))

    for name, data in render_feeds(articles, config).items():
        if write_if_changed(config.public_dir / name, data):
            report.feeds_changed.append(name)

    subscribers, subscriber_problems = load_subscribers(
        config.subscribers_file, config.subscribers_file.relative_to(site))
    report.problems.extend(subscriber_problems)
    with open_ledger(config.state_dir) as ledger:
        digest = ledger.open_digest()  # a digest a crashed run left unfinished comes first
        if digest is None:
            sent = ledger.sent_slugs()
            unsent = [a for a in articles if a.slug not in sent]  # newest first
            new, passed_over = unsent[: config.max_articles], unsent[config.max_articles:]
            report.new = len(new)
            if not new:
                return report
            html, text = render_digest(new, now, config)
            digest = ledger.create_digest(now, subject_for(new, now, config), html, text,
                                          [a.slug for a in new], [a.slug for a in passed_over])
        else:
            report.new = len(digest.slugs)
        report.digest_id = digest.id
        secret = load_secret(config.state_dir)
        report.written = write_outbox(digest, subscribers, config, ledger, secret, now)
    return report
