"""Sending speed: our sender against a loopback SMTP sink, and the sink's own ceiling.

    .venv/bin/python bench/send_bench.py                 # 10,000 messages, 5 runs, on disk
    .venv/bin/python bench/send_bench.py --tmpfs         # the same outbox in /dev/shm
    .venv/bin/python bench/send_bench.py --signed rsa,ed25519,both  # also: DKIM-signed sends
    .venv/bin/python bench/send_bench.py --aiosmtpd 2000 # also: the same against aiosmtpd

A site with N subscribers is built in a temporary folder and `newsletter run` fills its
outbox (~41 KB per message). Each timed run starts from the same state: the files are moved
back to outbox/new and the ledger is restored from a copy. A site of 20 is sent once, untimed,
before the timed runs, so that none of them pays for the first send's imports. The sink is a
minimal asyncio SMTP server in its own process (so it has its own core and GIL): it answers
every command with success and finds the end of each message's data with bytes.find.
"Ceiling" is a client that only replays prepared bytes (the same dialogue over as many
connections: pipelined MAIL/RCPT/DATA, each message's data followed by the next envelope; the
messages already in memory and dot-stuffed): what the sink and loopback alone can take. CPU
per message is printed for each side and for the sink during each. Nothing is kept.

--signed: for each kind of DKIM signature a site of its own whose `newsletter run` wrote every
.eml signed (as it does when [dkim] is set); `send` of those files is timed against `send` of
the unsigned site's, interleaved. The run's own time (wall and CPU) is printed for each site:
signing costs there now. The bench checks that `send` signed nothing (the files were signed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("NEWSLETTER_SECRET", "bench-secret-0123456789-0123456789")

SENDER = "journal@example.org"


# --- the sink: run as `send_bench.py --sink PORT` in a process of its own -------------------

class Sink(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport, self.buffer, self.in_data, self.scanned = transport, bytearray(), False, 0
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, chunk: bytes) -> None:
        self.buffer += chunk
        while self.buffer:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n", max(0, self.scanned - 4))
                if end < 0:
                    self.scanned = len(self.buffer)
                    return
                del self.buffer[:end + 5]
                self.in_data, self.scanned = False, 0
                self.transport.write(b"250 2.0.0 Ok: queued\r\n")
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            verb = bytes(self.buffer[:4]).upper()
            del self.buffer[:end + 2]
            if verb == b"EHLO":
                self.transport.write(b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                self.in_data = True
                self.transport.write(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"221 bye\r\n")
                self.transport.close()
                return
            else:
                self.transport.write(b"250 Ok\r\n")


def serve_sink(port: int) -> None:
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(Sink, "127.0.0.1", port, backlog=64))
    print("ready", flush=True)
    loop.run_until_complete(server.serve_forever())


def serve_aiosmtpd(port: int) -> None:
    from aiosmtpd.controller import Controller

    class Accept:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 2.0.0 Ok: queued"

    controller = Controller(Accept(), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


def start_server(kind: str) -> tuple[subprocess.Popen[str], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, f"--{kind}-server", str(port)],
                              stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    return server, port


# --- the ceiling: replay prepared bytes -----------------------------------------------------

def replay(messages: list[tuple[str, bytes]], port: int, connections: int) -> float:
    """Seconds to push every message through `connections` sockets, reply by reply, with
    our sender's dialogue: PIPELINING (RFC 2920), the envelope in one write and each
    message's data followed at once by the next message's envelope (one round trip a
    message)."""
    jobs = list(reversed(messages))
    lock = threading.Lock()

    def take() -> tuple[str, bytes] | None:
        with lock:
            return jobs.pop() if jobs else None

    def envelope(rcpt: str) -> bytes:
        return f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode()

    def replies(sock: socket.socket, count: int) -> None:
        got = b""
        while got.count(b"\r\n") < count:
            got += sock.recv(4096)
        assert all(line[:1] in (b"2", b"3") for line in got.split(b"\r\n")[:-1]), got

    def work() -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        replies(sock, 1)
        sock.sendall(b"EHLO bench\r\n")
        replies(sock, 3)
        job = take()
        if job is not None:
            sock.sendall(envelope(job[0]))
            replies(sock, 3)
        while job is not None:
            following = take()
            if following is None:
                sock.sendall(job[1])
                replies(sock, 1)
            else:  # the data, the next envelope: their 1 + 3 replies
                sock.sendall(job[1] + envelope(following[0]))
                replies(sock, 4)
            job = following
        sock.sendall(b"QUIT\r\n")
        sock.close()

    began = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - began


def prepared(site: Path) -> list[tuple[str, bytes]]:
    import re

    out = []
    for path in sorted((site / "outbox" / "new").glob("*.eml")):
        raw = path.read_bytes()
        to = re.search(rb"^To: .*<(.+?)>", raw, re.M)
        assert to is not None
        stuffed = raw.replace(b"\r\n.", b"\r\n..")
        out.append((to.group(1).decode(), stuffed + b".\r\n"))
    return out


# --- our sender -----------------------------------------------------------------------------

RUN_TIMES: dict[Path, tuple[float, float]] = {}  # site → its run's (wall, CPU) seconds


def build_site(root: Path, count: int, port: int, signing: str = "none") -> Path:
    """A site with `count` subscribers whose real `newsletter run` filled the outbox (signed
    with `signing`'s keys, as [dkim] says); the run's time goes into RUN_TIMES."""
    import resource

    from pipeline.run import run

    site = root / f"site-{count}" if signing == "none" else root / f"site-{count}-{signing}"
    shutil.copytree(REPO / "articles", site / "articles")
    toml = (REPO / "newsletter.toml").read_text()
    toml += f'\n[smtp]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\n'
    (site / "newsletter.toml").write_text(toml)
    rows = [f"reader{n:05d}@example.org,Reader {n},,active" for n in range(count)]
    (site / "subscribers.csv").write_text("email,name,categories,status\n" + "\n".join(rows))
    if signing != "none":
        make_keys(site)
        set_signing(site, signing)
    quiet_disk()
    used, began = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    report = run(site)
    after = resource.getrusage(resource.RUSAGE_SELF)
    RUN_TIMES[site] = (time.perf_counter() - began, after.ru_utime - used.ru_utime
                       + after.ru_stime - used.ru_stime)
    assert report.written == count and not report.problems, report
    state = site / ".newsletter"
    shutil.copy(state / "state.sqlite3", state / "pristine.sqlite3")
    return site


def reset(site: Path) -> None:
    outbox, state = site / "outbox", site / ".newsletter"
    for name in ("sent", "failed"):
        folder = outbox / name
        if folder.is_dir():
            for path in folder.iterdir():
                if path.suffix == ".eml":
                    os.rename(path, outbox / "new" / path.name)
                else:
                    path.unlink()
    for suffix in ("-wal", "-shm"):
        (state / f"state.sqlite3{suffix}").unlink(missing_ok=True)
    shutil.copy(state / "pristine.sqlite3", state / "state.sqlite3")


KEY_FILES = {"rsa": "dkim-rsa.pem", "ed25519": "dkim-ed25519.pem"}
SIGNINGS = {"rsa": ("rsa",), "ed25519": ("ed25519",), "both": ("rsa", "ed25519")}


def make_keys(site: Path) -> None:
    """An RSA-2048 and an Ed25519 private key for DKIM, in the site folder."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    keys = {"rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ed25519": ed25519.Ed25519PrivateKey.generate()}
    for kind, key in keys.items():
        (site / KEY_FILES[kind]).write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))


def set_signing(site: Path, signing: str) -> None:
    """[dkim] for `signing` ("none", "rsa", "ed25519" or "both") at the end of the config."""
    toml = site / "newsletter.toml"
    text = toml.read_text().split("\n[dkim]\n")[0]
    lines = []
    for n, kind in enumerate(SIGNINGS.get(signing, ())):
        prefix = "second_" if n else ""
        lines += [f'{prefix}selector = "bench-{kind}"', f'{prefix}private_key = '
                  f'"{KEY_FILES[kind]}"']
    toml.write_text(text + ("\n[dkim]\n" + "\n".join(lines) + "\n" if lines else ""))


def count_signing() -> list[int]:
    """Counts every message `send` signs from now on (in the one-element list): those it
    finds not signed as configured."""
    from pipeline.mail.dkim import DkimSigner

    count, ensure = [0], DkimSigner.ensure_signed

    def counted(self: DkimSigner, message: bytes) -> bytes:
        count[0] += not self.signed_as_configured(message)
        return ensure(self, message)

    DkimSigner.ensure_signed = counted  # type: ignore[method-assign]
    return count


def ours(site: Path) -> float:
    from pipeline.delivery.send import send

    began = time.perf_counter()
    report = send(site)
    took = time.perf_counter() - began
    assert report.sent == report.due and not report.failed, report
    return took


def own_cpu() -> float:
    """CPU seconds (user + system) this process has used so far."""
    import resource

    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far (clock ticks: 10 ms)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(run: Callable[[], float], sink: int, cpu: dict[str, list[float]], name: str
          ) -> float:
    """run()'s seconds; its CPU and the sink's during it go into cpu[name], cpu[name+" sink"]."""
    mine, theirs = own_cpu(), cpu_of(sink)
    took = run()
    cpu.setdefault(name, []).append(own_cpu() - mine)
    cpu.setdefault(name + " sink", []).append(cpu_of(sink) - theirs)
    return took


def quiet_disk(limit: float = 15.0) -> None:
    """Wait (at most `limit` seconds) until the disk has been idle for a moment."""
    os.sync()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        some = Path("/proc/pressure/io").read_text().split()[1]  # "avg10=…"
        if float(some.split("=")[1]) < 1.0:
            return
        time.sleep(0.5)


def figures(name: str, count: int, times: list[float]) -> float:
    rates = sorted(count / t for t in times)
    median = statistics.median(rates)
    print(f"{name:<34} {median:8,.0f} msg/s  (min {rates[0]:,.0f} – max {rates[-1]:,.0f}, "
          f"{len(rates)} runs)", flush=True)
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tmpfs", action="store_true", help="keep the site in /dev/shm")
    parser.add_argument("--signed", default="", metavar="KINDS",
                        help="also time DKIM-signed sends of the same messages, each run "
                             "beside an unsigned one: any of rsa,ed25519,both")
    parser.add_argument("--aiosmtpd", type=int, default=0, metavar="N",
                        help="also time N messages against aiosmtpd")
    parser.add_argument("--checkout", type=Path, metavar="DIR",
                        help="time the sender of another checkout (e.g. main's) instead")
    parser.add_argument("--sink-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--aiosmtpd-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink_server:
        return serve_sink(args.sink_server)
    if args.aiosmtpd_server:
        return serve_aiosmtpd(args.aiosmtpd_server)
    if args.checkout:
        sys.path.insert(0, str(args.checkout.resolve()))

    from pipeline.core.config import load_config
    from pipeline.delivery.settings import delivery_settings

    root = Path(tempfile.mkdtemp(prefix="send-bench-", dir="/dev/shm" if args.tmpfs else None))
    servers = []
    try:
        sink, port = start_server("sink")
        servers.append(sink)
        # A small site sent once, untimed, first: the first send in a process imports the
        # sending modules (~12 ms here, printed below), which would fall into one of the timed
        # runs and not the ceiling's (the CLI pays it once a run: bench/noop.py, cold.py).
        warm = build_site(root, 20, port, "both" if args.signed else "none")
        first = ours(warm)
        reset(warm)
        print(f"first send in this process (20 messages, untimed): {first * 1e3:.0f} ms; "
              f"again: {ours(warm) * 1e3:.0f} ms", flush=True)
        print(f"building {args.messages:,} messages in {root} …", flush=True)
        site = build_site(root, args.messages, port)
        connections = delivery_settings(load_config(site)).settings.connections
        import pipeline
        print(f"the sender timed: {Path(pipeline.__file__).parent.parent}", flush=True)
        messages = prepared(site)
        size = statistics.mean(len(m) for _, m in messages) / 1024
        print(f"{len(messages):,} messages, {size:.1f} KB each on average; "
              f"{connections} connections; {os.cpu_count()} cores", flush=True)
        ceiling, sender, cpu = [], [], {}
        for _ in range(args.runs):
            quiet_disk()
            ceiling.append(timed(lambda: replay(messages, port, connections), sink.pid, cpu,
                                 "replay client"))
            reset(site)
            quiet_disk()
            sender.append(timed(lambda: ours(site), sink.pid, cpu, "newsletter send"))
        top = figures("ceiling (replay, sink)", len(messages), ceiling)
        mine = figures("newsletter send (sink)", len(messages), sender)
        print(f"{'our sender / ceiling':<34} {mine / top:8.0%}", flush=True)
        print(f"CPU per message, median (user + system; load average "
              f"{os.getloadavg()[0]:.1f}):", flush=True)
        for name, seconds in cpu.items():
            each = sorted(1e6 * s / len(messages) for s in seconds)
            print(f"  {name:<32} {statistics.median(each):6.0f} µs  (min {each[0]:.0f} – "
                  f"max {each[-1]:.0f})", flush=True)
        if args.aiosmtpd:
            server, aio_port = start_server("aiosmtpd")
            servers.append(server)
            few = messages[:args.aiosmtpd]
            small = build_site(root, args.aiosmtpd, aio_port)
            times = [replay(few, aio_port, connections) for _ in range(3)]
            figures("ceiling (replay, aiosmtpd)", len(few), times)
            runs = []
            for _ in range(3):
                reset(small)
                runs.append(ours(small))
            figures("newsletter send (aiosmtpd)", len(few), runs)
        if args.signed:
            kinds = args.signed.split(",")
            del messages  # the replay's copy: ~0.6 GB
            sites = {"none": site}
            for kind in kinds:
                print(f"building {args.messages:,} messages signed with {kind} …", flush=True)
                sites[kind] = build_site(root, args.messages, port, kind)
            signed_at_send = count_signing()
            times: dict[str, list[float]] = {kind: [] for kind in sites}
            for _ in range(args.runs):  # interleaved, so that they share the machine's noise
                for kind, each in sites.items():
                    reset(each)
                    quiet_disk()
                    times[kind].append(ours(each))
            assert signed_at_send == [0], f"send signed {signed_at_send[0]} messages again"
            plain = figures("newsletter send, unsigned (sink)", args.messages, times["none"])
            for kind in kinds:
                rate = figures(f"newsletter send, DKIM {kind} (sink)", args.messages,
                               times[kind])
                print(f"{'  signed / unsigned':<34} {rate / plain:8.2f}x", flush=True)
            print(f"newsletter run that wrote them ({args.messages:,} messages, one run each; "
                  f"load average {os.getloadavg()[0]:.1f}):", flush=True)
            for kind, each in sites.items():
                wall, cpu = RUN_TIMES[each]
                print(f"  {kind:<8} {wall:6.2f} s wall, {cpu:6.2f} s CPU "
                      f"({args.messages / wall:,.0f} msg/s)", flush=True)
    finally:
        for server in servers:
            server.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
