"""A send with nothing due, on a ledger that keeps a month of a large list's deliveries.

    python bench/send_noop.py [--subscribers 100000] [--digests 10] [--repeat 7]

Retention keeps a delivered digest's per-message rows for `retention.days` (30 by default),
so a daily digest to 100,000 people leaves ~3,000,000 delivery rows in the ledger. Each cron
`newsletter send` ends by asking which refused addresses are not marked bounced yet. This
times `newsletter send` (the CLI, as cron runs it) with nothing queued, first with the
ledger as it is (the m011 index of the rows waiting to be marked), then with that index
dropped, as every version before it had the ledger. The ledger's digests, messages and
deliveries are written through the ledger's own methods, not by `run` (which would write
the messages too: hours for millions).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from generate import make_site
from measure import describe, run_cli, timed

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def fill_ledger(site: Path, subscribers: int, digests: int) -> int:
    """`digests` delivered digests of `subscribers` messages each, a few refused (and marked
    bounced, as a send leaves them). Returns the number of delivery rows."""
    from pipeline.core.deliveries import Delivery, QueuedMessage
    from pipeline.state.ledger import open_ledger

    now = datetime.now(UTC)
    addresses = [f"reader{n:07d}@example.org" for n in range(subscribers)]
    with open_ledger(site / ".newsletter") as ledger:
        for d in range(digests):
            digest = ledger.create_digest(now, f"Digest {d}", "<p>html</p>", "text", [f"e{d}"])
            names = [f"{digest.id:04d}-{n:07d}.eml" for n in range(subscribers)]
            ledger.record_messages(digest.id, now, list(zip(addresses, names, strict=True)))
            ledger.complete_digest(digest.id)
            refused = set(range(0, subscribers, 997))
            ledger.record_deliveries(
                Delivery(QueuedMessage(digest.id, a, f), "failed" if n in refused else "sent",
                         "550 5.1.1 unknown" if n in refused else "250 2.0.0 Ok: queued",
                         now, 1, bouncing=n in refused)
                for n, (a, f) in enumerate(zip(addresses, names, strict=True)))
            ledger.bounces_marked([(digest.id, addresses[n]) for n in refused])
        ledger.close_delivered_digests()
    return subscribers * digests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--digests", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-send-noop-") as tmp:
        site = make_site(Path(tmp), 10, subscribers=0)  # the digests below are the ledger's
        with (site / "newsletter.toml").open("a") as toml:  # never reached: nothing is due
            toml.write('\n[smtp]\nhost = "127.0.0.1"\nport = 9\ntls = "none"\n')
        run_cli("run", "--site", str(site), "--quiet")  # the ledger, migrated
        rows = fill_ledger(site, args.subscribers, args.digests)
        size = (site / ".newsletter" / "state.sqlite3").stat().st_size / 1e6
        print(f"{rows:,} delivery rows ({args.digests} digests of {args.subscribers:,}); "
              f"ledger {size:,.0f} MB", flush=True)
        send = lambda: run_cli("send", "--site", str(site), "--quiet")  # noqa: E731
        # The ledger in the page cache: a floor (a daily cron may find it on disk only)
        send()
        indexed = timed(send, args.repeat)
        with sqlite3.connect(site / ".newsletter" / "state.sqlite3") as db:
            db.execute("DROP INDEX deliveries_to_mark")
        send()
        scanned = timed(send, args.repeat)
    print(describe("no-op send, with the m011 index", indexed))
    print(describe("no-op send, without it (before m011)", scanned))


if __name__ == "__main__":
    main()
