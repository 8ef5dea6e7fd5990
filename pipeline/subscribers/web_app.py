"""`newsletter serve`: the pages behind the links in our messages (standard-library WSGI).

GET never changes anything: link scanners and previews follow GETs. A change takes a POST: the
page's button, or a mail client's RFC 8058 one-click POST (`List-Unsubscribe=One-Click`), which
gets its answer at once, with no redirect. A bad or forged token changes nothing and gets a 400.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from pipeline.core.config import Config, load_config
from pipeline.core.models import Subscriber
from pipeline.state.ledger import open_ledger
from pipeline.state.secret import load_secrets
from pipeline.state.subscribers import SubscriberBook
from pipeline.subscribers.returns.sns import SES_PATH, SesNotifications
from pipeline.subscribers.rules import (
    ACTIVE,
    PENDING,
    UNSUBSCRIBED,
    token_id,
    token_matches,
    token_valid,
)

log = logging.getLogger("pipeline")
MAX_BODY = 64 * 1024
CATEGORIES_TTL = 300.0  # seconds a list of the journal's categories is reused
StartResponse = Callable[[str, list[tuple[str, str]]], object]
_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),  # the token is in the URL: never pass it on
    ("Content-Security-Policy",
     "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
]
_STATUS = {200: "200 OK", 400: "400 Bad Request", 404: "404 Not Found",
           405: "405 Method Not Allowed", 413: "413 Content Too Large"}


class Page(Exception):
    """An answer: raised from deep in a handler, turned into a response by the app."""

    def __init__(self, code: int, title: str, body: str) -> None:
        super().__init__(title)
        self.code, self.title, self.body = code, title, body


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def masked(email: str) -> str:
    """a•••@example.org: enough for the owner to recognise, little for anyone else."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}"


class App:
    def __init__(self, site: Path) -> None:
        self.config: Config = load_config(site)
        self.secrets = load_secrets(self.config.state_dir)
        self.ses_notifications = SesNotifications(self.config)
        self._categories: tuple[float, list[str]] = (-CATEGORIES_TTL, [])

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").rstrip("/").endswith(SES_PATH):  # SES's notifications
            return self.ses_notifications(environ, start_response)
        try:
            page = self.route(environ)
        except Page as answer:
            page = answer
        body = self.layout(page.title, page.body).encode()
        start_response(_STATUS[page.code], [*_HEADERS, ("Content-Length", str(len(body)))])
        return [body]

    def route(self, environ: dict) -> Page:
        path = environ.get("PATH_INFO", "").rstrip("/").rsplit("/", 1)[-1]
        method = environ.get("REQUEST_METHOD", "GET").upper()
        handlers = {"unsubscribe": self.unsubscribe, "preferences": self.preferences,
                    "confirm": self.confirm}
        if path not in handlers:
            raise Page(404, "Not found", "<p>There is no page here.</p>")
        if method not in ("GET", "HEAD", "POST"):
            raise Page(405, "Not allowed", "<p>Use the link from your message.</p>")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        form = _form(environ) if method == "POST" else {}
        token = (form.get("token") or query.get("token") or [""])[0]
        with open_ledger(self.config.state_dir) as ledger:
            book = SubscriberBook(ledger)
            return handlers[path](book, token, method == "POST", form)

    def subscriber(self, book: SubscriberBook, token: str, purpose: str) -> Subscriber:
        found = None
        claimed = token_id(token)
        if claimed is not None:
            candidate = book.by_id(claimed)
            if candidate and token_valid(self.secrets, candidate.id, candidate.email, token,
                                         purpose):
                found = candidate
        elif purpose == "unsubscribe" and len(token) == 24:
            found = self._legacy(book, token)
        if found is None:
            raise Page(400, "This link does not work",
                       "<p>This link is damaged, or was not made by us. Nothing has been "
                       "changed.</p><p>Please use the link from your most recent message, or "
                       "reply to it and we will take you off the list by hand.</p>")
        return found

    def _legacy(self, book: SubscriberBook, token: str) -> Subscriber | None:
        """Links in mail sent before tokens carried an id: one HMAC per subscriber, which only
        these old links pay for."""

        for candidate in book.everyone():
            for secret in self.secrets:
                if token_matches(secret, candidate.email, token):
                    return candidate
        return None

    def unsubscribe(self, book: SubscriberBook, token: str, post: bool,
                    form: dict[str, list[str]]) -> Page:
        who = self.subscriber(book, token, "unsubscribe")
        if post:
            one_click = form.get("List-Unsubscribe") == ["One-Click"]
            if not one_click and "confirm" not in form:
                raise Page(400, "Nothing changed",
                           "<p>Use the button on the unsubscribe page.</p>")
            if who.status != UNSUBSCRIBED:
                book.set_status_by_id(who.id, UNSUBSCRIBED, datetime.now(UTC))
                log.info("unsubscribed subscriber %d (%s)", who.id,
                         "one-click" if one_click else "button")
            return Page(200, "You are unsubscribed",
                        f"<p>{esc(masked(who.email))} will get no more messages from "
                        f"{esc(self.config.title)}.</p>")
        if who.status == UNSUBSCRIBED:
            return Page(200, "You are unsubscribed",
                        f"<p>{esc(masked(who.email))} already gets no messages from us.</p>")
        return Page(200, f"Unsubscribe from {self.config.title}?", (
            f"<p>Stop sending {esc(self.config.title)} to {esc(masked(who.email))}?</p>"
            f'<form method="post" action="unsubscribe?token={esc(token)}">'
            '<button type="submit" name="confirm" value="yes">Unsubscribe</button></form>'
            f'<p>Or <a href="preferences?token={esc(token)}">choose which topics you '
            "get</a> instead.</p>"))

    def preferences(self, book: SubscriberBook, token: str, post: bool,
                    form: dict[str, list[str]]) -> Page:
        who = self.subscriber(book, token, "unsubscribe")
        offered = self.categories(who.categories)
        note = ""
        if post:
            chosen = [c for c in form.get("category", []) if c in offered]
            book.set_categories(who.id, chosen, datetime.now(UTC))
            who = book.by_id(who.id) or who
            note = "<p><strong>Saved.</strong></p>"
        if who.status != ACTIVE:
            note += "<p>You are not receiving the journal at the moment.</p>"
        chosen_keys = {c.casefold() for c in who.categories}
        boxes = "".join(
            f'<label><input type="checkbox" name="category" value="{esc(c)}"'
            f'{" checked" if c.casefold() in chosen_keys else ""}> {esc(c)}</label><br>'
            for c in offered)
        return Page(200, "Your topics", (
            f"{note}<p>Choose the topics you want from {esc(self.config.title)}. "
            "Choose none to get every entry.</p>"
            f'<form method="post" action="preferences?token={esc(token)}">{boxes}'
            '<button type="submit">Save</button></form>'))

    def confirm(self, book: SubscriberBook, token: str, post: bool,
                form: dict[str, list[str]]) -> Page:
        who = self.subscriber(book, token, "confirm")
        if who.status == ACTIVE:
            return Page(200, "Subscription confirmed",
                        "<p>You are already subscribed. Thank you!</p>")
        if who.status != PENDING:
            return Page(200, "Nothing to confirm",
                        "<p>This address has left the list; the old link cannot add it "
                        "again.</p>")
        if post:
            book.set_status_by_id(who.id, ACTIVE, datetime.now(UTC))
            return Page(200, "Subscription confirmed",
                        f"<p>{esc(masked(who.email))} will receive "
                        f"{esc(self.config.title)}. Thank you!</p>")
        return Page(200, "Confirm your subscription", (
            f"<p>Send {esc(self.config.title)} to {esc(masked(who.email))}?</p>"
            f'<form method="post" action="confirm?token={esc(token)}">'
            '<button type="submit" name="confirm" value="yes">Yes, subscribe me</button>'
            "</form>"))

    def categories(self, chosen: Iterable[str]) -> list[str]:
        """The journal's categories (from its entries, re-read every few minutes), and any the
        subscriber chose that no current entry has."""
        at, known = self._categories
        if time.monotonic() - at > CATEGORIES_TTL:
            from pipeline.entries.collect import collect_articles

            articles, _ = collect_articles(self.config, datetime.now(UTC))
            known = sorted({a.category for a in articles if a.category}, key=str.casefold)
            self._categories = (time.monotonic(), known)
        keys = {k.casefold() for k in known}
        return known + sorted((c for c in chosen if c.casefold() not in keys), key=str.casefold)

    def layout(self, title: str, body: str) -> str:
        return (
            f'<!doctype html><html lang="{esc(self.config.language)}"><head>'
            '<meta charset="utf-8"><meta name="viewport" content="width=device-width">'
            '<meta name="robots" content="noindex">'
            f"<title>{esc(title)} · {esc(self.config.title)}</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;"
            "padding:0 1rem;line-height:1.5;color:#1f2933}button{font-size:1rem;"
            "padding:.6rem 1.2rem;margin-top:1rem}</style></head><body>"
            f"<p>{esc(self.config.title)}</p><h1>{esc(title)}</h1>{body}</body></html>")


def _form(environ: dict) -> dict[str, list[str]]:
    """A POST body: urlencoded, or multipart/form-data (RFC 8058 recommends the latter)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        raise Page(413, "Too large", "<p>That request is too large.</p>")
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    kind = environ.get("CONTENT_TYPE", "")
    if kind.lower().startswith("multipart/form-data"):
        from email import message_from_bytes, policy

        message = message_from_bytes(f"Content-Type: {kind}\r\n\r\n".encode("latin-1") + raw,
                                     policy=policy.HTTP)
        fields: dict[str, list[str]] = {}
        for part in message.iter_parts() if message.is_multipart() else ():
            name = part.get_param("name", header="content-disposition")
            if name:
                payload = part.get_payload(decode=True) or b""
                fields.setdefault(str(name), []).append(payload.decode("utf-8", "replace"))
        return fields
    return parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        # Never the query string: it holds the token.
        log.info("%s %s", self.command, self.path.split("?", 1)[0])


def make_web_server(site: Path, host: str = "127.0.0.1", port: int = 8080) -> WSGIServer:
    return make_server(host, port, App(site), handler_class=_QuietHandler)
