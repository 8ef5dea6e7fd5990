"""`newsletter status`: the last run, the last digest, and what is waiting. Reads only."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pipeline.core.config import load_config
from pipeline.entries.collect import collect_articles
from pipeline.mail.compose import message_prefix
from pipeline.mail.outbox import SENT, Outbox
from pipeline.state.ledger import open_ledger
from pipeline.state.lock import is_locked
from pipeline.state.subscribers import SubscriberBook


def site_status(site: Path, now: datetime | None = None) -> list[str]:
    now = now or datetime.now(UTC)
    config = load_config(site)
    articles, _ = collect_articles(config, now)
    outbox = Outbox(config.outbox_dir)
    lines = []
    with open_ledger(config.state_dir, read_only=True) as ledger:
        last = ledger.last_run()
        if last is None:
            lines.append("Last run: never")
        else:
            started, finished, outcome, detail = last
            if outcome == "running" and not is_locked(config.state_dir):
                outcome, detail = "interrupted", "the next run finishes its work"
            lines.append(f"Last run: {_when(started)} → {_when(finished)}: {outcome}"
                         + (f" ({detail})" if detail else ""))
        digest = ledger.last_digest()
        if digest is None:
            lines.append("Last digest: none yet")
        else:
            sent = outbox.count(SENT, message_prefix(digest))
            state = "complete" if ledger.open_digest() is None else "unfinished"
            counts = ledger.delivery_counts(digest.id)
            lines.append(
                f"Last digest: #{digest.id} of {digest.created:%Y-%m-%d %H:%M} UTC ({state}): "
                f"{len(digest.slugs)} entries, {ledger.message_count(digest.id)} messages "
                f"written, {sent} sent"
                + "".join(f", {counts[k]} {k}" for k in ("deferred", "failed", "withdrawn")
                          if counts.get(k)))
        sent_slugs = ledger.sent_slugs()
        counts = SubscriberBook(ledger).counts()
    lines.append("Subscribers: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    waiting = [a for a in articles if a.slug not in sent_slugs]
    lines.append(f"Entries waiting for the next digest: {len(waiting)}")
    lines.append(f"Messages waiting in the outbox: {outbox.count('new')}")
    return lines


def _when(stamp: str | None) -> str:
    return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M:%S %Z") if stamp else "-"
