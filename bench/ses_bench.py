"""Sending through Amazon SES's API, against moto's server mode on loopback.

    .venv/bin/python bench/ses_bench.py                   # 10,000 messages, 3 runs
    .venv/bin/python bench/ses_bench.py --messages 2000 --runs 1

A site with N subscribers is built in a temporary folder and `newsletter run` fills its outbox
(as bench/send_bench.py does). moto's server (a real HTTP server speaking the SES API) runs in
this process; each timed run is the real `newsletter send` in a child process, boto3 pointed
at the server by AWS_ENDPOINT_URL, with the account's quota raised (moto's is fixed at 1 a
second). After each run every message moto received is checked against the outbox: each
subscriber once, the exact bytes of their `.eml`. "Ceiling" is a bare boto3 client in a child
process replaying the same messages over as many threads: what moto and loopback alone take.
Between runs the files go back to outbox/new, the ledger is restored and moto is reset.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from send_bench import build_site, figures, reset  # noqa: E402

from moto_ses import REGION, aws_env, moto_ses_server  # noqa: E402

TO = re.compile(rb"^To: .*<(.+?)>", re.M)


def outbox(site: Path, folder: str) -> dict[str, bytes]:
    """recipient → bytes of their message in outbox/<folder>/."""
    found = {}
    for path in (site / "outbox" / folder).glob("*.eml"):
        data = path.read_bytes()
        to = TO.search(data)
        assert to is not None, path
        found[to.group(1).decode()] = data
    return found


def check_received(expected: dict[str, bytes]) -> None:
    """Every message once, to its subscriber, with the exact bytes of its `.eml`."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    received = ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
    assert len(received) == len(expected), (len(received), len(expected))
    seen = set()
    for message in received:
        recipient = message.destinations[0]
        assert recipient not in seen, f"{recipient} got two messages"
        seen.add(recipient)
        assert message.raw_data.encode() == expected[recipient], recipient
    assert seen == set(expected)


def replay(url: str, folder: str, connections: int) -> float:
    """Run as `--replay URL FOLDER`: seconds for a bare client to send every .eml there."""
    import boto3
    from botocore.config import Config

    jobs = [(TO.search(p.read_bytes()).group(1).decode(), p.read_bytes())  # type: ignore[union-attr]
            for p in Path(folder).glob("*.eml")]
    client = boto3.session.Session(region_name=REGION).client(
        "sesv2", endpoint_url=url,
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=connections))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if not jobs:
                    return
                recipient, data = jobs.pop()
            client.send_email(FromEmailAddress="journal@example.org",
                              Destination={"ToAddresses": [recipient]},
                              Content={"Raw": {"Data": data}})

    began = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--replay", nargs=2, metavar=("URL", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replay:
        print(replay(*args.replay, args.connections))
        return

    root = Path(tempfile.mkdtemp(prefix="ses-bench-"))
    try:
        with moto_ses_server() as ses:
            print(f"building {args.messages:,} messages in {root} …", flush=True)
            site = build_site(root, args.messages, port=9)  # [smtp] is written, not used
            with (site / "newsletter.toml").open("a") as f:
                f.write(f'\n[delivery]\nbackend = "ses"\n\n[ses]\nregion = "{REGION}"\n'
                        f"connections = {args.connections}\n")
            expected = outbox(site, "new")
            size = statistics.mean(len(m) for m in expected.values()) / 1024
            print(f"{len(expected):,} messages, {size:.1f} KB each on average; "
                  f"{args.connections} connections; {os.cpu_count()} cores", flush=True)
            # the same secret as the site was built with (send_bench's): short ones are refused
            env = {**aws_env(ses.url), "NEWSLETTER_SECRET": os.environ["NEWSLETTER_SECRET"]}
            env.pop("PYTHONDONTWRITEBYTECODE", None)  # as cron would run it: with .pyc files
            ceiling, sender, cpu = [], [], []
            for run in range(args.runs):
                ses.reset()
                ses.verify("example.org")
                ses.set_quota(rate=100_000)
                used = resource.getrusage(resource.RUSAGE_CHILDREN)
                began = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "pipeline", "send", "--quiet",
                                       "--site", str(site)], env=env, capture_output=True,
                                      text=True)
                sender.append(time.perf_counter() - began)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu.append(after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime)
                assert done.returncode == 0, done.stderr
                assert outbox(site, "sent") == expected and not outbox(site, "new")
                check_received(expected)
                print(f"run {run + 1}: newsletter send {sender[-1]:.1f} s "
                      f"({cpu[-1]:.1f} CPU s of its own), {len(expected):,} received once "
                      "each with their exact bytes", flush=True)
                ses.reset()
                ses.verify("example.org")
                ses.set_quota(rate=100_000)
                took = subprocess.run([sys.executable, __file__, "--replay", ses.url,
                                       str(site / "outbox" / "sent"), "--connections",
                                       str(args.connections)], env=env, capture_output=True,
                                      text=True, check=True)
                ceiling.append(float(took.stdout))
                reset(site)
            top = figures("ceiling (bare boto3, moto)", len(expected), ceiling)
            mine = figures("newsletter send (moto)", len(expected), sender)
            print(f"{'our sender / ceiling':<34} {mine / top:8.0%}")
            own = statistics.median(cpu)
            print(f"newsletter send's own CPU: median {own:.1f} s, "
                  f"{1000 * own / len(expected):.2f} ms a message "
                  f"(~{len(expected) / own:,.0f} msg/s per core if SES took them at once)")
            print(f"newsletter send wall time: median {statistics.median(sender):.1f} s "
                  f"(min {min(sender):.1f}, max {max(sender):.1f}); this process (moto) peak "
                  f"memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
