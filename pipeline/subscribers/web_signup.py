"""Public signup: `GET /subscribe` (the form) and `POST /subscribe` (a form post, or JSON from
the clinic's own site).

The answer is the same whether the address is new, pending, active, unsubscribed or bounced,
so no one learns who is on the list. A bot meets a honeypot field, a per-client limit (kept in
memory: it only has to slow one process's visitors) and a per-address limit kept in the ledger
(at most one confirmation an hour, across threads, processes and restarts), so a flood of
signups for a stranger's address sends them at most one message.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

from pipeline.core.addresses import normalise_address
from pipeline.core.config import Config
from pipeline.core.languages import N_
from pipeline.core.models import Subscriber, parse_categories
from pipeline.state.ledger import Ledger
from pipeline.state.signups import Signups
from pipeline.subscribers.web_pages import Page
from pipeline.subscribers.web_requests import Form

CONFIRMATION_EVERY = timedelta(hours=1)  # per address, whatever the number of signups
HONEYPOT = "website"  # hidden from people by the page's style; bots fill it in
WINDOW = 3600.0  # seconds over which a client's signups are counted
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?")


class ClientLimit:
    """At most `limit` signups per client address in any hour (sliding window)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: dict[str, deque[float]] = {}
        self.lock = threading.Lock()

    def allow(self, client: str) -> float:
        """0 if allowed (and counted), else seconds to wait."""
        now = time.monotonic()
        with self.lock:
            if len(self.seen) > 100_000:  # forget the quiet ones rather than grow forever
                self.seen = {k: v for k, v in self.seen.items() if v and v[-1] > now - WINDOW}
            times = self.seen.setdefault(client, deque())
            while times and times[0] <= now - WINDOW:
                times.popleft()
            if len(times) >= self.limit:
                return times[0] + WINDOW - now
            times.append(now)
            return 0.0


def own_origin(config: Config) -> str:
    parts = urlsplit(config.site_url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def origin_allowed(config: Config, origin: str) -> bool:
    """A browser's Origin header: our own site, or one the site lists. No header (a
    non-browser client, which CORS does not concern) is allowed."""
    origin = origin.rstrip("/").lower()
    return not origin or origin == own_origin(config) or origin in config.allowed_origins


def cors_headers(config: Config, origin: str) -> list[tuple[str, str]]:
    origin = origin.rstrip("/").lower()
    if origin and origin in config.allowed_origins:
        return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
    return [("Vary", "Origin")]


def preflight(config: Config, origin: str) -> Page:
    """OPTIONS /subscribe from another site's page about to POST JSON."""
    if not origin or origin.rstrip("/").lower() not in config.allowed_origins:
        raise Page(403, "forbidden")
    return Page(204, "subscribe_thanks", headers=[
        *cors_headers(config, origin), ("Access-Control-Allow-Methods", "POST"),
        ("Access-Control-Allow-Headers", "Content-Type"), ("Access-Control-Max-Age", "600")])


def form_address(config: Config, environ: dict) -> str:
    """Where the form was: the Referer without query (browsers often send only the origin),
    else the Origin, else our own page. Only a plain host and a percent-encoded path are kept:
    nothing holding an @ (no addresses) and no control characters (`history` prints it)."""
    for header in ("HTTP_REFERER", "HTTP_ORIGIN"):
        try:
            parts = urlsplit(environ.get(header, "")[:500])
        except ValueError:  # e.g. an unclosed IPv6 bracket
            continue
        if parts.scheme in ("http", "https") and _HOST.fullmatch(parts.netloc):
            path = quote(parts.path, safe="/-._~+,;=:")
            origin = f"{parts.scheme}://{parts.netloc.lower()}"
            return origin if "@" in parts.path else (origin + path)[:300]
    return config.site_url + "subscribe"


def signup(config: Config, ledger: Ledger, form: Form, environ: dict,
           offered: Callable[[], list[str]]) -> Page:
    """Handle one POST /subscribe; the same thanks page for every address."""
    from pipeline.subscribers.manage import send_confirmations

    thanks = Page(200, "subscribe_thanks", data={"ok": True, "message": (
        "If the address can receive the journal, a confirmation link is on its way.")})
    if any(v.strip() for v in form.get(HONEYPOT, [])):
        return thanks  # a bot: it learns nothing
    raw = (form.get("email") or [""])[0]
    try:
        address = normalise_address(raw[:320])
    except ValueError:
        raise Page(400, "subscribe_invalid", message=N_("That does not look like an email "
                   "address."), data={"ok": False, "error": "invalid email address"}) from None
    name = " ".join((form.get("name") or [""])[0].split())[:200]
    wanted = {t.casefold() for t in form.get("topics", [])[:100]}
    topics = parse_categories([t for t in offered() if t.casefold() in wanted])
    now = datetime.now(UTC)
    who = Signups(ledger).signup(Subscriber(address, name, topics), now,
                                        form=form_address(config, environ),
                                        every=CONFIRMATION_EVERY)
    if who is not None:
        send_confirmations(config, ledger, [who], now, again=True)
    return thanks


def resend(config: Config, ledger: Ledger, who: Subscriber) -> Page:
    """A new confirmation link for an expired one (same answer whatever happens)."""
    from pipeline.core.models import PENDING
    from pipeline.subscribers.manage import send_confirmations

    now = datetime.now(UTC)
    if who.status == PENDING and Signups(ledger).claim_confirmation(
            who.email, now, CONFIRMATION_EVERY):
        send_confirmations(config, ledger, [who], now, again=True)
    return Page(200, "confirm_resent")
