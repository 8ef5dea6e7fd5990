"""The index of the first release's unsubscribe tokens (table legacy_tokens, see migration
m008): a key from the token's SHA-256 → subscriber, per secret (by fingerprint). `serve`
fills it once per secret; a lookup is then one query, whatever the list's size. Kept apart
from subscribers.py for length; like it, the only code that touches these rows."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from pipeline.state.ledger import Ledger, transaction

_DONE = "legacy_tokens"  # the state row listing the fingerprints fully indexed


def token_key(token: str) -> int:
    return int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "big", signed=True)


class LegacyTokens:
    def __init__(self, ledger: Ledger) -> None:
        self._db = ledger._db

    def missing(self, fingerprints: Iterable[str]) -> list[str]:
        """The fingerprints not indexed yet."""
        done = self._done()
        return [f for f in fingerprints if f not in done]

    def _done(self) -> set[str]:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (_DONE,)).fetchone()
        return set(row[0].split()) if row else set()

    def store(self, fingerprint: str, rows: Iterable[tuple[str, int]], complete: bool = False
              ) -> None:
        """(token, subscriber id) rows made with the secret `fingerprint`, in one short
        transaction; `complete` marks that secret as fully indexed. Not synced to disk at
        commit: a power cut loses at most the last batches and the `complete` mark with them,
        and the next start indexes again."""
        hashed = sorted((token_key(token), sid) for token, sid in rows)
        with transaction(self._db, durable=False):
            self._db.executemany("INSERT OR IGNORE INTO legacy_tokens VALUES (?, ?, ?)",
                                [(h, sid, fingerprint) for h, sid in hashed])
            if complete:
                self._db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)",
                                (_DONE, " ".join(sorted(self._done() | {fingerprint}))))

    def owner(self, token: str) -> tuple[int, str] | None:
        """(subscriber id, secret fingerprint) of a first-release token, if indexed."""
        return self._db.execute(
            "SELECT subscriber_id, secret FROM legacy_tokens WHERE token_key = ?",
            (token_key(token),)).fetchone()

    def subscribers_after(self, after: int, limit: int) -> list[tuple[int, str]]:
        """(id, email) of subscribers after id `after`, in id order (what to index)."""
        return self._db.execute("SELECT id, email FROM subscribers WHERE id > ? ORDER BY id "
                               "LIMIT ?", (after, limit)).fetchall()
