"""The pages `serve` answers with: each one a template under templates/pages/ (a site's own
templates/pages/ overrides it by name, as for the digest), inside pages/layout.html.j2.

Every value is escaped by the template engine; the pages load nothing from elsewhere.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.core.config import Config
from pipeline.core.errors import ConfigError

PAGES = ("link_broken", "unsubscribe", "unsubscribed", "nothing_changed", "preferences",
         "confirm", "confirmed", "confirm_left", "confirm_expired", "confirm_resent",
         "subscribe", "subscribe_thanks", "subscribe_invalid", "slow_down", "forbidden",
         "not_found", "not_allowed", "too_large", "error")
REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 410: "Gone", 413: "Content Too Large",
           415: "Unsupported Media Type", 429: "Too Many Requests",
           500: "Internal Server Error"}
HTML_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),  # the token is in the URL: never pass it on
    ("Content-Security-Policy",
     "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
]


class Page(Exception):
    """An answer: raised from deep in a handler, turned into a response by the app. `data`
    is the short JSON answer given instead when the request asked for JSON."""

    def __init__(self, code: int, name: str, headers: list[tuple[str, str]] | None = None,
                 data: dict[str, Any] | None = None, **context: Any) -> None:
        super().__init__(name)
        self.code, self.name, self.context = code, name, context
        self.headers = headers or []
        self.data = data if data is not None else {"ok": code < 400, "page": name}


class Pages:
    def __init__(self, config: Config) -> None:
        from pipeline.publishing.templates import template_environment, translations

        self.config = config
        self.env = template_environment(config)
        self.words = translations(config)
        self.check()

    def check(self) -> None:
        """Render every page and the confirmation message now, so a broken site template
        stops `serve` at start, with its file and line, rather than failing a visitor later."""
        from datetime import UTC, datetime

        from pipeline.core.errors import TemplateError
        from pipeline.core.models import Subscriber
        from pipeline.mail.confirmation import compose_confirmation
        from pipeline.publishing.digest import render_template

        try:
            for name in PAGES:
                render_template(self.env, f"pages/{name}.html.j2", self.sample(name))
            compose_confirmation(self.config, Subscriber("reader@example.org", id=1),
                                 self.config.site_url + "confirm?token=1.x",
                                 "confirm-000001-0.eml", datetime.now(UTC))
        except TemplateError as exc:
            raise ConfigError([exc.problem]) from None

    def sample(self, name: str) -> dict[str, Any]:
        """Every variable a page may use, with a harmless value (templates are strict)."""
        return {"journal": {"title": self.config.title, "language": self.config.language,
                            "url": self.config.site_url},
                "masked": "a•••@example.org", "token": "1.x", "already": False,
                "offered": [{"name": "A", "checked": True}], "saved": False, "active": True,
                "topics": ["A"], "message": "", "minutes": 1, "form": {}}

    def render(self, page: Page, as_json: bool = False) -> tuple[str, list[tuple[str, str]],
                                                                 bytes]:
        from pipeline.publishing.digest import render_template

        status = f"{page.code} {REASONS.get(page.code, '')}".rstrip()
        if as_json:
            body = json.dumps(page.data).encode()
            return status, [("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                            ("X-Content-Type-Options", "nosniff"), *page.headers], body
        context = {**self.sample(page.name), **page.context}
        if context.get("message"):  # our own fixed words (marked N_ where they are raised)
            context["message"] = self.words.gettext(context["message"])
        body = render_template(self.env, f"pages/{page.name}.html.j2", context).encode()
        replaced = {name.lower() for name, _ in page.headers}
        return status, [*(h for h in HTML_HEADERS if h[0].lower() not in replaced),
                        *page.headers], body
