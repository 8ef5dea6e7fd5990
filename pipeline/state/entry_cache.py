"""The ledger's cache of entry readings: one row per entry file (how it is read and encoded
is entries/cache.py's business; the ledger only keeps the rows)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CachedEntry:
    size: int
    mtime_ns: int
    checksum: str
    payload: str
