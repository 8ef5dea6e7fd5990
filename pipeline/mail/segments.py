"""Segments: subscribers who chose the same categories get the same rendition of a digest.

A rendition holds the digest's entries in the chosen categories (all of them for those who
chose none). It is rendered once per distinct set of entries, however many subscribers or
segments share it, and frozen in the ledger before any message of it is written, so a run
that resumes after a kill writes byte for byte the same messages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from pipeline.core.config import Config
from pipeline.core.models import Article, Digest, Subscriber, segment_key
from pipeline.state.ledger import Ledger

log = logging.getLogger("pipeline")
# (articles, created, config) → (subject, html, text)
Render = Callable[[Sequence[Article], datetime, Config], tuple[str, str, str]]


def render_rendition(articles: Sequence[Article], created: datetime, config: Config
                     ) -> tuple[str, str, str]:
    from pipeline.publishing.digest import render_digest, subject_for

    html, text = render_digest(articles, created, config)
    return subject_for(articles, created, config), html, text


class Renditions:
    """A digest's renditions by segment: from the ledger, or rendered and frozen on first use."""

    def __init__(self, digest: Digest, articles: Iterable[Article], config: Config,
                 ledger: Ledger, render: Render | None = None) -> None:
        self.digest, self.config, self.ledger = digest, config, ledger
        self.render = render or render_rendition
        wanted = set(digest.slugs)
        # Entries in digest order; the digest's own copy is what subscribers without a choice
        # get. An entry deleted since the digest was frozen can only be left out of a segment
        # rendered later (when someone chose new categories between a kill and the resume).
        self.entries = {a.slug: a for a in articles if a.slug in wanted}
        self.by_segment: dict[str, Digest | None] = {"": digest}
        self.rendered = 0  # renditions this object rendered (not found in the ledger)

    def for_subscriber(self, subscriber: Subscriber) -> Digest | None:
        """What this subscriber gets, or None when nothing new is in their categories."""
        return self.for_segment(segment_key(subscriber.categories))

    def for_segment(self, segment: str) -> Digest | None:
        if segment not in self.by_segment:
            self.by_segment[segment] = self._resolve(segment)
        return self.by_segment[segment]

    def _resolve(self, segment: str) -> Digest | None:
        chosen = set(segment.split(";"))
        slugs = tuple(slug for slug in self.digest.slugs if slug in self.entries
                      and self.entries[slug].category.casefold().strip() in chosen)
        if not slugs:
            return None
        if slugs == self.digest.slugs:
            return self.digest
        frozen = self.ledger.rendition(self.digest, slugs)
        if frozen is not None:
            return frozen
        subject, html, text = self.render([self.entries[s] for s in slugs],
                                          self.digest.created, self.config)
        rendition = Digest(self.digest.id, self.digest.key, self.digest.created, subject,
                           html, text, slugs)
        self.ledger.store_rendition(rendition)
        self.rendered += 1
        log.info("digest %d: rendition of %d entries for segment %r", self.digest.id,
                 len(slugs), segment)
        return rendition
