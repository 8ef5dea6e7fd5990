"""The words readers see, in the site's language (`site.language`): gettext catalogues, dates
and plurals. English is the source language (the msgids); other languages are catalogues in
pipeline/core/locales/<lang>/LC_MESSAGES/messages.mo, and a site's own locales/ folder (same
layout) is read first, so a site can change a phrase or add a language without touching the
package. Operator-facing output (the CLI, `status`, problems) stays English.

Loading uses only the standard library's gettext; Babel is imported only to format a date in
a language other than English, or to compile a site's `.po` that has no `.mo` beside it.
"""

from __future__ import annotations

import gettext
import io
import re
from datetime import date
from functools import cache
from pathlib import Path

from pipeline.core.errors import Problem, TemplateError

DOMAIN = "messages"
SOURCE_LANGUAGE = "en"
PACKAGE_LOCALES = Path(__file__).parent / "locales"
SITE_LOCALES = "locales"  # under the site folder, beside newsletter.toml
_TAG = re.compile(r"[A-Za-z]{2,8}(?:_[A-Za-z0-9]{1,8})*")


def N_(message: str) -> str:
    """Marks a msgid for extraction where it is defined; translated where it is shown."""
    return message


def candidates(language: str) -> list[str]:
    """`de-AT` → ["de_AT", "de"]: the catalogue folders to look for, most specific first."""
    tag = language.strip().replace("-", "_")
    if not _TAG.fullmatch(tag):  # empty, or not a language tag (it names folders)
        return [SOURCE_LANGUAGE]
    parts = tag.split("_")
    tag = "_".join([parts[0].lower(), *(p.upper() if len(p) == 2 else p for p in parts[1:])])
    return [tag, parts[0].lower()] if "_" in tag else [tag]


def is_english(language: str) -> bool:
    return candidates(language)[-1] == SOURCE_LANGUAGE


def known(language: str, site_dir: Path) -> bool:
    """True when English is asked for, or a catalogue exists for the language."""
    if not _TAG.fullmatch(language.strip().replace("-", "_")):
        return False
    return is_english(language) or any(
        _catalogue(root / name) for name in candidates(language)
        for root in (site_dir / SITE_LOCALES, PACKAGE_LOCALES))


def available(site_dir: Path) -> list[str]:
    """English and every language with a catalogue in the package or the site."""
    return sorted({SOURCE_LANGUAGE} | {
        folder.name for root in (site_dir / SITE_LOCALES, PACKAGE_LOCALES)
        if root.is_dir() for folder in root.iterdir() if _catalogue(folder)})


def translations(language: str, site_dir: Path) -> gettext.NullTranslations:
    """The site's catalogue over the package's, over English (the msgids themselves)."""
    return _translations(language, site_dir.resolve())


@cache
def _translations(language: str, site_dir: Path) -> gettext.NullTranslations:
    found = [_load(path) for name in candidates(language)
             for root in (site_dir / SITE_LOCALES, PACKAGE_LOCALES)
             if (path := _catalogue(root / name))]
    chain: gettext.NullTranslations = gettext.NullTranslations()
    for catalogue in reversed(found):  # the least specific at the bottom
        catalogue.add_fallback(chain)
        chain = catalogue
    return chain


def _catalogue(folder: Path) -> Path | None:
    for suffix in (".mo", ".po"):
        path = folder / "LC_MESSAGES" / f"{DOMAIN}{suffix}"
        if path.is_file():
            return path
    return None


def _load(path: Path) -> gettext.GNUTranslations:
    """One catalogue; a broken one stops the render (as a broken template does), named."""
    try:
        if path.suffix == ".mo":
            with path.open("rb") as handle:
                return gettext.GNUTranslations(handle)
        return gettext.GNUTranslations(io.BytesIO(compile_po(path.read_bytes())))
    except Exception as exc:  # gettext: OSError or struct errors; Babel: its own
        raise TemplateError(Problem(
            path, "catalogue", f"cannot be read ({type(exc).__name__}: {exc})",
            "compile it again from its .po: pybabel compile -d locales -D messages",
            line=0)) from None


def compile_po(po: bytes) -> bytes:
    """A `.po` catalogue's `.mo` bytes, fuzzy entries left out (as `pybabel compile` does)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    out = io.BytesIO()
    write_mo(out, read_po(io.BytesIO(po)))
    return out.getvalue()


def long_date(day: date, language: str) -> str:
    """`24 June 2026`, `24. Juni 2026`: an issue's date."""
    if is_english(language) or _babel_locale(language) == SOURCE_LANGUAGE:
        return f"{day.day} {day:%B %Y}"  # the journal's own style (Babel's en is US order)
    from babel.dates import format_date

    return format_date(day, "long", locale=_babel_locale(language))


def short_date(day: date, language: str) -> str:
    """`24 Jun 2026`, `24. Juni 2026`: an entry's date in the digest."""
    if is_english(language) or _babel_locale(language) == SOURCE_LANGUAGE:
        return f"{day.day} {day:%b %Y}"
    from babel.dates import format_skeleton

    return format_skeleton("yMMMd", day, locale=_babel_locale(language))


@cache
def _babel_locale(language: str) -> str:
    from babel import Locale, UnknownLocaleError

    for name in candidates(language):
        try:
            Locale.parse(name)
            return name
        except (ValueError, UnknownLocaleError):
            continue
    return SOURCE_LANGUAGE
