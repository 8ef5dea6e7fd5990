"""Where returning mail is read from: a Maildir folder (what Postfix or Dovecot deliver), an
mbox file, single .eml files, or an IMAP mailbox.

Each source yields Items: a name to report, the size (known before anything is read, so a huge
message is refused unread), a way to read the bytes, and `settle`, called once the ledger has
recorded the mail, to move it out of the way. Nothing is ever deleted: a Maildir message moves
from new/ to cur/ marked seen, an IMAP message moves to the processed (or kept) folder; an mbox
or .eml file stays where it is and the ledger remembers it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.bounce_settings import IMAP_PASSWORD_ENV, LOOPBACK, BounceSettings


@dataclass
class Item:
    name: str  # shown in reports
    size: int
    read: Callable[[], bytes]
    settle: Callable[[bool], None]  # True: keep it aside (changed nothing, needs a look)


class SourceError(Exception):
    """A path or mailbox cannot be read at all (the other sources still are)."""


def _nothing(keep: bool) -> None:
    return None


def local_items(path: Path) -> Iterator[Item]:
    """The messages at a path: a Maildir (has new/ and cur/), a folder of .eml files, an mbox
    file (starts with "From "), or one .eml file."""
    if path.is_dir():
        if (path / "new").is_dir() and (path / "cur").is_dir():
            yield from _maildir(path)
        else:
            for file in sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".eml"):
                yield _file_item(file)
        return
    if not path.is_file():
        raise SourceError(f"{path}: no such file or folder")
    with path.open("rb") as f:
        head = f.read(5)
    yield from (_mbox(path) if head == b"From " else [_file_item(path)])


def _file_item(path: Path) -> Item:
    return Item(str(path), path.stat().st_size, path.read_bytes, _nothing)


def _maildir(root: Path) -> Iterator[Item]:
    for sub in ("new", "cur"):
        folder = root / sub
        for name in sorted(os.listdir(folder)):
            if name.startswith("."):
                continue
            path = folder / name
            try:
                size = path.stat().st_size
            except FileNotFoundError:  # moved by a mail client meanwhile
                continue
            settle = _to_cur(root, name) if sub == "new" else _nothing
            yield Item(str(path), size, path.read_bytes, settle)


def _to_cur(root: Path, name: str) -> Callable[[bool], None]:
    def settle(keep: bool) -> None:
        # Seen ("S"), and flagged ("F") when kept aside: a mail client shows it for a look.
        flags = ":2,FS" if keep else ":2,S"
        with contextlib.suppress(FileNotFoundError):  # a mail client moved it first: the
            # ledger has it either way
            os.rename(root / "new" / name, root / "cur" / (name.split(":", 1)[0] + flags))
    return settle


_FROM_LINE = re.compile(rb"From \S*.*\r?\n")


def _mbox(path: Path) -> Iterator[Item]:
    """Messages of an mbox file, found by their "From " lines (after a blank line), with their
    sizes from the offsets, so a huge one is never read."""
    starts: list[int] = []
    with path.open("rb") as f:
        offset, blank = 0, True
        for line in f:
            if blank and line.startswith(b"From ") and _FROM_LINE.fullmatch(line):
                starts.append(offset)
            blank = line in (b"\n", b"\r\n")
            offset += len(line)
    ends = [*starts[1:], offset]
    for number, (start, end) in enumerate(zip(starts, ends, strict=True), 1):
        yield Item(f"{path}#{number}", end - start, _reader(path, start, end), _nothing)


def _reader(path: Path, start: int, end: int) -> Callable[[], bytes]:
    def read() -> bytes:
        with path.open("rb") as f:
            f.seek(start)
            data = f.read(end - start)
        _first, _, rest = data.partition(b"\n")  # the "From " line is the mbox's, not the mail's
        return re.sub(rb"(?m)^>(>*From )", rb"\1", rest)
    return read


class ImapSource:
    """The [bounces] IMAP mailbox: messages read with BODY.PEEK (left unseen), each moved to
    the processed or kept folder once recorded."""

    def __init__(self, settings: BounceSettings, timeout: float = 60.0) -> None:
        import imaplib
        import ssl

        self.settings = settings
        password = os.environ.get(IMAP_PASSWORD_ENV, "")
        host, port = settings.imap_host, settings.imap_port
        context = ssl.create_default_context()  # the system's CAs, host names checked
        if settings.imap_ca_file is not None:
            context.load_verify_locations(cafile=settings.imap_ca_file)
        try:
            if settings.imap_tls == "implicit":
                self.imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    host, port, ssl_context=context, timeout=timeout)
            else:
                self.imap = imaplib.IMAP4(host, port, timeout=timeout)
                if settings.imap_tls == "starttls":
                    self.imap.starttls(context)
                elif host not in LOOPBACK:  # the config check says so too; never send it plain
                    raise ImapRefused(f"bounces.imap_tls is \"none\" for {host}")
        except ssl.SSLCertVerificationError as exc:
            raise ImapRefused(f"the IMAP server {host}:{port} has a certificate we do not "
                              f"trust ({exc.verify_message}): check bounces.imap_host, or "
                              "name your CA in bounces.imap_ca_file") from None
        except (OSError, imaplib.IMAP4.error) as exc:
            raise ImapDown(f"cannot reach the IMAP server {host}:{port} ({exc})") from None
        try:
            self.imap.login(settings.imap_user, password)
        except imaplib.IMAP4.error:
            self.close()
            raise ImapRefused(f"the IMAP server {host} refused the login of "
                              f"{settings.imap_user!r}: check bounces.imap_user and "
                              f"{IMAP_PASSWORD_ENV}") from None
        for folder in (settings.processed_folder, settings.kept_folder):
            self.imap.create(_quoted(folder))  # "already exists" is an answer, not an error
        kind, _ = self.imap.select(_quoted(settings.imap_folder))
        if kind != "OK":
            self.close()
            raise ImapRefused(f"no IMAP folder {settings.imap_folder!r} (bounces.imap_folder)")
        _, answer = self.imap.capability()  # after login: servers tell more than at greeting
        self.can_move = b"MOVE" in b" ".join(a for a in answer if isinstance(a, bytes)).upper()

    def items(self) -> Iterator[Item]:
        """Every message in the folder, sizes first (one command), bodies when read."""
        kind, data = self.imap.uid("FETCH", "1:*", "(RFC822.SIZE)")
        sizes = {}
        for line in data if kind == "OK" else ():
            found = re.search(rb"UID (\d+).*RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+).*UID (\d+)",
                              line if isinstance(line, bytes) else b"")
            if found:
                uid, size = (found[1], found[2]) if found[1] else (found[4], found[3])
                sizes[int(uid)] = int(size)
        for uid, size in sorted(sizes.items()):
            yield Item(f"imap:{self.settings.imap_folder}/{uid}", size,
                       self._reader(str(uid)), self._mover(str(uid)))

    def _reader(self, uid: str) -> Callable[[], bytes]:
        def read() -> bytes:
            _kind, data = self.imap.uid("FETCH", uid, "(BODY.PEEK[])")
            for part in data or ():
                if isinstance(part, tuple):
                    return part[1]
            raise SourceError(f"imap:{self.settings.imap_folder}/{uid}: could not be fetched")
        return read

    def _mover(self, uid: str) -> Callable[[bool], None]:
        def settle(keep: bool) -> None:
            folder = _quoted(self.settings.kept_folder if keep
                             else self.settings.processed_folder)
            if self.can_move:
                self.imap.uid("MOVE", uid, folder)
            else:  # RFC 6851 MOVE is missing: copy, then expunge only this one (UIDPLUS)
                self.imap.uid("COPY", uid, folder)
                self.imap.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
                self.imap.uid("EXPUNGE", uid)
        return settle

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.imap.logout()


class ImapDown(SourceError):
    """The IMAP server cannot be reached: try again later."""


class ImapRefused(SourceError):
    """The IMAP server refuses the login or the folder: fix the settings."""


def _quoted(folder: str) -> str:
    return '"' + folder + '"'  # names with " or \\ are refused by the config check
