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
from pipeline.errors import Problem, TemplateError
from pipeline.models import Article
from pipeline.readers.fields import slugify
from pipeline.sanitise import one_line

HTML_TEMPLATE = "digest.mjml.j2"
TEXT_TEMPLATE = "digest.txt.j2"
# Filled per subscriber; chosen to pass through jinja2, MJML and premailer unchanged.
PLACEHOLDERS = {"unsubscribe_url": "@@UNSUBSCRIBE_URL@@", "email": "@@EMAIL@@"}
DISCLAIMER = "For general information and education only — not medical advice."
WIDTH = 72
ARCHIVE_DIR = "digests"  # under public/: each digest's web copy and the archive index
GMAIL_CLIP = 102_000  # bytes of HTML past which Gmail shows "[Message clipped]" and hides the rest


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
    )
    env.filters["wrap"] = _wrap
    return env


def issue_date(created: datetime, config: Config) -> str:
    local = created.astimezone(config.timezone)
    return f"{local.day} {local:%B %Y}"


def subject_for(articles: Sequence[Article], created: datetime, config: Config) -> str:
    return one_line(config.subject.format(
        journal=config.title, date=issue_date(created, config),
        lead_title=articles[0].title, count=len(articles)))


def render_digest(articles: Sequence[Article], created: datetime, config: Config
                  ) -> tuple[str, str]:
    """(html, text) for these articles, with per-subscriber placeholders left in."""
    env = template_environment(config)
    context = _context(articles, created, config, web_copy=False)
    text = render_template(env, TEXT_TEMPLATE, context)
    return _html(env, context), _tidy_text(text)


def render_web_html(articles: Sequence[Article], created: datetime, config: Config) -> str:
    """The digest as a web page: the same template with web_copy set, so no personal footer.
    Placeholders a site's own template still uses get neutral values, never a subscriber's."""
    env = template_environment(config)
    html = _html(env, _context(articles, created, config, web_copy=True))
    return html.replace(PLACEHOLDERS["email"], "you").replace(
        PLACEHOLDERS["unsubscribe_url"], config.site_url)


def web_copy_name(created: datetime, lead_slug: str, config: Config) -> str:
    """`2026-11-25-sleep-and-bp.html`: known before the ledger numbers the digest, unique
    because an entry (its lead) is in only one digest."""
    return f"{created.astimezone(config.timezone):%Y-%m-%d}-{slugify(lead_slug)}.html"


def web_copy_url(created: datetime, lead_slug: str, config: Config) -> str:
    return f"{config.site_url}{ARCHIVE_DIR}/{web_copy_name(created, lead_slug, config)}"


def size_problems(html: str, config: Config) -> list[Problem]:
    """Warnings when the HTML part outgrows the budget or Gmail's clip, naming the fix."""
    size = len(html.encode("utf-8"))
    kb = f"the HTML part is {size / 1000:.0f} KB"
    fix = "lower digest.max_articles or shorten the entries' takeaways"
    if size > GMAIL_CLIP:
        return [Problem("digest", "size", f"{kb}: Gmail clips messages over ~102 KB and hides "
                        "the rest, unsubscribe link included", fix, warning=True)]
    if size > config.size_budget_kb * 1000:
        return [Problem("digest", "size", f"{kb}, over digest.size_budget_kb "
                        f"({config.size_budget_kb} KB)",
                        f"{fix} before it nears Gmail's ~102 KB clip", warning=True)]
    return []


def _context(articles: Sequence[Article], created: datetime, config: Config, *,
             web_copy: bool) -> dict[str, object]:
    logo = ({"url": config.logo_url, "width": config.logo_width, "height": config.logo_height}
            if config.logo_url else None)
    return {
        "lang": config.language,
        "journal": {"title": config.title, "url": config.site_url,
                    "description": config.description},
        "issue_date": issue_date(created, config),
        "preheader": _preheader(articles),
        "articles": articles,
        "disclaimer": DISCLAIMER,
        "reason": config.reason,
        "web_copy": web_copy,
        "web_url": web_copy_url(created, articles[0].slug, config) if articles else "",
        "archive_url": f"{config.site_url}{ARCHIVE_DIR}/",
        "feed_url": f"{config.site_url}feed.xml",
        "logo": logo,
        **PLACEHOLDERS,
    }


def _html(env: jinja2.Environment, context: dict[str, object]) -> str:
    return inline_css(compile_mjml(render_template(env, HTML_TEMPLATE, context)))


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
        # Its width/height attributes come from the CSS: an image styled width:100% (to
        # shrink on phones) would get width="100%" and fill the column in Outlook. MJML
        # already writes the pixel sizes Outlook needs.
        disable_basic_attributes=["width", "height"],
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
    ).transform()
    # premailer drops the doctype; without it clients render in quirks mode.
    return "<!doctype html>\n" + re.sub(r"^\s*<!doctype[^>]*>\s*", "", inlined, flags=re.I)


def render_template(env: jinja2.Environment, name: str, context: dict[str, object]) -> str:
    """One template rendered; its failures become TemplateError naming the file and line."""
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
