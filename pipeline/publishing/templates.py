"""The templates' machinery, shared by the digest, its web copy and the archive page: the
environment (a site's templates/ over the defaults) and rendering whose failures name the
template file and line."""

from __future__ import annotations

import gettext
import hashlib
import os
import textwrap
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from functools import cache
from pathlib import Path

import jinja2
from markupsafe import Markup

from pipeline.core import languages
from pipeline.core.config import Config
from pipeline.core.errors import Problem, TemplateError

WIDTH = 72  # columns of the digest's text part
COMPILED_DIR = "compiled-templates"  # in the state folder: compiled templates, kept between runs


class Placeholder(str):
    """The template's own placeholder values: told apart from entry text by type, not by
    value, so a title that is exactly "@@EMAIL@@" is still entry text."""


def default_templates_dir() -> Path:
    """Templates shipped with the package (wheel), or the repository's own (source checkout)."""
    package = Path(__file__).parent.parent
    packaged = package / "_default_templates"
    return packaged if packaged.is_dir() else package.parent / "templates"


def template_environment(config: Config) -> jinja2.Environment:
    """A site's own templates/ override the defaults by name. Fixed words come through
    gettext (`_()`, `ngettext()`, `{% trans %}`) in `site.language`; dates through the
    `long_date` and `short_date` filters."""
    env = jinja2.Environment(
        extensions=["jinja2.ext.i18n"],
        loader=jinja2.ChoiceLoader([
            jinja2.FileSystemLoader(config.templates_dir),
            jinja2.FileSystemLoader(default_templates_dir()),
        ]),
        # select_autoescape() does not know .mjml.j2: escape everything but the text part.
        autoescape=lambda name: not (name or "").endswith(".txt.j2"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        finalize=_not_a_placeholder,
        bytecode_cache=_compiled_templates(config.state_dir),
    )
    env.filters["wrap"] = _wrap
    language = config.language
    env.filters["long_date"] = lambda day: languages.long_date(day, language)
    env.filters["short_date"] = lambda day: languages.short_date(day, language)
    found = translations(config)
    env.install_gettext_translations(found, newstyle=True)  # type: ignore[attr-defined]
    # Values put into a translated phrase get the same guard as `{{ }}` output. (`_` and
    # `{% trans %}` call these by name.)
    for name in ("gettext", "ngettext", "pgettext", "npgettext"):
        env.globals[name] = _finalizing(env.globals[name])
    return env


class _CompiledTemplates(jinja2.FileSystemBytecodeCache):
    """Templates compiled by an earlier run (jinja2 uses one only if its source is unchanged):
    compiling the digest's templates was ~20 ms of a run. A folder that cannot be written
    only means compiling again."""

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with suppress(OSError):
            super().dump_bytecode(bucket)


@cache
def _compiled_templates(state_dir: Path) -> _CompiledTemplates | None:
    """The store of compiled templates, once a run has made the site's state folder (nothing
    else creates it). What jinja2 compiles depends on its version and on the environment's
    options, which are set in this file: both name the files, and files under other names are
    removed."""
    if not state_dir.is_dir():
        return None
    folder = state_dir / COMPILED_DIR
    try:
        key = hashlib.sha256(jinja2.__version__.encode() + Path(__file__).read_bytes())
        folder.mkdir(mode=0o700, exist_ok=True)
        prefix = f"{key.hexdigest()[:16]}-"
        for stale in folder.iterdir():
            if not stale.name.startswith(prefix):
                os.remove(stale)
    except OSError:
        return None
    return _CompiledTemplates(str(folder), f"{prefix}%s.cache")


def translations(config: Config) -> gettext.NullTranslations:
    return languages.translations(config.language, config.site_dir)


def issue_date(created: datetime, config: Config) -> str:
    return languages.long_date(created.astimezone(config.timezone), config.language)


def _finalizing(function: Callable[..., str]) -> Callable[..., str]:
    """The values are guarded on their way in; the phrase (which may hold a placeholder put
    there on purpose, like the footer's address) is then left alone by `finalize`."""
    @jinja2.pass_context
    def guarded(context: jinja2.runtime.Context, *args: object, **variables: object) -> str:
        phrase = function(context, *args, **{key: _not_a_placeholder(value)
                                             for key, value in variables.items()})
        return _SafePhrase(phrase) if isinstance(phrase, Markup) else _Phrase(phrase)
    return guarded


class _Phrase(str):
    """A translated phrase whose values were already guarded."""


class _SafePhrase(Markup):
    """The same, in an autoescaped template."""


def render_template(env: jinja2.Environment, name: str, context: dict[str, object]) -> str:
    """One template rendered; its failures become TemplateError naming the file and line."""
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        where, line = shown_name(env, exc.filename, exc.name or name), exc.lineno
        problem, hint = exc.message or "syntax error", "check spelling and closing tags"
    except jinja2.TemplateNotFound as exc:
        where, line = _where(env, exc, name)
        problem, hint = f"includes {exc.name!r}, which does not exist", "check its name"
    except jinja2.TemplateError as exc:  # e.g. a misspelt variable, with StrictUndefined
        where, line = _where(env, exc, name)
        problem, hint = str(exc), "check the name against the default template"
    except UnicodeDecodeError:
        where, line = _undecodable(env) or name, 1
        problem, hint = "is not UTF-8", "save it as UTF-8 in your editor"
    except Exception as exc:  # anything else a template's own code raises, e.g. {{ 1/0 }}
        where, line = _where(env, exc, name)
        problem, hint = f"{type(exc).__name__}: {exc}", "check the expression on that line"
    raise TemplateError(Problem(where, "template", problem, hint, line=line)) from None


def _where(env: jinja2.Environment, exc: BaseException, name: str) -> tuple[str, int]:
    """The template file and line of the innermost template frame (an include's, if any)."""
    where, line = name, 1
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            where, line = shown_name(env, filename, name), tb.tb_lineno
        tb = tb.tb_next
    return where, line


def shown_name(env: jinja2.Environment, filename: str | None, name: str) -> str:
    """`templates/x.j2` for a site's own file (what its owner edits), else the name."""
    site_dir = _search_paths(env)[0]
    if filename and Path(filename).is_relative_to(site_dir):
        return str(Path(site_dir.name) / Path(filename).relative_to(site_dir))
    return name


def _undecodable(env: jinja2.Environment) -> str | None:
    site_dir = _search_paths(env)[0]
    for path in sorted(site_dir.rglob("*.j2")):
        try:
            path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            return shown_name(env, str(path), path.name)
    return None


def _search_paths(env: jinja2.Environment) -> list[Path]:
    assert isinstance(env.loader, jinja2.ChoiceLoader)
    return [Path(p) for loader in env.loader.loaders
            for p in getattr(loader, "searchpath", ())]


def _not_a_placeholder(value: object) -> object:
    """Entry text quoting a per-subscriber placeholder must not be filled in with the
    subscriber's address: an invisible word joiner breaks it."""
    if (isinstance(value, str) and "@@" in value
            and not isinstance(value, Placeholder | _Phrase | _SafePhrase)):
        return value.replace("@@", "@\u2060@")
    return value


@cache
def _wrapper(indent: str, subsequent: str) -> textwrap.TextWrapper:
    return textwrap.TextWrapper(width=WIDTH, initial_indent=indent, subsequent_indent=subsequent,
                                break_long_words=False, break_on_hyphens=False)


def _wrap(text: str, indent: str = "", subsequent: str = "") -> str:
    return _wrapper(indent, subsequent).fill(str(text))
