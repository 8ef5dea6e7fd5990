"""Who a link's token belongs to, at the same cost whatever the list's size and whatever the
token looks like: its shape is checked first (link_tokens), then one indexed query, then one
HMAC per secret. The first release's tokens (an HMAC of the address alone) are found through
an index that `serve` builds once per secret at start (state/legacy_tokens.py)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pipeline.core.models import Subscriber
from pipeline.mail.tokens import token_id, token_matches, token_valid, unsubscribe_token
from pipeline.state.ledger import Ledger
from pipeline.state.legacy_tokens import LegacyTokens
from pipeline.state.subscribers import SubscriberBook
from pipeline.subscribers import link_tokens
from pipeline.subscribers.web_pages import Page

log = logging.getLogger("pipeline")
INDEX_PAGE = 5000  # subscribers hashed per transaction while indexing legacy tokens


class Tokens:
    def __init__(self, secrets: list[bytes]) -> None:
        self.secrets = secrets
        self.by_fingerprint = {link_tokens.fingerprint(s): s for s in secrets}

    def index_legacy(self, ledger: Ledger) -> int:
        """Index first-release tokens for each secret not indexed yet; returns how many
        secrets were indexed. About 30 s per secret per 1,000,000 subscribers, once.
        Subscribers added later never got such a link (no release since makes them), so once
        is enough."""
        index = LegacyTokens(ledger)
        missing = index.missing(self.by_fingerprint)
        for fp in missing:
            secret, last = self.by_fingerprint[fp], 0
            while True:
                page = index.subscribers_after(last, INDEX_PAGE)
                done = len(page) < INDEX_PAGE
                index.store(fp, [(unsubscribe_token(secret, email), sid) for sid, email in page],
                            complete=done)
                if done:
                    break
                last = page[-1][0]
        if missing:
            log.info("serve: indexed first-release unsubscribe links for %d secret(s)",
                     len(missing))
        return len(missing)

    def subscriber(self, ledger: Ledger, token: str, purpose: str = "unsubscribe"
                   ) -> Subscriber:
        """The subscriber an unsubscribe/preferences (or untimed confirmation) token names;
        Page(400) for anything else."""
        book = SubscriberBook(ledger)
        kind = link_tokens.shape(token)
        found = None
        if kind == "id":
            claimed = token_id(token)
            candidate = book.by_id(claimed) if claimed is not None else None
            if candidate and token_valid(self.secrets, candidate.id, candidate.email, token,
                                         purpose):
                found = candidate
        elif kind == "legacy" and purpose == "unsubscribe":
            hit = LegacyTokens(ledger).owner(token)
            candidate = book.by_id(hit[0]) if hit else None
            secret = self.by_fingerprint.get(hit[1]) if hit else None
            if candidate and secret and token_matches(secret, candidate.email, token):
                found = candidate
        if found is None:
            raise Page(400, "link_broken")
        return found

    def confirmation(self, ledger: Ledger, token: str, days: int) -> tuple[Subscriber, bool]:
        """(the subscriber, whether the link is still valid) for a genuine confirmation token;
        Page(400) for anything else. A token from before links carried their time counts as
        expired."""
        parts = link_tokens.timed_parts(token)
        if parts is None:
            return self.subscriber(ledger, token, "confirm"), False
        who = SubscriberBook(ledger).by_id(parts[0])
        if who is None or not link_tokens.confirmation_valid(self.secrets, who.id, who.email,
                                                             token, parts[1]):
            raise Page(400, "link_broken")
        age = datetime.now(UTC) - parts[1]
        return who, age.total_seconds() <= days * 86400 and age.total_seconds() > -300
