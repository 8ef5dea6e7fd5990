"""Erasure on a large ledger: `subscribers remove` deletes one address's rows, then rebuilds
the file (VACUUM) and truncates the WAL, so the whole ledger is rewritten once.

    python bench/erasure.py [--subscribers 100000] [--digests 10]

No target: an operator's command, run once per request. Prints the ledger's size and the two
steps' times (deleting the rows; VACUUM + wal_checkpoint(TRUNCATE)).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pipeline.core.models import Subscriber
from pipeline.state.ledger import open_ledger
from pipeline.state.subscribers import SubscriberBook
from pipeline.state.upkeep import scrub

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--digests", type=int, default=10)
    args = parser.parse_args()
    n, digests = args.subscribers, args.digests
    address = [f"reader{i:06d}@example.org" for i in range(n)]
    with tempfile.TemporaryDirectory(prefix="bench-erasure-") as tmp:
        state = Path(tmp)
        with open_ledger(state) as ledger:
            SubscriberBook(ledger).import_rows((Subscriber(a, "Reader") for a in address), NOW)
            for d in range(digests):
                digest = ledger.create_digest(NOW, "Subject", "<p>html</p>" * 200, "t" * 1000,
                                              [f"entry-{d}"])
                ledger.record_messages(digest.id, NOW, [(a, f"digest-{d}-{i}.eml")
                                                        for i, a in enumerate(address)])
        size = (state / "state.sqlite3").stat().st_size
        with open_ledger(state) as ledger:
            began = time.perf_counter()
            erased = SubscriberBook(ledger).erase(address[n // 2], NOW)
            rows = time.perf_counter() - began
            began = time.perf_counter()
            scrub(ledger)
            rebuilt = time.perf_counter() - began
    print(f"ledger {size / 1e6:.0f} MB: {n:,} subscribers, {n * digests:,} message rows")
    print(f"erase one address: {erased.ledger_rows} rows deleted in {rows:.2f} s; "
          f"VACUUM + WAL truncated in {rebuilt:.2f} s")


if __name__ == "__main__":
    main()
