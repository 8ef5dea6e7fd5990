"""`newsletter preview`: the next digest (or the last one) as a subscriber will see it, written
to preview/ and optionally photographed by headless Chromium. Reads the ledger, never writes it;
touches neither the feeds nor the outbox, so it is safe beside a running cron job.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline.core.atomic import write_atomic
from pipeline.core.config import Config, load_config
from pipeline.core.errors import Problem
from pipeline.publishing.digest import PLACEHOLDERS, render_digest, size_problems, subject_for
from pipeline.state.ledger import open_ledger

PREVIEW_DIR = "preview"
SAMPLE_ADDRESS = "reader@example.org"  # a preview is nobody's message


class NothingToPreview(Exception):
    """There is no digest to show: the message says what to do instead."""


@dataclass
class Preview:
    what: str  # "the next digest" / "the last digest (#3)"
    subject: str
    entries: int
    html_path: Path
    text_path: Path
    html_bytes: int
    problems: list[Problem] = field(default_factory=list)


def build_preview(site: Path, *, last: bool = False, now: datetime | None = None) -> Preview:
    """Render and write preview/digest.html and preview/digest.txt; raise NothingToPreview."""
    now = now or datetime.now(UTC)
    config = load_config(site)
    problems = list(config.warnings)
    with open_ledger(config.state_dir, read_only=True) as ledger:
        # A digest a crashed run left unfinished is what goes out next, exactly as frozen.
        digest = ledger.last_digest() if last else ledger.open_digest()
        if last and digest is None:
            raise NothingToPreview("no digest has been built yet — run `newsletter preview` "
                                   "without --last to see the next one")
        if digest is not None:
            what = f"the {'last' if last else 'unfinished'} digest (#{digest.id})"
            subject, html_part, text_part = digest.subject, digest.html, digest.text
            entries = len(digest.slugs)
        else:
            from pipeline.entries.collect import collect_articles
            articles, entry_problems = collect_articles(config, now)
            problems += entry_problems
            new = ledger.unsent(articles, config.max_articles)[0]
            if not new:
                raise NothingToPreview(
                    "nothing new for the next digest: every published entry was in an earlier "
                    "one — `newsletter preview --last` shows the last digest")
            what, subject, entries = "the next digest", subject_for(new, now, config), len(new)
            html_part, text_part = render_digest(new, now, config)
    problems += size_problems(html_part, config)
    folder = config.site_dir / PREVIEW_DIR
    html_bytes = _filled(html_part, config, escape=True).encode("utf-8")
    write_atomic(folder / "digest.html", html_bytes)
    write_atomic(folder / "digest.txt", _filled(text_part, config, escape=False).encode("utf-8"))
    return Preview(what, subject, entries, folder / "digest.html", folder / "digest.txt",
                   len(html_bytes), problems)


def _filled(part: str, config: Config, *, escape: bool) -> str:
    """The placeholders filled as for a sample subscriber (the token is visibly not real)."""
    values = {
        PLACEHOLDERS["email"]: SAMPLE_ADDRESS,
        PLACEHOLDERS["unsubscribe_url"]: config.unsubscribe_url.format(
            site_url=config.site_url, token="PREVIEW"),
    }
    for placeholder, value in values.items():
        part = part.replace(placeholder, html.escape(value) if escape else value)
    return part
