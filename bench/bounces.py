"""Returning mail: `newsletter bounces process` over a Maildir of DSNs, and a second pass over
the same mail (all "seen before"); the classifier alone over the test corpus.

    python bench/bounces.py [--bounces 2000] [--repeat 3]

No target in the issue; the figures say what a cron run over a busy bounce mailbox costs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from generate import make_site
from measure import REPO, describe, run_cli, timed

sys.path.insert(0, str(REPO / "tests"))
from returning import dsn  # the tests' Postfix-style DSN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bounces", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        site = make_site(Path(tmp) / "site", entries=3, subscribers=args.bounces)
        run_cli("run", "--site", str(site))
        box = Path(tmp) / "Maildir"

        def fill() -> None:
            shutil.rmtree(box, ignore_errors=True)
            shutil.rmtree(site / ".newsletter", ignore_errors=True)
            for sub in ("tmp", "new", "cur"):
                (box / sub).mkdir(parents=True)
            for n in range(args.bounces):
                (box / "new" / f"{n}.eml").write_bytes(dsn(
                    "journal@example.org", f"reader{n:06d}@example.org",
                    message_id=f"<bench-{n}@mx.example.net>"))
            run_cli("run", "--site", str(site))  # the list, freshly imported

        first = timed(lambda: run_cli("bounces", "process", "--site", str(site), str(box),
                                      "--quiet"), args.repeat, before=fill)
        again = timed(lambda: run_cli("bounces", "process", "--site", str(site), str(box),
                                      "--quiet"), args.repeat)
    print(describe(f"{args.bounces} DSNs, first pass", first))
    print(describe(f"{args.bounces} DSNs, second pass (seen before)", again))

    sys.path.insert(0, str(REPO))
    from pipeline.subscribers.returns.classify import classify

    corpus = [p.read_bytes() for p in (REPO / "tests" / "bounces").rglob("*.eml")]
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        for data in corpus:
            classify(data)
        times.append(time.perf_counter() - start)
    print(describe(f"classifier over the {len(corpus)}-message corpus, per message",
                   times, "ms", 1000 / len(corpus)))


if __name__ == "__main__":
    main()
