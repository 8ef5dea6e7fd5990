"""The digest's CSS inlining (premailer, with MJML's table reset kept in <style>) and its
7-bit form: what a client that drops <style> shows is what one that keeps it shows, and the
mail part decodes to the same document."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lxml.html
import pytest

from conftest import NOW, REPO, articles_of
from pipeline.publishing import digest
from pipeline.publishing.digest import inline_css
from pipeline.publishing.seven_bit import LINE, seven_bit_html

PAGE = """<!doctype html><html><head>
<style type="text/css">table, td { border-collapse: collapse; }
body { margin: 0; } p { margin: 13px 0; }
.muted { color: #52606d; } td.x { color: #111 !important; }
a:hover { color: red; } @media (prefers-color-scheme: dark) { .muted { color: #fff !important; } }
</style></head><body style="background-color:#eef2f5">
<table><tr><td class="muted x" style="text-align:right">cell</td></tr></table>
<p class="muted" style="margin:0 0 4px">own margin</p><a href="https://e.org/">link</a>
</body></html>"""


def styles(html: str) -> dict[str, str]:
    """Each element's style attribute, declarations joined by ";" without spaces."""
    page = lxml.html.document_fromstring(html)
    return {el.tag if el.tag == "table" else el.text_content().strip():
            ";".join(d.strip() for d in (el.get("style") or "").split(";") if d.strip())
            for el in page.iter() if el.tag in ("td", "p", "a", "table")}


def test_rules_are_inlined_by_importance_and_specificity_and_the_elements_own_style_wins(
        ) -> None:
    found = styles(inline_css(PAGE))
    assert found["cell"] == "color:#111 !important;text-align:right"  # !important beats .muted
    assert found["own margin"] == "margin:0 0 4px;color:#52606d"  # its own margin wins
    assert found["link"] == ""  # :hover and @media rules stay in <style> only
    assert "border-collapse" not in found["table"]  # MJML's reset stays in <style>


def test_style_blocks_are_kept_whole_and_old_clients_get_align_and_bgcolor() -> None:
    html = inline_css(PAGE)
    assert "@media (prefers-color-scheme: dark)" in html and "a:hover" in html
    page = lxml.html.document_fromstring(html)
    assert page.find(".//td").get("align") == "right"
    assert page.find(".//body").get("bgcolor") == "#eef2f5"


def test_the_seven_bit_form_is_the_same_document_in_ascii_and_short_lines() -> None:
    cells = "".join(f'<td class="c" title="Ü {n} → x" style="padding:0 24px">Café {n}</td>'
                    for n in range(60))
    html = f"<!doctype html><html><body><table><tr>{cells}</tr></table></body></html>"
    seven = seven_bit_html(html)
    assert seven is not None and seven.isascii()
    assert max(map(len, seven.split("\n"))) <= LINE + 100
    before, after = (lxml.html.document_fromstring(h) for h in (html, seven))
    assert [(el.tag, dict(el.attrib), el.text, el.tail) for el in before.iter()] == [
        (el.tag, dict(el.attrib), el.text, el.tail) for el in after.iter()]


def test_what_cannot_be_said_in_ascii_stays_as_it_is() -> None:
    assert seven_bit_html('<style>p::before { content: "→"; }</style><p>x</p>') is None
    assert seven_bit_html("<p>" + "word " * 300 + "</p>") is None  # no tag to break in


STACK = "-apple-system, BlinkMacSystemFont, 'Segoe UI', Helvetica, Arial, sans-serif"
FONTS = """<!doctype html><html><head><style>p {{ display: block; margin: 13px 0; }}</style>
</head><body><div role="article" style="background-color:#eef2f5"><table><tbody><tr>
<td vertical-align="middle"><div style="font-family:{one};font-size:16px">text
<p style="margin:0">para</p></div></td>
<td><a href="https://e.org/" style='font-family:{two}; padding:10px 18px'>button</a></td>
</tr></tbody></table></div></body></html>"""


def test_one_font_stack_is_said_once_where_every_client_finds_it() -> None:
    """MJML's stack on every text block and button (" or ' around Segoe UI) is written once:
    inline on the page's wrapper, which clients pass on to what is inside, and as a <head>
    rule for Outlook, which does not pass fonts on to table cells."""
    html = inline_css(FONTS.format(one=STACK, two=STACK.replace("'", '"')))
    page = lxml.html.document_fromstring(html)
    wrapper = page.find(".//div[@role='article']")
    spelled = "-apple-system,BlinkMacSystemFont,'Segoe UI',Helvetica,Arial,sans-serif"
    assert wrapper.get("style") == f"font-family:{spelled};background-color:#eef2f5"
    assert [el for el in wrapper.iterdescendants() if "font-family" in el.get("style", "")] == []
    rules = "".join(s.text or "" for s in page.iter("style"))
    assert f"td,div,p,li,a,span{{font-family:{spelled}}}" in rules
    found = styles(html)
    assert found["button"] == "padding:10px 18px" and found["para"] == "margin:0"  # no display
    assert page.find(".//td").get("vertical-align") is None  # not HTML: it did nothing
    assert "<tbody" not in html and page.find(".//table/tr") is not None  # a parser adds it


def test_a_template_with_two_fonts_keeps_each_where_it_is_set() -> None:
    html = inline_css(FONTS.format(one=STACK, two="Georgia, serif"))
    page = lxml.html.document_fromstring(html)
    assert "font-family" not in page.find(".//div[@role='article']").get("style")
    assert "Georgia, serif" in page.find(".//a").get("style")
    assert STACK in page.find(".//td/div").get("style")


# --- premailer without what we never use (premailer_setup.py) ---------------------------------

# What premailer and cssutils import at the top of their modules only to fetch stylesheets.
FETCHING = ["encutils", "importlib.metadata", "requests", "urllib.request"]


def in_fresh_interpreter(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_inlining_imports_nothing_for_fetching_stylesheets_which_still_works_if_used() -> None:
    out = in_fresh_interpreter(f"""
import sys
from pipeline.publishing.digest import inline_css
html = inline_css({PAGE!r})
print(sorted(name for name in {FETCHING!r} if name in sys.modules))
import premailer.premailer, cssutils._fetch
print(premailer.premailer.requests.codes.ok, cssutils._fetch._get_version() != 'unknown')
import requests, urllib.request
print(requests.Session is premailer.premailer.requests.Session,
      cssutils._fetch.urllib.request.Request is urllib.request.Request)
""")
    assert out.splitlines() == ["[]", "200 True", "True True"]


def test_inlining_without_css_validation_gives_the_same_document(sample_site: Path,
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    """cssutils' validation only logs; turned off, the real digest comes out the same. Each
    way in its own interpreter: premailer caches what it parsed."""
    seen: list[str] = []
    monkeypatch.setattr(digest, "inline_css", lambda html, state_dir=None: seen.append(html)
                        or html)
    config, articles = articles_of(sample_site)
    digest.render_digest(articles, NOW, config)
    source = tmp_path / "mjml.html"
    source.write_text(seen[0], encoding="utf-8")
    inline = (f"from pathlib import Path\nfrom pipeline.publishing.digest import inline_css\n"
              f"print(inline_css(Path({str(source)!r}).read_text(encoding='utf-8')))")
    validating = ("import contextlib\nimport pipeline.publishing.premailer_setup as setup\n"
                  "setup.without_css_validation = contextlib.nullcontext\n")
    plain = in_fresh_interpreter(inline)
    assert "style=" in plain and plain == in_fresh_interpreter(validating + inline)
