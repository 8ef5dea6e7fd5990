"""`newsletter status`: the last run, the last digest, what is waiting and what is wrong.
Reads only."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from pipeline.core.config import Config, load_config
from pipeline.core.errors import Problem
from pipeline.core.wording import counted, due_line
from pipeline.entries.collect import collect_articles
from pipeline.mail.compact import waiting_count
from pipeline.mail.compose import message_prefix
from pipeline.mail.outbox_folders import SENT, Outbox
from pipeline.run import next_digest
from pipeline.state.connection import ledger_files
from pipeline.state.ledger import Ledger, open_ledger
from pipeline.state.lock import is_locked
from pipeline.state.problems import as_dict, open_problems
from pipeline.state.returns import ReturnsBook
from pipeline.state.subscribers import SubscriberBook
from pipeline.state.upkeep import kept, times_ahead


def site_status(site: Path, now: datetime | None = None) -> list[str]:
    """The status as lines of text."""
    return status_lines(gather_status(site, now))


def gather_status(site: Path, now: datetime | None = None) -> dict[str, object]:
    """The status as the `--json` schema "newsletter.status/1" (README) has it."""
    now = now or datetime.now(UTC)
    config = load_config(site)
    upcoming: list[datetime] = []
    articles, _ = collect_articles(config, now, upcoming=upcoming)
    outbox = Outbox(config.outbox_dir)
    status: dict[str, object] = {}
    with open_ledger(config.state_dir, read_only=True) as ledger:
        last = ledger.last_run()
        run = None
        if last is not None:
            started, finished, outcome, detail = last
            if outcome == "running" and not is_locked(config.state_dir):
                outcome, detail = "interrupted", "the next run finishes its work"
            run = {"started": _iso(started), "finished": _iso(finished), "outcome": outcome,
                   "detail": detail or ""}
        status["last_run"] = run
        digest = ledger.last_digest()
        shown = None
        if digest is not None:
            sent = outbox.count(SENT, message_prefix(digest)) + waiting_count(
                config.outbox_dir, message_prefix(digest))[1]
            counts = ledger.delivery_counts(digest.id)
            shown = {"id": digest.id, "created": digest.created.isoformat(),
                     "complete": ledger.open_digest() is None, "entries": len(digest.slugs),
                     "messages_written": ledger.message_count(digest.id), "sent": sent,
                     **{k: counts.get(k, 0) for k in ("deferred", "failed", "withdrawn")},
                     "returning_mail": _returning_mail(ledger, digest.id, counts)}
        status["last_digest"] = shown
        sent_slugs = ledger.sent_slugs()
        status["subscribers"] = dict(SubscriberBook(ledger).counts())
        _, due = next_digest(ledger, config, now)
        problems = open_problems(ledger)
        rows = kept(ledger)
        ahead = times_ahead(ledger, now)
    status["entries_waiting"] = sum(1 for a in articles if a.slug not in sent_slugs)
    status["waiting_for_date"] = [d.isoformat() for d in sorted(upcoming)]
    status["cadence"] = config.cadence
    status["timezone"] = config.timezone.key
    status["next_digest"] = due.isoformat() if due else None
    status["messages_queued"] = outbox.count("new") + waiting_count(config.outbox_dir)[0]
    status["problems"] = [as_dict(p) for p in problems]
    status["kept"] = _kept(config, outbox, rows)
    status["clock_ahead"] = ahead
    return status


def _kept(config: Config, outbox: Outbox, rows: dict[str, int]) -> dict[str, object]:
    """What the site keeps about people, and its size on disk."""
    ledger_size = sum(p.stat().st_size for p in ledger_files(config.state_dir) if p.exists())
    return {"retention_days": config.retention_days,
            "outbox": {state: {"messages": n, "bytes": size}
                       for state, (n, size) in outbox.usage().items()},
            "ledger": {**rows, "bytes": ledger_size}}


def status_lines(status: dict[str, object]) -> list[str]:
    lines = []
    run = status["last_run"]
    if not isinstance(run, dict):
        lines.append("Last run: never")
    else:
        lines.append(f"Last run: {_when(run['started'])} → {_when(run['finished'])}: "
                     f"{run['outcome']}" + (f" ({run['detail']})" if run["detail"] else ""))
    digest = status["last_digest"]
    if not isinstance(digest, dict):
        lines.append("Last digest: none yet")
    else:
        created = datetime.fromisoformat(str(digest["created"]))
        lines.append(
            f"Last digest: #{digest['id']} of {created:%Y-%m-%d %H:%M} UTC "
            f"({'complete' if digest['complete'] else 'unfinished'}): "
            f"{counted(int(digest['entries']), 'entry')}, "
            f"{counted(int(digest['messages_written']), 'message')} written, "
            f"{digest['sent']} sent"
            + "".join(f", {digest[k]} {k}" for k in ("deferred", "failed", "withdrawn")
                      if digest[k]))
        lines += returning_mail_lines(digest["id"], digest["returning_mail"])
    counts = status["subscribers"]
    assert isinstance(counts, dict)
    lines.append("Subscribers: " + ", ".join(f"{n} {state}" for state, n in counts.items()))
    lines.append(f"Entries waiting for the next digest: {status['entries_waiting']}")
    dated = status["waiting_for_date"]
    assert isinstance(dated, list)
    if dated:
        lines.append(f"Entries waiting for their date: {len(dated)} "
                     f"({', '.join(d[:10] for d in dated)})")
    due = status["next_digest"]
    moment = None
    if isinstance(due, str):
        moment = datetime.fromisoformat(due).astimezone(ZoneInfo(str(status["timezone"])))
    lines.append(f"Next digest ({status['cadence']}): {due_line(moment, datetime.now(UTC))}")
    lines.append(f"Messages waiting in the outbox: {status['messages_queued']}")
    lines += _kept_lines(status["kept"])
    ahead = status["clock_ahead"]
    assert isinstance(ahead, list)
    lines += [f"Warning: {what}: check this machine's clock; it does not hold digests back"
              for what in ahead]
    problems = status["problems"]
    assert isinstance(problems, list)
    if problems:
        lines.append(f"Open problems ({len(problems)}), from the last run and send:")
        lines += [f"  {Problem(**row)}" for row in problems]
    return lines


def _kept_lines(kept_: object) -> list[str]:
    assert isinstance(kept_, dict)
    folders = ", ".join(f"{state}/ {counted(f['messages'], 'message')} ({_size(f['bytes'])})"
                        for state, f in kept_["outbox"].items())
    rows = kept_["ledger"]
    return [f"Outbox keeps: {folders}; sent, failed and withdrawn messages for "
            f"{kept_['retention_days']} days (retention.days)",
            f"Ledger keeps: {counted(rows['subscribers'], 'subscriber')}, "
            f"{counted(rows['messages'], 'message')}, "
            f"{counted(rows['deliveries'], 'delivery detail')}, "
            f"{counted(rows['notices'], 'confirmation')} ({_size(rows['bytes'])})"]


COMPLAINT_WARNING = 0.001  # mailbox providers act at 0.3 %; warn well before it
BOUNCE_WARNING = 0.02


def _returning_mail(ledger: Ledger, digest_id: int, counts: dict[str, int]
                    ) -> dict[str, object] | None:
    """The digest's bounces and complaints, of the messages handed to the relay."""
    handed = counts.get("sent", 0) + counts.get("failed", 0)
    if not handed:
        return None
    bounced, complained = ReturnsBook(ledger).digest_rates(digest_id)
    return {"handed_over": handed, "bounced": bounced, "complained": complained,
            "bounce_rate": bounced / handed, "complaint_rate": complained / handed}


def returning_mail_lines(digest_id: object, found: object) -> list[str]:
    """The rates, with a warning when they near what mailbox providers tolerate."""
    if not isinstance(found, dict):
        return []
    bounce, complaint = float(found["bounce_rate"]), float(found["complaint_rate"])
    lines = [f"Returning mail for digest #{digest_id}: {found['bounced']} bounced "
             f"({bounce:.2%}), {counted(int(found['complained']), 'complaint')} "
             f"({complaint:.2%})"]
    if complaint >= COMPLAINT_WARNING:
        lines.append(f"warning: complaint rate {complaint:.2%} is at or over 0.1 % — "
                     "providers start filtering at 0.3 %: check who is on the list and why")
    if bounce >= BOUNCE_WARNING:
        lines.append(f"warning: bounce rate {bounce:.2%} is at or over 2 % — "
                     "clean the list (`newsletter bounces fetch`) before the next digest")
    return lines


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.1f} MB"


def _iso(stamp: str | None) -> str | None:
    return datetime.fromisoformat(stamp).isoformat() if stamp else None


def _when(stamp: object) -> str:
    return datetime.fromisoformat(str(stamp)).strftime("%Y-%m-%d %H:%M:%S %Z") \
        if stamp else "-"
