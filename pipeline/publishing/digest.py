"""Render a digest once: jinja2 → MJML → mjml-python → premailer for HTML, jinja2 for text.

Per-subscriber values are left as placeholders that outbox.py fills in cheaply.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from xml.parsers import expat

import jinja2

from pipeline.core.config import Config
from pipeline.core.errors import Problem, TemplateError
from pipeline.core.languages import N_
from pipeline.core.models import PLACEHOLDERS, Article
from pipeline.entries.sanitise import header_text
from pipeline.publishing.feed_types import RSS
from pipeline.publishing.templates import (
    Placeholder,
    issue_date,
    render_template,
    shown_name,
    template_environment,
    translations,
)
from pipeline.publishing.web_copies import ARCHIVE_DIR, web_copy_url

HTML_TEMPLATE = "digest.mjml.j2"
TEXT_TEMPLATE = "digest.txt.j2"


DISCLAIMER = N_("For general information and education only — not medical advice.")
# email.reason when the site sets none.
REASON = N_("You are receiving this because you subscribed to %(title)s.")
GMAIL_CLIP = 102_000  # bytes of HTML past which Gmail shows "[Message clipped]" and hides the rest


def subject_for(articles: Sequence[Article], created: datetime, config: Config) -> str:
    return header_text(config.subject.format(
        journal=config.title, date=issue_date(created, config),
        lead_title=articles[0].title, count=len(articles)))


def render_digest(articles: Sequence[Article], created: datetime, config: Config
                  ) -> tuple[str, str]:
    """(html, text) for these articles, with per-subscriber placeholders left in."""
    env = template_environment(config)
    context = _context(articles, created, config, web_copy=False)
    text = render_template(env, TEXT_TEMPLATE, context)
    return _html(env, context, config), _tidy_text(text)


def render_web_html(articles: Sequence[Article], created: datetime, config: Config) -> str:
    """The digest as a web page: the same template with web_copy set, so no personal footer.
    Placeholders a site's own template still uses get neutral values, never a subscriber's."""
    env = template_environment(config)
    html = _html(env, _context(articles, created, config, web_copy=True), config)
    you = translations(config).gettext("you")
    return html.replace(PLACEHOLDERS["email"], you).replace(
        PLACEHOLDERS["unsubscribe_url"], config.site_url)


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
    words = translations(config)
    logo = ({"url": config.logo_url, "width": config.logo_width, "height": config.logo_height}
            if config.logo_url else None)
    return {
        "lang": config.language,
        "journal": {"title": config.title, "url": config.site_url,
                    "description": config.description},
        "issue_date": issue_date(created, config),
        "preheader": _preheader(articles, words.ngettext),
        "articles": articles,
        "disclaimer": words.gettext(DISCLAIMER),
        "reason": config.reason or words.gettext(REASON) % {"title": config.title},
        "postal_address": config.postal_address,
        "web_copy": web_copy,
        "web_url": web_copy_url(created, articles[0].slug, config) if articles else "",
        "archive_url": f"{config.site_url}{ARCHIVE_DIR}/",
        "feed_url": config.site_url + RSS.name,
        "logo": logo,
        **{key: Placeholder(value) for key, value in PLACEHOLDERS.items()},
    }


def _html(env: jinja2.Environment, context: dict[str, object], config: Config) -> str:
    source = render_template(env, HTML_TEMPLATE, context)
    try:
        html = compile_mjml(source)
    except ValueError as exc:
        raise TemplateError(_mjml_problem(env, exc)) from None
    return inline_css(html, config.state_dir)


def warm_up(config: Config) -> None:
    """Pay a digest's first-render costs early (a large first run does, while its fork reads
    entries): premailer and MJML imported, the templates compiled into the site's compiled
    templates, and cssutils imported when no answers are kept for premailer yet."""
    import mjml  # noqa: F401

    from pipeline.publishing.css_memo import memo_for, real_cssutils
    from pipeline.publishing.premailer_setup import premailer_class

    premailer_class()
    if not memo_for(config.state_dir).answers:
        with real_cssutils():
            pass
    env = template_environment(config)
    for name in (HTML_TEMPLATE, TEXT_TEMPLATE):
        # A broken template is reported, with its place, when the digest is rendered.
        with suppress(jinja2.TemplateError):
            env.get_template(name)


def compile_mjml(source: str) -> str:
    """MJML to HTML; raises ValueError (usually without a position) on broken markup."""
    from mjml import mjml2html

    # fonts={}: never emit MJML's default Google Fonts <link>/@import.
    return mjml2html(source, fonts={}, disable_comments=True)


def inline_css(document: str, state_dir: Path | None = None) -> str:
    """premailer's inlining; what it asks cssutils is kept in `state_dir` (css_memo.py)."""
    from pipeline.publishing.css_memo import installed, memo_for, memoizing
    from pipeline.publishing.html_trim import keep_reset_in_style, trimmed
    from pipeline.publishing.premailer_setup import premailer_class
    from pipeline.publishing.seven_bit import no_leading_dots, seven_bit_html

    premailer = memoizing(premailer_class())(  # ~0.04 s to import: only on paths that render
        keep_reset_in_style(document),
        allow_network=False,
        keep_style_tags=True,  # @media and dark-mode rules must stay in <style>
        strip_important=False,  # MJML's responsive rules rely on !important
        remove_classes=False,
        # Its width/height attributes come from the CSS: an image styled width:100% (to
        # shrink on phones) would get width="100%" and fill the column in Outlook. MJML
        # already writes the pixel sizes Outlook needs.
        disable_basic_attributes=["width", "height"],
        disable_validation=True,
        # cssutils' log is silenced (CRITICAL) when it is first asked (css_memo.real_cssutils)
    )
    memo = memo_for(state_dir)
    with installed(memo, premailer):
        inlined = premailer.transform()
    memo.save()
    # premailer drops the doctype; without it clients render in quirks mode.
    html = no_leading_dots("<!doctype html>\n" + re.sub(
        r"^\s*<!doctype[^>]*>\s*", "", trimmed(inlined), flags=re.I))
    return seven_bit_html(html) or html  # ASCII in short lines: mail it without encoding


_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_BARE_AMPERSAND = re.compile(r"&(?!#\d+;|#x[0-9a-fA-F]+;)")


def _mjml_problem(env: jinja2.Environment, exc: ValueError) -> Problem:
    """MJML names no line: find the first markup slip in the template's own text instead,
    read as XML with the jinja tags blanked out (line breaks kept, so lines still match)."""
    source, filename, _ = env.loader.get_source(env, HTML_TEMPLATE)  # type: ignore[union-attr]
    where = shown_name(env, filename, HTML_TEMPLATE)
    blanked = _JINJA.sub(lambda m: "x" if m.group(0).startswith("{{")
                         else "\n" * m.group(0).count("\n"), source)
    parser = expat.ParserCreate()
    opened: list[tuple[str, int]] = []
    parser.StartElementHandler = lambda tag, _: opened.append((tag, parser.CurrentLineNumber))
    parser.EndElementHandler = lambda _: opened.pop()
    try:
        parser.Parse(_BARE_AMPERSAND.sub("&amp;", blanked), True)
    except expat.ExpatError as slip:
        line, slipped = slip.lineno, expat.ErrorString(slip.code)
        mismatch = expat.ErrorString(expat.errors.codes[expat.errors.XML_ERROR_TAG_MISMATCH])
        if slipped == mismatch and opened:
            tag, line = opened[-1]  # where the unclosed tag opened, not where it was noticed
            slipped = f"<{tag}> is not closed"
        return Problem(where, "template", f"MJML did not compile ({exc}): {slipped}",
                       "close every tag, quote every attribute, write < as &lt;", line=line)
    return Problem(where, "template", f"MJML did not compile ({exc})",
                   "check the tags you changed against the default template")


def _preheader(articles: Sequence[Article], ngettext: Callable[[str, str, int], str]) -> str:
    titles = "; ".join(a.title for a in articles[:3])
    if len(articles) <= 3:
        return titles
    more = len(articles) - 3
    return ngettext("%(titles)s; and %(num)d more", "%(titles)s; and %(num)d more",
                    more) % {"titles": titles, "num": more}


def _tidy_text(text: str) -> str:
    """No trailing spaces, no runs of blank lines."""
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
