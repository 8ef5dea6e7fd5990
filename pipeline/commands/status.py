"""`newsletter status`: the last run, the last digest, and what is waiting. Reads only."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pipeline.core.config import load_config
from pipeline.entries.collect import collect_articles
from pipeline.mail.compose import message_prefix
from pipeline.mail.outbox import SENT
from pipeline.state.ledger import Ledger, open_ledger
from pipeline.state.lock import is_locked
from pipeline.state.returns import ReturnsBook
from pipeline.state.subscribers import SubscriberBook


def site_status(site: Path, now: datetime | None = None) -> list[str]:
    now = now or datetime.now(UTC)
    config = load_config(site)
    articles, _ = collect_articles(config, now)
    outbox = config.outbox_dir
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
            prefix = message_prefix(digest)
            sent = sum(1 for _ in (outbox / SENT).glob(f"{prefix}*.eml")) \
                if (outbox / SENT).is_dir() else 0
            state = "complete" if ledger.open_digest() is None else "unfinished"
            counts = ledger.delivery_counts(digest.id)
            lines.append(
                f"Last digest: #{digest.id} of {digest.created:%Y-%m-%d %H:%M} UTC ({state}): "
                f"{len(digest.slugs)} entries, {ledger.message_count(digest.id)} messages "
                f"written, {sent} sent"
                + "".join(f", {counts[k]} {k}" for k in ("deferred", "failed", "withdrawn")
                          if counts.get(k)))
            lines += returning_mail_lines(ledger, digest.id, counts)
        sent_slugs = ledger.sent_slugs()
        counts = SubscriberBook(ledger).counts()
    lines.append("Subscribers: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    waiting = [a for a in articles if a.slug not in sent_slugs]
    lines.append(f"Entries waiting for the next digest: {len(waiting)}")
    queued = sum(1 for _ in (outbox / "new").glob("*.eml")) if (outbox / "new").is_dir() else 0
    lines.append(f"Messages waiting in the outbox: {queued}")
    return lines


COMPLAINT_WARNING = 0.001  # mailbox providers act at 0.3 %; warn well before it
BOUNCE_WARNING = 0.02


def returning_mail_lines(ledger: Ledger, digest_id: int, counts: dict[str, int]) -> list[str]:
    """The digest's bounce and complaint rates (of the messages handed to the relay), with a
    warning when they near what mailbox providers tolerate."""
    handed = counts.get("sent", 0) + counts.get("failed", 0)
    if not handed:
        return []
    bounced, complained = ReturnsBook(ledger).digest_rates(digest_id)
    lines = [f"Returning mail for digest #{digest_id}: {bounced} bounced "
             f"({bounced / handed:.2%}), {complained} complaints ({complained / handed:.2%})"]
    if complained / handed >= COMPLAINT_WARNING:
        lines.append(f"warning: complaint rate {complained / handed:.2%} is at or over 0.1 % — "
                     "providers start filtering at 0.3 %: check who is on the list and why")
    if bounced / handed >= BOUNCE_WARNING:
        lines.append(f"warning: bounce rate {bounced / handed:.2%} is at or over 2 % — "
                     "clean the list (`newsletter bounces fetch`) before the next digest")
    return lines


def _when(stamp: str | None) -> str:
    return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M:%S %Z") if stamp else "-"
