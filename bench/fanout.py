"""Fan-out: one digest to N subscribers (default 100,000) into the outbox.

    python bench/fanout.py [--subscribers 100000] [--repeat 3] [--dir /tmp]
    python bench/fanout.py --subscribers 10000 --signed rsa,ed25519,both  # DKIM's cost only

Three figures in one run:
  1. message assembly alone, to memory, on one core (target ≥ 5,000 messages/s);
  2. the whole fan-out to disk (write_outbox: reading subscribers, assembling, tmp → new,
     flushing and recording in the ledger) against the disk floor: the same number of files
     of the same size written with tmp + rename and nothing else (target ≤ 1.5×);
  3. a naive baseline: jinja2 + MJML + premailer + EmailMessage per subscriber, timed on a
     sample and scaled (target ≥ 25× slower than ours).
Peak memory of the fan-out is measured in a child process at N/10 and N subscribers: it must
stay under 200 MB and flat.
With --signed, only this: the fan-out unsigned and with each kind of DKIM signature (each
message signed as `newsletter run` writes it), interleaved, wall time and CPU time (user+sys).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from generate import make_site, write_subscribers
from measure import REPO, describe, timed, wait_for_quiet_disk

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def build_site(root: Path, subscribers: int) -> Path:
    """A site whose first run built one 10-entry digest for zero subscribers, and whose list
    (imported into the ledger, as a run does when subscribers.csv changes) has N people."""
    site = make_site(root / "site", 10, subscribers=0)
    os.environ["NEWSLETTER_SECRET"] = "bench-secret-0123456789-0123456789"
    from pipeline.run import run

    run(site, NOW)
    snapshot(site, "built")
    import_list(site, subscribers)
    return site


def snapshot(site: Path, name: str) -> None:
    """Keep a copy of the ledger as it is now (no connection is open: it is one whole file)."""
    shutil.copy(site / ".newsletter" / "state.sqlite3", site / f"ledger-{name}.sqlite3")


def restore(site: Path, name: str) -> None:
    state = site / ".newsletter"
    for suffix in ("-wal", "-shm"):
        (state / f"state.sqlite3{suffix}").unlink(missing_ok=True)
    shutil.copy(site / f"ledger-{name}.sqlite3", state / "state.sqlite3")


def import_list(site: Path, subscribers: int) -> None:
    """The list of N people in the ledger, as a run imports it, beside the digest built for
    no one; kept as the "listed" snapshot that each fan-out starts from."""
    from pipeline.core.config import load_config
    from pipeline.state.ledger import open_ledger
    from pipeline.subscribers.manage import sync_site_csv

    restore(site, "built")
    write_subscribers(site / "subscribers.csv", subscribers)
    config = load_config(site)
    with open_ledger(config.state_dir) as ledger:
        sync_site_csv(config, ledger, NOW)
    snapshot(site, "listed")


def fan_out(site: Path, signer: object = None) -> int:
    """The fan-out of `newsletter run` for the site's digest into an empty outbox (and a
    ledger restored to the "listed" snapshot): the list streamed from the ledger, renditions
    by segment, write_outbox."""
    from pipeline.core.config import load_config
    from pipeline.entries.collect import collect_articles
    from pipeline.mail.outbox import write_outbox
    from pipeline.mail.segments import Renditions
    from pipeline.state.ledger import open_ledger
    from pipeline.state.secret import load_secret
    from pipeline.state.subscribers import SubscriberBook

    config = load_config(site)
    with open_ledger(config.state_dir) as ledger:
        digest = ledger.last_digest()
        assert digest is not None
        articles, _ = collect_articles(config, NOW, ledger)
        renditions = Renditions(digest, articles, config, ledger)
        return write_outbox(digest, SubscriberBook(ledger).active(), config, ledger,
                            load_secret(config.state_dir), NOW, renditions.for_subscriber,
                            fresh=True,  # as `newsletter run` writes a digest it just built
                            signer=signer)  # type: ignore[arg-type]


def signed_fan_out(site: Path, root: Path, n: int, kinds: list[str], repeat: int) -> None:
    """The fan-out unsigned and signed with each kind, interleaved so they share the noise."""
    import resource

    sys.path.insert(0, str(Path(__file__).parent))
    from send_bench import make_keys, set_signing

    from pipeline.core.config import load_config
    from pipeline.delivery.settings import run_signer

    make_keys(site)
    signers = {}
    for kind in ["none", *kinds]:
        set_signing(site, kind)
        signers[kind] = run_signer(load_config(site))[0]
    set_signing(site, "none")
    restore(site, "listed")
    fan_out(site, signers[kinds[0]])  # warm up: imports, the key, the first composer
    wall: dict[str, list[float]] = {kind: [] for kind in signers}
    cpu: dict[str, list[float]] = {kind: [] for kind in signers}
    for _ in range(repeat):
        for kind, signer in signers.items():
            restore(site, "listed")
            shutil.rmtree(site / "outbox", ignore_errors=True)
            os.sync()
            wait_for_quiet_disk()
            used = resource.getrusage(resource.RUSAGE_SELF)
            began = time.perf_counter()
            assert fan_out(site, signer) == n
            wall[kind].append(time.perf_counter() - began)
            after = resource.getrusage(resource.RUSAGE_SELF)
            cpu[kind].append(after.ru_utime - used.ru_utime + after.ru_stime - used.ru_stime)
    plain = statistics.median(wall["none"])
    print(f"fan-out of {n:,} messages, outbox in {root}; {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f}")
    for kind in signers:
        rates = sorted(n / t for t in wall[kind])
        print(f"  {kind:<8} {statistics.median(rates):7,.0f} msg/s (min {rates[0]:,.0f} – max "
              f"{rates[-1]:,.0f}); {statistics.median(wall[kind]):.2f} s wall, "
              f"{statistics.median(cpu[kind]) / n * 1e6:.0f} µs CPU a message; "
              f"time × {statistics.median(wall[kind]) / plain:.2f} of unsigned")


def floor(folder: Path, count: int, data: bytes) -> None:
    """The same files, tmp + rename, nothing else, then one sync: what the disk allows."""
    tmp, new = folder / "tmp", folder / "new"
    tmp.mkdir(parents=True)
    new.mkdir()
    for n in range(count):
        name = f"floor-{n:07d}.eml"
        with open(tmp / name, "wb") as f:
            f.write(data)
        os.replace(tmp / name, new / name)
    os.sync()


def naive_message(site: Path, email: str) -> bytes:
    """What a naive pipeline does for every subscriber: render, compile, inline, build."""
    from email import policy
    from email.message import EmailMessage

    from pipeline.core.config import load_config
    from pipeline.entries.collect import collect_articles
    from pipeline.entries.summarise import summarise
    from pipeline.publishing.digest import render_digest

    config = load_config(site)
    articles = [summarise(a) for a in collect_articles(config, NOW)[0][:10]]
    html, text = render_digest(articles, NOW, config)
    html = html.replace("@@EMAIL@@", email)
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"], msg["To"], msg["Subject"] = str(config.from_address), email, "Digest"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


def peak_memory(site: Path, subscribers: int) -> float:
    """Peak RSS (MB) of a fresh process that fans out to `subscribers` (VmHWM: unlike
    ru_maxrss, it does not carry over the forking parent's size)."""
    import_list(site, subscribers)
    shutil.rmtree(site / "outbox", ignore_errors=True)
    code = ("import sys; sys.path.insert(0, 'bench'); from fanout import fan_out; "
            "from pathlib import Path; fan_out(Path(sys.argv[1])); "
            "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')))")
    done = subprocess.run([sys.executable, "-c", code, str(site)], cwd=REPO, check=True,
                          capture_output=True, text=True)
    return int(done.stdout.split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="where the outbox goes (a disk, or /dev/shm for tmpfs)")
    parser.add_argument("--signed", default="", metavar="KINDS",
                        help="only the fan-out's cost of DKIM: any of rsa,ed25519,both")
    args = parser.parse_args()
    n = args.subscribers
    with tempfile.TemporaryDirectory(prefix="bench-fanout-", dir=args.dir) as tmp:
        root = Path(tmp)
        site = build_site(root, n)
        if args.signed:
            return signed_fan_out(site, root, n, args.signed.split(","), args.repeat)

        from pipeline.core.config import load_config
        from pipeline.core.models import Subscriber
        from pipeline.mail.compose import Composer
        from pipeline.state.ledger import open_ledger

        config = load_config(site)
        with open_ledger(config.state_dir) as ledger:
            digest = ledger.last_digest()
        assert digest is not None
        composer = Composer(digest, config, b"bench-secret-0123456789-0123456789")
        people = [Subscriber(f"reader{i:06d}@example.org", f"Reader {i}") for i in range(n)]
        sample = composer.compose(people[0])
        def assemble() -> None:
            for person in people:
                composer.compose(person)

        assembly = timed(assemble, args.repeat, quiet_disk=False)

        def clear() -> None:
            restore(site, "listed")  # the digest not yet written for anyone
            shutil.rmtree(site / "outbox", ignore_errors=True)
            shutil.rmtree(root / "floor", ignore_errors=True)
            os.sync()

        ours, floors = [], []
        for _ in range(args.repeat):  # alternate, so disk noise falls on both alike
            clear()
            ours += timed(lambda: fan_out(site), 1)
            clear()
            floors += timed(lambda: floor(root / "floor", n, sample), 1)
        clear()
        wait_for_quiet_disk()
        count = 20
        start = time.perf_counter()
        for i in range(count):
            naive_message(site, f"reader{i:06d}@example.org")
        naive_each = (time.perf_counter() - start) / count
        memory = {size: peak_memory(site, size) for size in (n // 10, n)}

    rate = [n / t for t in assembly]
    print(f"message size: {len(sample) / 1024:.1f} KB; {n:,} subscribers; outbox in {args.dir}")
    print(f"1. assembly to memory: median {statistics.median(rate):,.0f} messages/s "
          f"(min {min(rate):,.0f}, max {max(rate):,.0f}); target ≥ 5,000")
    print(describe("2. fan-out to disk", ours))
    print(describe("   disk floor (same files, tmp + rename, sync)", floors))
    ratio = statistics.median(ours) / statistics.median(floors)
    print(f"   fan-out / floor: {ratio:.2f}x; target ≤ 1.5x")
    naive_total = naive_each * n
    speedup = naive_total / statistics.median(ours)
    print(f"3. naive: {naive_each * 1000:.1f} ms per message → {naive_total:,.0f} s for {n:,}; "
          f"ours is {speedup:,.0f}x faster; target ≥ 25x")
    print("peak memory: " + json.dumps({f"{k:,} subscribers": f"{v:.0f} MB"
                                        for k, v in memory.items()}) + "; target < 200 MB, flat")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
