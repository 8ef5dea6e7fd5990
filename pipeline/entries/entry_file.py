"""One entry file read: its bytes, the checks every file gets (size, encoding, binary,
empty), then the reader for its format. collect.py decides which files to read and where."""

from __future__ import annotations

import codecs
import os
from functools import lru_cache
from pathlib import Path

from pipeline.core.config import Config
from pipeline.core.errors import EntryError, Problem
from pipeline.core.models import Article
from pipeline.entries.readers import READERS, LazyReader

MAX_ENTRY_BYTES = 1_000_000


def shown_path(key: str) -> Path:
    """Path(key), a third cheaper: the folder's Path is made once (most are articles/)."""
    folder, _, name = key.rpartition("/")
    return _folder(folder) / name if folder else Path(key)


@lru_cache(maxsize=1024)
def _folder(folder: str) -> Path:
    return Path(folder)


def read_file(name: str, size: int) -> bytes:
    """A file's bytes, read at its size as scanned (a third of Path.read_bytes's cost), then
    to its end if it has grown since, though never far past the limit."""
    fd = os.open(name, os.O_RDONLY)
    try:
        data = os.read(fd, size + 1)
        if len(data) > size:
            chunks = [data]
            while len(data) <= MAX_ENTRY_BYTES and (chunk := os.read(fd, 1 << 16)):
                chunks.append(chunk)
                data = b"".join(chunks)
    finally:
        os.close(fd)
    return data


def load_body(path: Path, shown: Path, url: str, config: Config) -> str:
    """An entry's body HTML, read again from its file: for entries recalled from the cache.
    By the reader's own body reader if it has one (no second parse of the fields)."""
    reader = READERS[path.suffix.lower()]
    read_body = reader.body_reader() if isinstance(reader, LazyReader) else None
    if read_body is not None:
        return read_body(path.read_bytes().decode("utf-8-sig"), url)
    article, _ = read_entry(path, shown, config)
    if article is None:
        raise EntryError(Problem(shown, "file", "changed while the run was using it",
                                 "run again"))
    return article.body_html


def read_entry(path: Path, shown: Path, config: Config, data: bytes | None = None
               ) -> tuple[Article | None, list[Problem]]:
    """Read one entry file; `shown` is the path used in messages (relative to the site)."""
    size = len(data) if data else path.stat().st_size
    if data is None and size <= MAX_ENTRY_BYTES:
        data = path.read_bytes()
    return read_data(shown, path.suffix.lower(), config, size, data)


def read_data(shown: Path, suffix: str, config: Config, size: int, data: bytes | None
               ) -> tuple[Article | None, list[Problem]]:
    """An entry file's bytes (None: not read, for it is `size` bytes, over the limit) checked
    and handed to the reader for `suffix`."""
    if data is None or size > MAX_ENTRY_BYTES:
        raise EntryError(Problem(shown, "file", f"is {size:,} bytes, over the "
                                 f"{MAX_ENTRY_BYTES:,} byte limit", "split it or trim it"))
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # else "binary" below
        raise EntryError(Problem(shown, "file", "is UTF-16, not UTF-8",
                                 "save it as UTF-8 in your editor"))
    if b"\x00" in data:
        raise EntryError(Problem(shown, "file", "is binary, not text",
                                 "move it out of articles/"))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise EntryError(Problem(shown, "file", f"is not UTF-8 (byte {exc.start})",
                                 "save it as UTF-8 in your editor", line=line)) from None
    if not text or text.isspace():  # not text.strip(): no copy of the whole text
        raise EntryError(Problem(shown, "file", "is empty", "write the entry or delete the file"))
    return READERS[suffix](shown, text, config)
