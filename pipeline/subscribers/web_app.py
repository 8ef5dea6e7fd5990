"""`newsletter serve`'s application: the pages behind the links in our messages, and the
public signup form (served by web_server.py).

GET never changes anything: link scanners and previews follow GETs, and a GET reads in a
read-only transaction. A change takes a POST: the page's button, or a mail client's RFC 8058
one-click POST (`List-Unsubscribe=One-Click`), which gets its answer at once, with no redirect;
each is one short write, committed (with the others that came meanwhile) before its answer,
and records its source in the audit trail. A bad or
forged token changes nothing and gets a 400.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from pipeline.core.config import Config, load_config
from pipeline.core.models import ACTIVE, PENDING, UNSUBSCRIBED
from pipeline.state.group_commit import GroupCommit
from pipeline.state.ledger import Ledger, connect_ledger, open_ledger
from pipeline.state.secret import load_secrets
from pipeline.state.subscribers import SubscriberBook
from pipeline.subscribers import web_signup
from pipeline.subscribers.returns.sns import SES_PATH, SesNotifications
from pipeline.subscribers.web_pages import Page, Pages
from pipeline.subscribers.web_requests import Form, loggable_target, read_form
from pipeline.subscribers.web_tokens import Tokens

if TYPE_CHECKING:
    from pipeline.subscribers.web_server import WebServer

log = logging.getLogger("pipeline")
CATEGORIES_TTL = 300.0  # seconds a list of the journal's categories is reused
StartResponse = Callable[..., object]


def masked(email: str) -> str:
    """a•••@example.org: enough for the owner to recognise, little for anyone else."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}"


class App:
    def __init__(self, site: Path) -> None:
        self.config: Config = load_config(site)
        self.pages = Pages(self.config)
        self.tokens = Tokens(load_secrets(self.config.state_dir))
        self.ses_notifications = SesNotifications(self.config)
        with open_ledger(self.config.state_dir) as ledger:  # migrations: once, here
            self.tokens.index_legacy(ledger)
        self._local = threading.local()
        # Every change goes through one writer thread: SQLite takes one writer at a time
        # anyway, and changes that queue during a commit share the next one (and its sync).
        self.writer = GroupCommit(lambda: connect_ledger(self.config.state_dir))
        self._categories: tuple[float, list[str]] = (-CATEGORIES_TTL, [])
        self._categories_lock = threading.Lock()
        self.client_limit = web_signup.ClientLimit(self.config.signups_per_client_hour)

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").rstrip("/").endswith(SES_PATH):  # SES's notifications
            return self.ses_notifications(environ, start_response)
        as_json = False
        try:
            page, as_json = self.route(environ)
        except Page as answer:
            page = answer
            as_json = "json" in environ.get("CONTENT_TYPE", "").lower()
        except Exception:
            log.exception("serve: %s %s failed", environ.get("REQUEST_METHOD"),
                          loggable_target(environ))
            page = Page(500, "error")
        status, headers, body = self.pages.render(page, as_json)
        if page.code == 204:
            body = b""
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def close(self) -> None:
        self.writer.close()

    def ledger(self) -> Ledger:
        """This thread's connection (opened once: no migration, no schema check per request)."""
        found = getattr(self._local, "ledger", None)
        if found is None:
            found = self._local.ledger = connect_ledger(self.config.state_dir)
        return found

    def route(self, environ: dict) -> tuple[Page, bool]:
        path = environ.get("PATH_INFO", "").rstrip("/").rsplit("/", 1)[-1]
        method = environ.get("REQUEST_METHOD", "GET").upper()
        handlers = {"unsubscribe": self.unsubscribe, "preferences": self.preferences,
                    "confirm": self.confirm}
        if path == "subscribe" and self.config.signup:
            return self.subscribe(environ, method)
        if path not in handlers:
            raise Page(404, "not_found")
        if method not in ("GET", "HEAD", "POST"):
            raise Page(405, "not_allowed", headers=[("Allow", "GET, HEAD, POST")])
        query = parse_qs(environ.get("QUERY_STRING", ""))
        form, _ = read_form(environ) if method == "POST" else ({}, False)
        token = (form.get("token") or query.get("token") or [""])[0]
        handler = handlers[path]
        if method == "POST":
            return self.writer.run(lambda writing: handler(writing, token, True, form)), False
        ledger = self.ledger()
        with SubscriberBook(ledger).reading():
            return handler(ledger, token, False, form), False

    def unsubscribe(self, ledger: Ledger, token: str, post: bool, form: Form) -> Page:
        who, book = self.tokens.subscriber(ledger, token), SubscriberBook(ledger)
        if post:
            one_click = form.get("List-Unsubscribe") == ["One-Click"]
            if not one_click and "confirm" not in form:
                raise Page(400, "nothing_changed")
            book.set_status_by_id(who.id, UNSUBSCRIBED, datetime.now(UTC),
                                  source="one-click" if one_click else "page")
            return Page(200, "unsubscribed", masked=masked(who.email),
                        already=who.status == UNSUBSCRIBED)
        if who.status == UNSUBSCRIBED:
            return Page(200, "unsubscribed", masked=masked(who.email), already=True)
        return Page(200, "unsubscribe", masked=masked(who.email), token=token)

    def preferences(self, ledger: Ledger, token: str, post: bool, form: Form) -> Page:
        who, book = self.tokens.subscriber(ledger, token), SubscriberBook(ledger)
        offered = self.categories(who.categories)
        if post:
            chosen = [c for c in form.get("category", []) if c in offered]
            book.set_categories(who.id, chosen, datetime.now(UTC), source="page")
            who = book.by_id(who.id) or who
        keys = {c.casefold() for c in who.categories}
        return Page(200, "preferences", token=token, saved=post, active=who.status == ACTIVE,
                    offered=[{"name": c, "checked": c.casefold() in keys} for c in offered])

    def confirm(self, ledger: Ledger, token: str, post: bool, form: Form) -> Page:
        who, fresh = self.tokens.confirmation(ledger, token, self.config.confirm_days)
        if who.status == ACTIVE:
            return Page(200, "confirmed", already=True, masked=masked(who.email))
        if who.status != PENDING:
            return Page(200, "confirm_left")
        if not fresh:
            if post and "resend" in form:
                return web_signup.resend(self.config, ledger, who)
            return Page(410, "confirm_expired", token=token)
        if post:
            SubscriberBook(ledger).set_status_by_id(who.id, ACTIVE, datetime.now(UTC),
                                                    source="confirmation")
            return Page(200, "confirmed", masked=masked(who.email))
        return Page(200, "confirm", masked=masked(who.email), token=token)

    def subscribe(self, environ: dict, method: str) -> tuple[Page, bool]:
        origin = environ.get("HTTP_ORIGIN", "")
        if method == "OPTIONS":
            return web_signup.preflight(self.config, origin), False
        if method in ("GET", "HEAD"):
            # No token in this page's URL; and with no-referrer a browser would post its form
            # with `Origin: null`, which the origin check refuses.
            return Page(200, "subscribe", topics=self.categories(()),
                        headers=[("Referrer-Policy", "same-origin")]), False
        if method != "POST":
            raise Page(405, "not_allowed", headers=[("Allow", "GET, HEAD, POST, OPTIONS")])
        cors = web_signup.cors_headers(self.config, origin)
        as_json = "json" in environ.get("CONTENT_TYPE", "").lower()
        if not web_signup.origin_allowed(self.config, origin):
            return Page(403, "forbidden", headers=cors), as_json
        wait = self.client_limit.allow(environ.get("REMOTE_ADDR", ""))
        if wait:
            minutes = int(wait // 60) + 1
            return Page(429, "slow_down", minutes=minutes, data={
                "ok": False, "error": f"too many requests: try again in {minutes} minutes"},
                headers=[*cors, ("Retry-After", str(int(wait) + 1))]), as_json
        form, as_json = read_form(environ)
        topics = self.categories(())  # outside the writer: it may read every entry
        try:
            page = self.writer.run(lambda writing: web_signup.signup(
                self.config, writing, form, environ, lambda: topics))
        except Page as answer:
            page = answer
        page.headers = [*page.headers, *cors]
        return page, as_json

    def categories(self, chosen: Iterable[str]) -> list[str]:
        """The journal's categories (from its entries, re-read every few minutes), and any the
        subscriber chose that no current entry has."""
        with self._categories_lock:
            at, known = self._categories
            if time.monotonic() - at > CATEGORIES_TTL:
                from pipeline.entries.collect import collect_articles

                articles, _ = collect_articles(self.config, datetime.now(UTC))
                known = sorted({a.category for a in articles if a.category}, key=str.casefold)
                self._categories = (time.monotonic(), known)
        keys = {k.casefold() for k in known}
        return known + sorted((c for c in chosen if c.casefold() not in keys), key=str.casefold)


def make_web_server(site: Path, host: str = "127.0.0.1", port: int = 8080, threads: int = 8
                    ) -> WebServer:
    from pipeline.subscribers.web_server import WebServer

    return WebServer(App(site), host, port, threads)
