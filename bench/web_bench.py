"""`newsletter serve` under load, as an attacker or a mailbox provider would load it.

    .venv/bin/python bench/web_bench.py                      # every scenario, 1,000,000 rows
    .venv/bin/python bench/web_bench.py --only burst idle    # the quick ones
    .venv/bin/python bench/web_bench.py --subscribers 100000 --import-rows 200000

The server is the real command (`python -m pipeline serve --threads 8`) in a process of its
own, on 127.0.0.1 and a free port; the clients run in this process. All traffic is loopback,
bounded in count, and the server is stopped at the end. Scenarios:

- burst: 500 one-click POSTs for 500 different subscribers, on 500 connections opened at
  once (three rounds, fresh subscribers each): recorded, connection errors, 5xx, p50/p99/max.
- idle: 50 connections opened and left silent (10 of them mid-request-line), then 20 GETs
  one after the other: the slowest.
- tokens: with --subscribers rows on the list, 200 GETs per token shape on one keep-alive
  connection (a 404 is the floor: what any request costs): median and p99 per shape.
- import: `newsletter subscribers import` of --import-rows new rows in a process of its own,
  and while it runs a one-click POST every 0.5 s: time until each is answered and recorded.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
from generate import CONFIG  # noqa: E402
from measure import ENV, NEWSLETTER  # noqa: E402

SECRET = ENV["NEWSLETTER_SECRET"]  # the server's: tokens made with another are refused
os.environ["NEWSLETTER_SECRET"] = SECRET

from pipeline.core.models import Subscriber  # noqa: E402
from pipeline.mail.tokens import subscriber_token, unsubscribe_token  # noqa: E402
from pipeline.state.ledger import open_ledger  # noqa: E402
from pipeline.state.subscribers import SubscriberBook  # noqa: E402
from pipeline.subscribers.link_tokens import confirmation_token  # noqa: E402
from web_client import burst, one_click  # noqa: E402


def make_site(root: Path, subscribers: int) -> Path:
    (root / "articles").mkdir(parents=True)
    (root / "newsletter.toml").write_text(CONFIG.format(max_articles=10))
    with open_ledger(root / ".newsletter") as ledger:
        SubscriberBook(ledger).import_rows(
            (Subscriber(f"reader{n:07d}@example.org") for n in range(subscribers)),
            datetime.now(UTC))
    return root


def tokens_for(site: Path, first: int, count: int) -> list[str]:
    with open_ledger(site / ".newsletter") as ledger:
        book = SubscriberBook(ledger)
        rows = [book.get(f"reader{n:07d}@example.org") for n in range(first, first + count)]
    return [subscriber_token(SECRET.encode(), s.id, s.email) for s in rows]


class Server:
    """`newsletter serve` in its own process, on a free loopback port."""

    def __init__(self, site: Path, threads: int = 8) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [*NEWSLETTER, "serve", "--site", str(site), "--port", str(self.port),
             "--threads", str(threads), "--no-access-log"],
            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"serve did not start: {self.process.stderr.read()}") from None
                time.sleep(0.05)
        self.start_seconds = time.perf_counter() - started

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def scenario_burst(root: Path) -> None:
    site = make_site(root / "burst", 1500)
    server = Server(site)
    try:
        for round_ in range(3):
            targets = tokens_for(site, round_ * 500, 500)
            outcomes = burst(server.address, [one_click(f"/unsubscribe?token={t}")
                                              for t in targets])
            with open_ledger(site / ".newsletter", read_only=True) as ledger:
                recorded = SubscriberBook(ledger).counts()["unsubscribed"] - round_ * 500
            times = [o.seconds for o in outcomes]
            print(f"burst round {round_ + 1}: {recorded} recorded of 500, "
                  f"{sum(o.status is None for o in outcomes)} connection errors, "
                  f"{sum((o.status or 0) >= 500 for o in outcomes)} 5xx; latency p50 "
                  f"{statistics.median(times):.3f} s, p99 {percentile(times, 99):.3f} s, "
                  f"max {max(times):.3f} s")
    finally:
        server.stop()


def scenario_idle(root: Path) -> None:
    site = make_site(root / "idle", 10)
    server = Server(site)
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(50)]
    try:
        for sock in idle[:10]:
            sock.sendall(b"GET /subscribe HT")
        times = []
        for _ in range(20):
            started = time.perf_counter()
            connection = http.client.HTTPConnection(server.address, timeout=10)
            connection.request("GET", "/subscribe")
            response = connection.getresponse()
            response.read()
            connection.close()
            assert response.status == 200
            times.append(time.perf_counter() - started)
        print(f"idle: with 50 idle connections open, 20 GETs: median "
              f"{statistics.median(times) * 1000:.1f} ms, slowest {max(times) * 1000:.1f} ms")
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def scenario_tokens(root: Path, subscribers: int) -> None:
    started = time.perf_counter()
    site = make_site(root / "tokens", subscribers)
    print(f"tokens: {subscribers:,} subscribers written in {time.perf_counter() - started:.0f} s")
    server = Server(site)
    print(f"tokens: serve started in {server.start_seconds:.1f} s (indexing the first "
          "release's links for one secret, once)")
    secret = SECRET.encode()
    last = subscribers - 1
    [real] = tokens_for(site, last, 1)
    who_id = int(real.split(".")[0])
    email = f"reader{last:07d}@example.org"
    shapes = {
        "floor: unknown path (404)": "/nothing",
        "valid id token": f"/unsubscribe?token={real}",
        "forged id token": f"/unsubscribe?token={who_id}.{'A' * 24}",
        "valid first-release token": f"/unsubscribe?token={unsubscribe_token(secret, email)}",
        "24 characters, no dot": f"/unsubscribe?token={'B' * 24}",
        "forged confirmation token": f"/confirm?token=1.1765000000.{'C' * 24}",
        "valid confirmation token": "/confirm?token=" + confirmation_token(
            secret, who_id, email, datetime.now(UTC)),
        "5,000 characters": f"/unsubscribe?token={'D' * 5000}",
    }
    connection = http.client.HTTPConnection(server.address, timeout=10)
    try:
        for label, target in shapes.items():
            times = []
            for _ in range(200):
                began = time.perf_counter()
                connection.request("GET", target)
                response = connection.getresponse()
                response.read()
                times.append(time.perf_counter() - began)
            print(f"tokens: {label:<28} -> {response.status}: median "
                  f"{statistics.median(times) * 1000:.2f} ms, p99 "
                  f"{percentile(times, 99) * 1000:.2f} ms")
    finally:
        connection.close()
        server.stop()
    again = Server(site)
    again.stop()
    print(f"tokens: serve started again in {again.start_seconds:.1f} s (index already built)")
    lookup_costs(site, {k: v.partition("token=")[2] for k, v in shapes.items() if "token=" in v})


def lookup_costs(site: Path, tokens: dict[str, str]) -> None:
    """The lookup alone, in this process (no HTTP): what a token of each shape costs."""
    from pipeline.state.ledger import connect_ledger
    from pipeline.state.secret import load_secrets
    from pipeline.subscribers.web_pages import Page
    from pipeline.subscribers.web_tokens import Tokens

    finder, ledger = Tokens(load_secrets(site / ".newsletter")), connect_ledger(
        site / ".newsletter")
    for label, token in tokens.items():
        times = []
        for _ in range(2000):
            began = time.perf_counter()
            try:
                if token.count(".") == 2:
                    finder.confirmation(ledger, token, 7)
                else:
                    finder.subscriber(ledger, token)
            except Page:
                pass
            times.append(time.perf_counter() - began)
        print(f"tokens: lookup alone, {label:<26}: median {statistics.median(times) * 1e6:.0f}"
              f" µs, p99 {percentile(times, 99) * 1e6:.0f} µs, max {max(times) * 1e6:.0f} µs")


def scenario_import(root: Path, rows: int) -> None:
    site = make_site(root / "import", 200)
    big = root / "big.csv"
    with big.open("w") as out:
        out.write("email,name,categories,status\n")
        out.writelines(f"bulk{n:07d}@example.org,,,active\n" for n in range(rows))
    targets = tokens_for(site, 0, 200)
    server = Server(site)
    began = time.perf_counter()
    importer = subprocess.Popen([*NEWSLETTER, "subscribers", "import", str(big), "--site",
                                 str(site)], env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    times, failures = [], 0
    try:
        time.sleep(1)
        while importer.poll() is None and targets:
            started = time.perf_counter()
            outcome = burst(server.address, [one_click(f"/unsubscribe?token={targets.pop()}")],
                            timeout=30)[0]
            if outcome.status != 200:
                failures += 1
            times.append(time.perf_counter() - started)
            time.sleep(0.5)
        out, _ = importer.communicate()
        took = time.perf_counter() - began
        with open_ledger(site / ".newsletter", read_only=True) as ledger:
            recorded = SubscriberBook(ledger).counts()["unsubscribed"]
        print(f"import: {rows:,} rows imported in {took:.0f} s ({out.decode().strip()[:40]}); "
              f"{len(times)} one-click POSTs during it: {recorded} recorded, {failures} not "
              f"200; median {statistics.median(times):.3f} s, slowest {max(times):.3f} s")
    finally:
        if importer.poll() is None:
            importer.kill()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=["burst", "idle", "tokens", "import"],
                        default=["burst", "idle", "tokens", "import"])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--import-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="web-bench-") as folder:
        root = Path(folder)
        if "burst" in args.only:
            scenario_burst(root)
        if "idle" in args.only:
            scenario_idle(root)
        if "tokens" in args.only:
            scenario_tokens(root, args.subscribers)
        if "import" in args.only:
            scenario_import(root, args.import_rows)


if __name__ == "__main__":
    main()
