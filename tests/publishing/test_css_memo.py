"""What premailer asks cssutils, kept between runs (css_memo.py): the document comes out byte
for byte as plain premailer makes it, whether the answers are asked (first run), kept (next
run: cssutils is then not imported at all) or the kept file is unreadable. Each way in its own
interpreter: premailer and cssutils keep caches of their own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import NOW, REPO, articles_of
from pipeline.publishing import digest
from pipeline.publishing.css_memo import MEMO_NAME

# Floated and plain images (premailer adds align= to floated ones for Outlook), inline styles
# that override rules, !important, pseudo classes and @media left in <style>.
PAGE = """<!doctype html><html><head>
<style type="text/css">body { margin: 0; } p { margin: 13px 0; color: #222; }
.muted { color: #52606d; } td.x { color: #111 !important; } img.r { float: right; }
a:hover { color: red; } @media (max-width: 480px) { .muted { font-size: 12px !important; } }
</style></head><body style="background-color:#eef2f5">
<table><tr><td class="muted x" style="text-align:right">cell</td></tr></table>
<p class="muted" style="margin:0 0 4px">own margin</p><a href="https://e.org/">link</a>
<img class="r" src="https://e.org/a.png" style="width:120px"><img src="https://e.org/b.png"
style="float: left; border: 0"><img src="https://e.org/c.png" style="display:block">
</body></html>"""

PLAIN = """
import contextlib
import premailer, cssutils  # the real modules, before anything stands in for them
import pipeline.publishing.css_memo as memo
memo.memoizing = lambda premailer_class: premailer_class
memo.installed = lambda *_: contextlib.nullcontext()
"""
INLINE = """
import sys
from pathlib import Path
from pipeline.publishing.digest import inline_css
state = {state!r}
for source in {sources!r}:
    sys.stdout.write(inline_css(Path(source).read_text(encoding="utf-8"),
                                Path(state) if state else None) + "\\0")
print("cssutils" in sys.modules)
"""


def inlined(sources: list[Path], state: Path | None, before: str = "") -> tuple[str, bool]:
    """The documents inlined in a fresh interpreter, and whether it imported cssutils."""
    code = before + INLINE.format(state=str(state) if state else None,
                                  sources=[str(s) for s in sources])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    *documents, imported = done.stdout.split("\0")
    return "\0".join(documents), imported.strip() == "True"


@pytest.fixture
def sources(sample_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The sample site's digest and its web copy as MJML leaves them, and PAGE."""
    seen: list[str] = []
    monkeypatch.setattr(digest, "inline_css", lambda html, state_dir=None: seen.append(html)
                        or html)
    config, articles = articles_of(sample_site)
    digest.render_digest(articles, NOW, config)
    digest.render_web_html(articles, NOW, config)
    seen.append(PAGE)
    paths = [tmp_path / f"source-{n}.html" for n in range(len(seen))]
    for path, html in zip(paths, seen, strict=True):
        path.write_text(html, encoding="utf-8")
    return paths


def test_kept_answers_give_plain_premailers_document_without_importing_cssutils(
        sources: list[Path], tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    plain, _ = inlined(sources, None, PLAIN)
    assert plain.count("style=") > 20 and 'align="right"' in plain and 'align="left"' in plain
    first, asked = inlined(sources, state)
    assert (first, asked) == (plain, True)
    assert (state / MEMO_NAME).exists()
    kept = (state / MEMO_NAME).read_bytes()
    again, asked = inlined(sources, state)
    assert (again, asked) == (plain, False)
    assert (state / MEMO_NAME).read_bytes() == kept  # nothing new to keep: not written again
    # Without a state folder (e.g. `check` on a site never run) answers last the process only.
    assert inlined(sources, None) == (plain, True)


def test_a_new_style_is_asked_and_kept_beside_the_others(sources: list[Path],
                                                         tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    inlined(sources[:1], state)
    before = json.loads((state / MEMO_NAME).read_bytes())["answers"]
    plain, _ = inlined(sources, None, PLAIN)
    assert inlined(sources, state) == (plain, True)
    after = json.loads((state / MEMO_NAME).read_bytes())["answers"]
    assert before.items() < after.items()
    assert inlined(sources, state) == (plain, False)


@pytest.mark.parametrize("kept", [b"{not json", b'{"key": "other versions", "answers": {}}',
                                  b"[1, 2]", b""])
def test_an_unreadable_or_outdated_memo_is_asked_again(sources: list[Path], tmp_path: Path,
                                                       kept: bytes) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / MEMO_NAME).write_bytes(kept)
    plain, _ = inlined(sources, None, PLAIN)
    assert inlined(sources, state) == (plain, True)
    assert inlined(sources, state) == (plain, False)
