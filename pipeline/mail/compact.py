"""The compact outbox (`[outbox] mode = "compact"`): a digest stored once per rendition, its
recipients beside it, each message assembled while it is sent.

outbox/compact/<digest prefix>/ holds, for one digest:
  rendition-N.json  a Composer's encoded pieces (Composer.frozen), written before any
                    recipient that uses it;
  recipients        one JSON line per recipient: [rendition, subscriber id, address, display
                    name, unsubscribe token], appended and synced in batches before the ledger
                    records the batch (as the Maildir's files are);
  journal           one line per outcome send reached (S sent, F failed, W withdrawn), appended
                    the moment the relay replies (as the Maildir's rename) and synced before
                    the ledger records it; the next send replays what the ledger missed.
A message is `Composer.assemble` of its rendition with its recipient's values: the bytes the
per-subscriber .eml would have had. Everything here is the owner's alone (0700/0600).
"""

from __future__ import annotations

import json
import json.encoder
import logging
import os
import shutil
import threading
import time
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from hashlib import sha256
from pathlib import Path

from pipeline.core.atomic import write_atomic
from pipeline.core.config import Config
from pipeline.core.models import Digest, Subscriber
from pipeline.mail.compose import Composer, display_name, message_prefix, token_of
from pipeline.mail.outbox import BATCH, _Recorder
from pipeline.state.ledger import Ledger

log = logging.getLogger("pipeline")
FOLDER = "compact"
RECIPIENTS, JOURNAL = "recipients", "journal"
HASH = slice(-20, -4)  # a message name's per-address part (message_name)
OUTCOMES = {"S": "sent", "F": "failed", "W": "withdrawn"}
_CODE = {state: code for code, state in OUTCOMES.items()}
_STATES = list(OUTCOMES.values())  # an outcome's state as 2 bits (Outcomes)
BUCKET_BITS = 12  # an index is sorted in 4,096 buckets of its hashes' top bits

Record = tuple[int, int, str, str, str]  # rendition, subscriber id, address, name, token


_quoted = json.encoder.encode_basestring  # type: ignore[attr-defined]  # C, "…" escaped


def record_line(index: int, subscriber: Subscriber, secret: bytes) -> bytes:
    """A recipient's line (JSON): what Composer.assemble needs besides the rendition."""
    return (f"[{index},{subscriber.id},{_quoted(subscriber.email)},"
            f"{_quoted(display_name(subscriber))},"
            f"{_quoted(token_of(secret, subscriber))}]\n").encode()


def parse_record(line: bytes) -> Record:
    return tuple(json.loads(line))  # type: ignore[return-value]


def store_name(message: str) -> str:
    """The store folder of a digest message's name: its prefix without the trailing dash."""
    return message[:-21]


class CompactStore:
    """One digest's compact store."""

    def __init__(self, outbox_dir: Path, name: str) -> None:
        self.dir = outbox_dir / FOLDER / name
        self.recipients = self.dir / RECIPIENTS
        self.journal = self.dir / JOURNAL

    @classmethod
    def of(cls, outbox_dir: Path, digest: Digest) -> CompactStore:
        return cls(outbox_dir, message_prefix(digest)[:-1])

    def exists(self) -> bool:
        return self.recipients.is_file()

    def prepare(self) -> None:
        for folder in (self.dir.parent.parent, self.dir.parent, self.dir):
            folder.mkdir(exist_ok=True)
            if folder.stat().st_mode & 0o777 != 0o700:
                os.chmod(folder, 0o700)

    # --- renditions ---------------------------------------------------------------------

    def renditions(self) -> dict[int, Composer]:
        found = {}
        for path in self.dir.glob("rendition-*.json"):
            found[int(path.stem.split("-")[1])] = Composer.thawed(json.loads(path.read_bytes()))
        return found

    def rendition_slugs(self) -> dict[tuple[str, ...], int]:
        return {tuple(json.loads(p.read_bytes())["slugs"]): int(p.stem.split("-")[1])
                for p in self.dir.glob("rendition-*.json")}

    def add_rendition(self, index: int, composer: Composer) -> None:
        state = composer.frozen() | {"slugs": list(composer.digest.slugs)}
        write_atomic(self.dir / f"rendition-{index}.json",
                     json.dumps(state, ensure_ascii=True).encode(), mode=0o600)

    # --- recipients ---------------------------------------------------------------------

    def records(self) -> Iterator[Record]:
        """Every complete recipient line (a killed writer may have left half of one)."""
        try:
            f = open(self.recipients, "rb")  # noqa: SIM115
        except FileNotFoundError:
            return
        with f:
            for line in f:
                if line.endswith(b"\n"):
                    yield parse_record(line)

    def open_for_append(self) -> int:
        """The recipients file for appending, cut after its last complete line."""
        fd = os.open(self.recipients, os.O_RDWR | os.O_CREAT, 0o600)
        size = os.fstat(fd).st_size
        if size:
            with open(self.recipients, "rb") as f:
                f.seek(max(0, size - 65536))
                tail = f.read()
            keep = size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
            if keep != size:
                os.ftruncate(fd, keep)
        os.lseek(fd, 0, os.SEEK_END)
        return fd

    # --- the journal --------------------------------------------------------------------

    def outcomes(self) -> dict[str, tuple[str, float, str]]:
        """per-address part of the message name → (state, time, text) of every outcome."""
        found = {}
        try:
            data = self.journal.read_bytes()
        except FileNotFoundError:
            return {}
        for line in data.split(b"\n")[:-1]:  # after the last newline: never whole
            parts = line.split(b" ", 3)
            try:
                state = OUTCOMES[parts[0].decode()]
                text = json.loads(parts[3]) if len(parts) == 4 else ""
                found[parts[1].decode()] = (state, float(parts[2]), text)
            except (KeyError, IndexError, ValueError):  # not a line we wrote: left alone
                log.warning("outbox: %s has a line it cannot read: %r", self.journal, line[:80])
        return found

    def outcome_index(self) -> Outcomes:
        """outcomes(), lean: for a send, whose journal may hold a million lines."""
        return Outcomes(self.journal)

    def remove(self, hashes: set[str]) -> int:
        """Drop the recipients and journal lines of these messages (erasure); returns how
        many lines went. The files are rewritten whole and replaced atomically."""
        gone = 0
        if self.recipients.exists():
            kept = []
            for line in self.recipients.read_bytes().splitlines(keepends=True):
                record = json.loads(line) if line.endswith(b"\n") else None
                if record is None:
                    continue
                if message_name_hash(record[2]) in hashes:
                    gone += 1
                else:
                    kept.append(line)
            if gone:
                write_atomic(self.recipients, b"".join(kept), mode=0o600)
        if self.journal.exists():
            lines = self.journal.read_bytes().splitlines(keepends=True)
            kept = [ln for ln in lines if ln.split(b" ", 2)[1:2] != [] and
                    ln.split(b" ", 2)[1].decode() not in hashes]
            if len(kept) != len(lines):
                gone += len(lines) - len(kept)
                write_atomic(self.journal, b"".join(kept), mode=0o600)
        return gone


def _outcome_line(line: bytes) -> tuple[str, str, float, str]:
    """(per-address part, state, time, text) of a journal line; ValueError if not ours."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    try:
        state = OUTCOMES[parts[0].decode()]
        text = json.loads(parts[3]) if len(parts) == 4 else ""
        return parts[1].decode(), state, float(parts[2]), text
    except (KeyError, IndexError, ValueError, UnicodeDecodeError):
        raise ValueError(line[:80]) from None


class Outcomes:
    """A journal's outcomes as a send looks them up: each message's last, its name hash as
    a 64-bit number in a sorted array, beside where its line starts and its state (16 bytes
    an outcome; a dict of them took ~250). A line's text is read again when asked for."""

    def __init__(self, path: Path) -> None:
        self.path = path
        keys, places = array("Q"), array("Q")
        position = 0
        try:
            f = open(path, "rb", buffering=1 << 20)  # noqa: SIM115
        except FileNotFoundError:
            f = None
        if f is not None:
            with f:
                for line in f:
                    if not line.endswith(b"\n"):  # after the last newline: never whole
                        break
                    try:
                        key, state, _, _ = _outcome_line(line)
                        number = int(key, 16)
                    except ValueError:  # not a line we wrote: left alone
                        log.warning("outbox: %s has a line it cannot read: %r", path, line[:80])
                    else:
                        keys.append(number)
                        places.append(position << 2 | _STATES.index(state))
                    position += len(line)
        keys, places = sorted_by_key(keys, places)
        self.keys, self.places = array("Q"), array("Q")
        for n, key in enumerate(keys):  # each message's last outcome only
            if n + 1 == len(keys) or keys[n + 1] != key:
                self.keys.append(key)
                self.places.append(places[n])

    def __len__(self) -> int:
        return len(self.keys)

    def _at(self, key: str) -> int:
        number = int(key, 16)
        at = bisect_right(self.keys, number) - 1
        return at if at >= 0 and self.keys[at] == number else -1

    def __contains__(self, key: str) -> bool:
        return self._at(key) >= 0

    def count(self, state: str) -> int:
        code = _STATES.index(state)
        return sum(1 for place in self.places if place & 3 == code)

    def get(self, key: str) -> tuple[str, float, str] | None:
        """(state, time, text) of the message's last outcome, or None."""
        at = self._at(key)
        if at < 0:
            return None
        with open(self.path, "rb") as f:
            f.seek(self.places[at] >> 2)
            _, state, when, text = _outcome_line(f.readline())
        return state, when, text


def sorted_by_key(keys: array, starts: array) -> tuple[array, array]:
    """Both arrays in the order of `keys`, equal keys in the order they came (`starts`
    grow with it): placed by bucket (the top bits, a counting sort), then each small bucket
    sorted. A sort of the whole took ~80 MB of Python ints at a million."""
    shift = 64 - BUCKET_BITS
    ends = [0] * ((1 << BUCKET_BITS) + 1)
    for key in keys:
        ends[(key >> shift) + 1] += 1
    for n in range(1, len(ends)):
        ends[n] += ends[n - 1]
    at = ends[:-1]
    sorted_keys, sorted_starts = array("Q", bytes(8 * len(keys))), array("Q", bytes(8 * len(keys)))
    for key, start in zip(keys, starts, strict=True):
        bucket = key >> shift
        place = at[bucket]
        sorted_keys[place], sorted_starts[place] = key, start
        at[bucket] = place + 1
    for bucket in range(1 << BUCKET_BITS):
        low, high = ends[bucket], ends[bucket + 1]
        if high - low > 1:  # (key, start): the starts keep equal keys in order
            pairs = sorted(zip(sorted_keys[low:high], sorted_starts[low:high], strict=True))
            sorted_keys[low:high] = array("Q", (k for k, _ in pairs))
            sorted_starts[low:high] = array("Q", (s for _, s in pairs))
    return sorted_keys, sorted_starts


def message_name_hash(email: str) -> str:
    return sha256(email.lower().encode()).hexdigest()[:16]


class Journal:
    """A store's journal, open for appending from the send's worker threads."""

    def __init__(self, store: CompactStore) -> None:
        self.fd = os.open(store.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.lock = threading.Lock()
        self.dirty = False

    def add(self, name: str, state: str, text: str = "") -> None:
        """One outcome, one write(2): in the kernel's hands at once (a kill cannot lose it)."""
        line = f"{_CODE[state]} {name[HASH]} {time.time():.3f}"
        if text:
            line += " " + json.dumps(text)
        data = (line + "\n").encode()
        with self.lock:
            os.write(self.fd, data)
            self.dirty = True

    def flush(self) -> None:
        if self.dirty:
            self.dirty = False
            os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def stores(outbox_dir: Path) -> list[CompactStore]:
    folder = outbox_dir / FOLDER
    if not folder.is_dir():
        return []
    return [CompactStore(outbox_dir, p.name) for p in sorted(folder.iterdir())
            if (p / RECIPIENTS).is_file()]


def remove_messages(outbox_dir: Path, names: Iterable[str]) -> int:
    """Erasure: these digest messages' recipients and outcomes leave their stores."""
    by_store: dict[str, set[str]] = {}
    for name in names:
        if name.startswith("digest-") and name.endswith(".eml"):
            by_store.setdefault(store_name(name), set()).add(name[HASH])
    return sum(CompactStore(outbox_dir, store).remove(hashes)
               for store, hashes in by_store.items()
               if (outbox_dir / FOLDER / store).is_dir())


def waiting_count(outbox_dir: Path, prefix: str = "") -> tuple[int, int]:
    """(messages waiting, messages sent) in the compact stores (of one digest's prefix).
    Lines counted, not parsed: `status` stays quick at a million recipients."""
    waiting = sent = 0
    for store in stores(outbox_dir):
        if prefix and store.dir.name != prefix.rstrip("-"):
            continue
        recipients = 0
        with open(store.recipients, "rb") as f:
            while chunk := f.read(1 << 20):
                recipients += chunk.count(b"\n")
        outcomes = store.outcome_index()
        waiting += recipients - len(outcomes)
        sent += outcomes.count("sent")
    return waiting, sent


def usage(outbox_dir: Path) -> tuple[int, int] | None:
    """(recipients, bytes) of every store; None without compact stores."""
    found = stores(outbox_dir)
    if not found:
        return None
    recipients = size = 0
    for store in found:
        for path in store.dir.iterdir():
            size += path.stat().st_size
        with open(store.recipients, "rb") as f:
            while chunk := f.read(1 << 20):
                recipients += chunk.count(b"\n")
    return recipients, size


def prune(outbox_dir: Path, before: datetime) -> int:
    """Delete the stores whose every message has an outcome, the last before `before`;
    returns how many files went."""
    gone = 0
    for store in stores(outbox_dir):
        outcomes = store.outcomes()
        if not store.journal.exists() or store.journal.stat().st_mtime >= before.timestamp():
            continue
        if any(message_name_hash(r[2]) not in outcomes for r in store.records()):
            continue
        gone += sum(1 for p in store.dir.iterdir() if p.is_file())
        shutil.rmtree(store.dir)
    return gone


def write_compact(digest: Digest, subscribers: Iterable[Subscriber], config: Config,
                  ledger: Ledger, secret: bytes, now: datetime,
                  rendition_for: Callable[[Subscriber], Digest | None] | None = None, *,
                  fresh: bool = False) -> int:
    """write_outbox in compact mode: the same contract (see there), one line per subscriber
    instead of one file."""
    store = CompactStore.of(config.outbox_dir, digest)
    store.prepare()
    done = set() if fresh else ledger.written_addresses(digest.id)
    stored = set() if fresh else {r[2] for r in store.records()}
    indexes = {} if fresh else store.rendition_slugs()
    composers: dict[tuple[str, ...], Composer] = {}
    prefix = message_prefix(digest)  # message_name, inlined: this runs once per subscriber
    fd = store.open_for_append()
    out = open(fd, "wb", buffering=1 << 20)  # noqa: SIM115
    written = 0
    batch: list[tuple[str, str]] = []
    try:
        with out, _Recorder(ledger, digest, now, store.dir) as recorder:
            for subscriber in subscribers:
                email = subscriber.email
                if email in done:
                    continue
                rendition = rendition_for(subscriber) if rendition_for else digest
                if rendition is None:
                    continue
                if email not in stored:
                    index = indexes.get(rendition.slugs)
                    if index is None:
                        index = indexes[rendition.slugs] = len(indexes)
                        composers[rendition.slugs] = Composer(rendition, config, secret)
                        store.add_rendition(index, composers[rendition.slugs])
                    out.write(record_line(index, subscriber, secret))
                    written += 1
                who = sha256(email.lower().encode()).hexdigest()[:16]
                batch.append((email, f"{prefix}{who}.eml"))
                if len(batch) >= BATCH:
                    out.flush()  # in the kernel's hands before the sync that precedes recording
                    recorder.add(batch)
                    batch = []
            out.flush()
            recorder.add(batch)
    finally:
        if not out.closed:
            out.close()
    ledger.complete_digest(digest.id)
    log.info("outbox: digest %d complete (compact), %d recipients written by this run",
             digest.id, written)
    return written
