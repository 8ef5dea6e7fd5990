"""What premailer asks cssutils, kept between runs: a run after one new entry inlines the same
stylesheet and the same style attributes as the run before, and cssutils' answers to them
(parsing the stylesheet's rules, each style attribute's declarations, an image's float) were
~40 ms of its CPU with cssutils' import. With every answer found here cssutils is not
imported at all (premailer gets a stand-in, premailer_setup.Deferred); an answer not found is
asked of cssutils and kept.

The answers are plain strings, kept in the site's state folder (`.newsletter/`) under the
versions of premailer and cssutils and this file's code: another version of either asks again.
The three places are premailer's own calls, swapped for the duration of one transform (a lock:
one at a time): `csstext_to_pairs` in both its modules, `Premailer._parse_style_rules`
(subclassed) and the `cssutils.parseStyle` premailer's image alignment reads. What premailer
does with the answers is unchanged, so is its output (tests/publishing/test_css_memo.py
compares the bytes with plain premailer's, each in its own interpreter).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

MEMO_NAME = "css-memo.json"  # in the state folder
LIMIT = 5000  # answers kept at most: past it, only those the last transform used
_INSTALLED = threading.Lock()  # premailer's module globals are swapped: one transform at a time

Pairs = list[tuple[str, str]]


class CssMemo:
    """cssutils' answers to premailer by question; `changed` once one was asked of cssutils."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.key = _versions_key()
        self.answers: dict[str, Any] = {}
        self.used: set[str] = set()
        self.changed = False
        if path is not None:
            with suppress(OSError, ValueError, TypeError, AttributeError):
                kept = json.loads(path.read_bytes())
                if kept.get("key") == self.key and isinstance(kept.get("answers"), dict):
                    self.answers = kept["answers"]

    def answer(self, question: list[Any], ask: Callable[[], Any]) -> Any:
        """The kept answer (as JSON gives it back) or `ask()`'s, kept."""
        key = json.dumps(question, separators=(",", ":"))
        self.used.add(key)
        if key not in self.answers:
            self.answers[key] = json.loads(json.dumps(ask()))  # kept as it will be read back
            self.changed = True
        return self.answers[key]

    def save(self) -> None:
        """Write the answers if any is new; a folder that cannot be written only means asking
        cssutils again next time."""
        if not self.changed or self.path is None:
            return
        answers = self.answers if len(self.answers) <= LIMIT else {
            key: value for key, value in self.answers.items() if key in self.used}
        from pipeline.core.atomic import write_atomic

        with suppress(OSError):
            write_atomic(self.path, json.dumps({"key": self.key, "answers": answers},
                                               separators=(",", ":")).encode(), mode=0o600)
        self.changed = False


def memo_for(state_dir: Path | None) -> CssMemo:
    """The site's memo once a run has made its state folder (nothing else creates it)."""
    if state_dir is None or not state_dir.is_dir():
        return CssMemo()
    return CssMemo(state_dir / MEMO_NAME)


def memoizing(premailer_class: type) -> type:
    """premailer's class asking the memo (installed with `installed`) for a stylesheet's rules.
    Only when it keeps its <style> blocks: then the rules it cannot inline (@media, pseudo
    classes) are only tested for being there, never read."""

    class MemoPremailer(premailer_class):  # type: ignore[valid-type, misc]
        memo: CssMemo | None = None

        def _parse_style_rules(self, css_body: str, ruleset_index: int) -> tuple[list, list]:
            memo = self.memo
            if memo is None or not self.keep_style_tags or not css_body:
                return super()._parse_style_rules(css_body, ruleset_index)  # type: ignore[no-any-return]

            def ask() -> tuple[list, bool]:
                with real_cssutils():
                    rules, leftover = super(MemoPremailer, self)._parse_style_rules(
                        css_body, ruleset_index)
                return rules, bool(leftover)

            rules, leftover = memo.answer(
                ["rules", css_body, ruleset_index, not self.disable_validation,
                 self.strip_important, self.exclude_pseudoclasses, self.include_star_selectors],
                ask)
            return ([(tuple(specificity), selector, bulk) for specificity, selector, bulk in rules],
                    [True] if leftover else [])

    return MemoPremailer


@contextmanager
def installed(memo: CssMemo, premailer: Any) -> Iterator[None]:
    """While the block runs: premailer's `csstext_to_pairs` and image float ask `memo` first.
    `premailer` is a MemoPremailer instance."""
    import premailer.merge_style as merge_style
    import premailer.premailer as module

    real_pairs = merge_style.csstext_to_pairs
    kept_cssutils = module.cssutils

    def csstext_to_pairs(csstext: str, validate: bool = True) -> Pairs:
        def ask() -> Pairs:
            with real_cssutils():
                return real_pairs(csstext, validate=validate)  # type: ignore[no-any-return]
        return [(name, value) for name, value in memo.answer(["pairs", csstext, validate], ask)]

    # The real one takes its lock through its module's global name, which is this while swapped.
    csstext_to_pairs._lock = real_pairs._lock  # type: ignore[attr-defined]

    class Cssutils(types.ModuleType):
        """cssutils as premailer.premailer sees it: parseStyle for an image's float from the
        memo, anything else from the real one."""

        def parseStyle(self, csstext: str, validate: bool = True) -> Any:
            def ask() -> str:
                with real_cssutils() as cssutils:
                    return str(cssutils.parseStyle(csstext, validate=validate).float)
            return types.SimpleNamespace(
                float=memo.answer(["float", csstext, validate], ask))

        def __getattr__(self, name: str) -> Any:
            return getattr(kept_cssutils, name)

    with _INSTALLED:
        merge_style.csstext_to_pairs = module.csstext_to_pairs = csstext_to_pairs
        module.cssutils = Cssutils("cssutils")
        premailer.memo = memo
        try:
            yield
        finally:
            merge_style.csstext_to_pairs = module.csstext_to_pairs = real_pairs
            module.cssutils = kept_cssutils
            premailer.memo = None


@contextmanager
def real_cssutils() -> Iterator[types.ModuleType]:
    """cssutils itself (imported without what only fetching needs), silent and not validating,
    as premailer would be given it (see premailer_setup)."""
    from pipeline.publishing.premailer_setup import (
        NEVER_USED,
        import_deferring,
        without_css_validation,
    )

    cssutils = import_deferring("cssutils", NEVER_USED)
    cssutils.log.setLevel(logging.CRITICAL)  # what premailer's cssutils_logging_level does
    with without_css_validation():
        yield cssutils


def _versions_key() -> str:
    """premailer's and cssutils' installed files (their versions, without importing cssutils
    or importlib.metadata) and this file's code."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for name in ("premailer", "cssutils"):
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec else None
        if origin is None:
            return ""
        folder = Path(origin).parent
        for source in sorted(folder.glob("*.py")):
            stat = os.stat(source)
            digest.update(f"\0{source}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()
