"""`newsletter bounces process` and `fetch`: read returning mail, classify it, apply it, and
move it out of the way, in batches, under the site's bounces lock.

The order makes a kill -9 harmless: (1) a message over the size limit is refused before it is
read; (2) one the ledger already knows changes nothing and is only moved; (3) a message to keep
aside is copied into returns/kept/ with its reason; (4) the ledger records the message and the
status changes it makes, in one transaction (with up to BATCH others); (5) only then is it
moved (Maildir new/ → cur/,
IMAP → the processed or kept folder). A kill before (4) leaves it to be read again; after (4),
it is only moved next time.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path

from pipeline.core.atomic import write_atomic
from pipeline.core.config import Config, load_config
from pipeline.core.errors import Problem
from pipeline.state.connection import private_dir
from pipeline.state.ledger import Ledger, open_ledger
from pipeline.state.lock import site_lock
from pipeline.state.returns import ReturnsBook
from pipeline.state.secret import load_secrets
from pipeline.subscribers.returns.apply import handle_all
from pipeline.subscribers.returns.classify import Verdict, classify, mail_key
from pipeline.subscribers.returns.sources import (
    ImapDown,
    ImapSource,
    Item,
    SourceError,
    local_items,
)

log = logging.getLogger("pipeline")
LOCK_NAME = "bounces.lock"  # its own: reading a mailbox never holds up a run or a send
KEPT_DIR = Path("returns") / "kept"  # under the site: mail kept aside, each with a .reason
BATCH = 200  # messages recorded in one transaction (one sync), then moved ...
BATCH_BYTES = 16 * 1024 * 1024  # ... or fewer, when they are large


@dataclass
class IntakeReport:
    outcomes: Counter[str] = field(default_factory=Counter)
    changes: list[tuple[str, str, str]] = field(default_factory=list)  # address, status, code
    kept: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    problems: list[Problem] = field(default_factory=list)  # refused or unreadable

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())


def process_paths(site: Path, paths: Sequence[Path], now: datetime | None = None,
                  wait: float = 0.0) -> IntakeReport:
    """Returning mail from Maildir folders, mbox files and .eml files."""
    config = load_config(site)
    report = IntakeReport(problems=list(config.warnings))
    with site_lock(config.state_dir, wait, LOCK_NAME), \
            open_ledger(config.state_dir) as ledger:
        for path in paths:
            try:
                _take(local_items(path), "eml", config, ledger, report, now, local=True)
            except (SourceError, OSError) as exc:
                report.problems.append(Problem(path, "path", f"cannot be read ({exc})",
                                               "give a Maildir folder, an mbox or .eml file"))
    return report


def fetch(site: Path, now: datetime | None = None, wait: float = 0.0) -> IntakeReport:
    """Returning mail from the [bounces] IMAP mailbox; raises ImapDown or ImapRefused."""
    config = load_config(site)
    report = IntakeReport(problems=list(config.warnings))
    with site_lock(config.state_dir, wait, LOCK_NAME), \
            open_ledger(config.state_dir) as ledger:
        import imaplib

        source = ImapSource(config.bounces)
        try:
            _take(source.items(), "imap", config, ledger, report, now, local=False)
        except (OSError, imaplib.IMAP4.error) as exc:  # the connection broke half-way
            raise ImapDown(f"the IMAP connection broke ({exc}); what was recorded stays "
                           "recorded, the rest is read again next time") from None
        finally:
            source.close()
    return report


def _take(items: Iterable[Item], source: str, config: Config, ledger: Ledger,
          report: IntakeReport, now: datetime | None, *, local: bool) -> None:
    secrets = load_secrets(config.state_dir)
    returns = ReturnsBook(ledger)
    limit = config.bounces.max_size
    batch: list[tuple[Item, Verdict, str, bytes]] = []
    for item in items:
        if item.size > limit:
            report.problems.append(Problem(
                item.name, "size", f"{item.size:,} bytes is over the limit of {limit:,}: "
                "refused unread, nothing changed",
                "look at it by hand; raise bounces.max_size_kb if such mail is real"))
            report.outcomes["refused"] += 1
            if not local:
                item.settle(True)  # out of the way, into the kept folder; nothing deleted
            continue
        try:
            data = item.read()
        except (OSError, SourceError) as exc:
            report.problems.append(Problem(item.name, "mail", f"cannot be read ({exc})",
                                           "check the file's permissions"))
            continue
        key = mail_key(data, BytesHeaderParser().parsebytes(data[:65536]))
        stored = returns.seen(key)
        if stored is not None:  # handled before (perhaps by a run killed before moving it)
            report.outcomes["seen before"] += 1
            item.settle(stored == "kept")
            continue
        verdict = classify(data)
        verdict.key = key
        batch.append((item, verdict, _source_kind(item.name) if local else source, data))
        if len(batch) >= BATCH or sum(len(b[3]) for b in batch) >= BATCH_BYTES:
            _apply(batch, config, ledger, secrets, now, report, local)
            batch = []
    _apply(batch, config, ledger, secrets, now, report, local)


def _apply(batch: list[tuple[Item, Verdict, str, bytes]], config: Config, ledger: Ledger,
           secrets: Sequence[bytes], now: datetime | None, report: IntakeReport,
           local: bool) -> None:
    """Record a batch in one transaction, then move its mail (see the module's order)."""
    if not batch:
        return
    data_of = {verdict.key: data for _, verdict, _, data in batch}

    def aside(verdict: Verdict, reason: str) -> None:
        keep_aside(config, verdict.key, data_of[verdict.key], reason)

    results = handle_all([(verdict, kind) for _, verdict, kind, _ in batch], config, ledger,
                         secrets, now or datetime.now(UTC), aside if local else None)
    for (item, _, _, _), handled in zip(batch, results, strict=True):
        report.outcomes[handled.outcome] += 1
        report.changes += handled.changes
        if handled.keep and not handled.seen_before:
            report.kept.append((item.name, handled.detail))
        for address, status, code in handled.changes:
            log.info("bounces: %s is %s now (%s)", address, status, code or "no status code")
        item.settle(handled.keep)


def keep_aside(config: Config, key: str, data: bytes, reason: str) -> Path:
    """A copy of the mail in returns/kept/, beside a .reason file saying why."""
    name = hashlib.sha256(key.encode()).hexdigest()[:20]
    folder = private_dir(config.site_dir / KEPT_DIR)  # it holds subscribers' addresses
    write_atomic(folder / f"{name}.reason", f"{reason}\n".encode(), mode=0o600)
    write_atomic(folder / f"{name}.eml", data, mode=0o600)
    return folder / f"{name}.eml"


def _source_kind(name: str) -> str:
    if "#" in name:
        return "mbox"
    return "maildir" if "/new/" in name or "/cur/" in name else "eml"
