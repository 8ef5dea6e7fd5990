"""Render a digest once: jinja2 → MJML → mjml-python → premailer for HTML, jinja2 for text.

Per-subscriber values are left as placeholders that outbox.py fills in cheaply.
"""

from __future__ import annotations

import logging
import re
import textwrap
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from pathlib import Path

import jinja2

from pipeline.config import Config
from pipeline.errors import TemplateError
from pipeline.models import Article
from pipeline.sanitise import header_text

HTML_TEMPLATE = "digest.mjml.j2"
TEXT_TEMPLATE = "digest.txt.j2"
# Filled per subscriber; chosen to pass through jinja2, MJML and premailer unchanged.
PLACEHOLDERS = {"unsubscribe_url": "@@UNSUBSCRIBE_URL@@", "email": "@@EMAIL@@"}
DISCLAIMER = "For general information and education only — not medical advice."
WIDTH = 72


def default_templates_dir() -> Path:
    """Templates shipped with the package (wheel), or the repository's own (source checkout)."""
    packaged = Path(__file__).parent / "_default_templates"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "templates"


def template_environment(config: Config) -> jinja2.Environment:
    """A site's own templates/ override the defaults by name."""
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([
            jinja2.FileSystemLoader(config.templates_dir),
            jinja2.FileSystemLoader(default_templates_dir()),
        ]),
        # select_autoescape() does not know .mjml.j2: escape everything but the text part.
        autoescape=lambda name: not (name or "").endswith(".txt.j2"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        finalize=_not_a_placeholder,
    )
    env.filters["wrap"] = _wrap
    return env


def issue_date(created: datetime, config: Config) -> str:
    local = created.astimezone(config.timezone)
    return f"{local.day} {local:%B %Y}"


def subject_for(articles: Sequence[Article], created: datetime, config: Config) -> str:
    return header_text(config.subject.format(
        journal=config.title, date=issue_date(created, config),
        lead_title=articles[0].title, count=len(articles)))


def render_digest(articles: Sequence[Article], created: datetime, config: Config
                  ) -> tuple[str, str]:
    """(html, text) for these articles, with per-subscriber placeholders left in."""
    context = {
        "lang": config.language,
        "journal": {"title": config.title, "url": config.site_url,
                    "description": config.description},
        "issue_date": issue_date(created, config),
        "preheader": _preheader(articles),
        "articles": articles,
        "disclaimer": DISCLAIMER,
        "reason": config.reason,
        **PLACEHOLDERS,
    }
    env = template_environment(config)
    mjml_source = _render(env, HTML_TEMPLATE, context)
    text = _render(env, TEXT_TEMPLATE, context)
    return inline_css(compile_mjml(mjml_source)), _tidy_text(text)


def compile_mjml(source: str) -> str:
    from mjml import mjml2html

    try:
        # fonts={}: never emit MJML's default Google Fonts <link>/@import.
        return mjml2html(source, fonts={}, disable_comments=True)
    except ValueError as exc:
        raise TemplateError(f"{HTML_TEMPLATE}: MJML did not compile: {exc}") from None


def inline_css(document: str) -> str:
    from premailer import Premailer  # ~0.2 s to import: only on paths that render

    inlined = Premailer(
        document,
        allow_network=False,
        keep_style_tags=True,  # @media and dark-mode rules must stay in <style>
        strip_important=False,  # MJML's responsive rules rely on !important
        remove_classes=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
    ).transform()
    # premailer drops the doctype; without it clients render in quirks mode.
    return "<!doctype html>\n" + re.sub(r"^\s*<!doctype[^>]*>\s*", "", inlined, flags=re.I)


def _render(env: jinja2.Environment, name: str, context: dict[str, object]) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{exc.name or name}:{exc.lineno}: {exc.message}") from None
    except jinja2.TemplateError as exc:
        line = _template_line(exc)
        raise TemplateError(f"{name}:{line}: {exc}") from None


def _template_line(exc: BaseException) -> int | str:
    tb = exc.__traceback__
    line: int | str = "?"
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(".j2"):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _not_a_placeholder(value: object) -> object:
    """Entry text quoting a per-subscriber placeholder must not be filled in with the
    subscriber's address: an invisible word joiner breaks it."""
    if isinstance(value, str) and "@@" in value and value not in PLACEHOLDERS.values():
        return value.replace("@@", "@\u2060@")
    return value


def _preheader(articles: Sequence[Article]) -> str:
    titles = "; ".join(a.title for a in articles[:3])
    return titles if len(articles) <= 3 else f"{titles}; and {len(articles) - 3} more"


@cache
def _wrapper(indent: str, subsequent: str) -> textwrap.TextWrapper:
    return textwrap.TextWrapper(width=WIDTH, initial_indent=indent, subsequent_indent=subsequent,
                                break_long_words=False, break_on_hyphens=False)


def _wrap(text: str, indent: str = "", subsequent: str = "") -> str:
    return _wrapper(indent, subsequent).fill(str(text))


def _tidy_text(text: str) -> str:
    """No trailing spaces, no runs of blank lines."""
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
