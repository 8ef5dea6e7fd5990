"""`newsletter backup FILE` and `newsletter restore FILE`: the ledger is the site's memory of
what was sent and who left; without it a run would mail everyone the last digest again."""

from __future__ import annotations

from pathlib import Path

from pipeline.core.config import load_config
from pipeline.state.ledger import open_ledger
from pipeline.state.lock import SEND_LOCK_NAME, site_lock
from pipeline.state.upkeep import backup, check_backup, restore


class NotALedger(Exception):
    """The file given to restore is not a usable ledger backup."""


def backup_site(site: Path, target: Path) -> None:
    """Copy the site's ledger to `target` with SQLite's online backup (runs and sends may go
    on meanwhile; the copy is consistent). Raises FileNotFoundError without a ledger."""
    config = load_config(site)
    backup(config.state_dir, target)


def restore_site(site: Path, source: Path, wait: float = 0.0) -> None:
    """Replace the site's ledger with a backup, holding the run and send locks (raises
    Locked if they stay busy past `wait` seconds; NotALedger for a bad file)."""
    problems = check_backup(source)
    if problems:
        raise NotALedger(f"{source}: {'; '.join(problems)}")
    config = load_config(site)
    with site_lock(config.state_dir, wait), \
            site_lock(config.state_dir, wait, SEND_LOCK_NAME), \
            open_ledger(config.state_dir) as ledger:
        restore(config.state_dir, source, ledger)
