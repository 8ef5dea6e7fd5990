"""`--json`: each command's outcome as one JSON object on stdout, in the schema the README
documents. The schemas are stable: a key is never renamed or removed, nor its type changed,
without a new `schema` version; new keys may be added."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import click

from pipeline.core.errors import Problem

if TYPE_CHECKING:
    from pipeline.core.deliveries import SendReport
    from pipeline.core.models import RunReport


def problem(p: Problem) -> dict[str, object]:
    from pipeline.state.problems import as_dict

    return as_dict(p)


def when(moment: datetime | None) -> str | None:
    """An instant as ISO 8601 with its offset, or null."""
    return moment.isoformat() if moment else None


def emit(schema: str, data: dict[str, object]) -> None:
    import json  # only --json needs it: a quiet cron run does not

    click.echo(json.dumps({"schema": schema, **data}, ensure_ascii=False, indent=2))


def run_json(report: RunReport, *, dry_run: bool) -> dict[str, object]:
    digest = None
    if report.digest_id is not None:
        digest = {"id": report.digest_id, "entries": report.new,
                  "messages_written": report.written}
    return {
        "dry_run": dry_run,
        "published": report.published,
        "feeds_changed": list(report.feeds_changed),
        "digest": digest,  # built or finished by this run (dry run: the unfinished one)
        "would_digest": ({"entries": report.new, "subscribers": report.subscribers,
                          "titles": list(report.new_titles)}
                         if dry_run and digest is None and report.new else None),
        "held_back": report.held_back,
        "next_digest": when(report.next_digest),
        "waiting_for_date": [when(d) for d in report.upcoming],
        "problems": [problem(p) for p in report.problems],
        "send": None,
    }


def send_json(report: SendReport, *, dry_run: bool, fail_threshold: float) -> dict[str, object]:
    return {
        "dry_run": dry_run,
        "due": report.due,
        "sent": report.sent,
        "deferred": report.deferred,
        "failed": report.failed,
        "withdrawn": report.withdrawn,
        "waiting": report.waiting,
        "left": report.left,
        "recovered": report.recovered,
        "missing": list(report.missing),
        "failures": [{"address": a, "reply": r} for a, r in report.failures],
        "bounced": list(report.bouncing),
        "stopped": report.stopped or None,
        "fail_threshold": fail_threshold,
        "problems": [problem(p) for p in report.problems],
    }
