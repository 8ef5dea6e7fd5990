"""`newsletter status`: the last run, the last digest, and what is waiting. Reads only."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pipeline.core.config import Config, load_config
from pipeline.entries.collect import collect_articles
from pipeline.mail.compose import message_prefix
from pipeline.mail.outbox import SENT, Outbox
from pipeline.state.connection import ledger_files
from pipeline.state.ledger import open_ledger
from pipeline.state.lock import is_locked
from pipeline.state.subscribers import SubscriberBook
from pipeline.state.upkeep import kept, times_ahead


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
        rows = kept(ledger)
        warnings = times_ahead(ledger, now)
    lines.append("Subscribers: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    waiting = [a for a in articles if a.slug not in sent_slugs]
    lines.append(f"Entries waiting for the next digest: {len(waiting)}")
    lines.append(f"Messages waiting in the outbox: {outbox.count('new')}")
    lines += _kept(config, outbox, rows)
    lines += [f"Warning: {what}: check this machine's clock; it does not hold digests back"
              for what in warnings]
    return lines


def _kept(config: Config, outbox: Outbox, rows: dict[str, int]) -> list[str]:
    """What the site keeps about people, and its size on disk."""
    usage = outbox.usage()
    folders = ", ".join(f"{state}/ {n} ({_size(size)})" for state, (n, size) in usage.items())
    ledger_size = sum(p.stat().st_size for p in ledger_files(config.state_dir) if p.exists())
    return [f"Outbox keeps: {folders}; sent, failed and withdrawn messages for "
            f"{config.retention_days} days (retention.days)",
            f"Ledger keeps: {rows['subscribers']} subscribers, {rows['messages']} messages, "
            f"{rows['deliveries']} delivery details, {rows['notices']} confirmations "
            f"({_size(ledger_size)})"]


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.1f} MB"


def _when(stamp: str | None) -> str:
    return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M:%S %Z") if stamp else "-"
