"""How deeply an entry's raw HTML nests, found in one linear pass before the sanitiser runs.

The HTML sanitiser (nh3, html5ever underneath) spends time in proportion to the depth of open
elements for each tag it reads, so 199,000 nested `<div>`s took minutes: quadratic. Real
entries nest a dozen levels at most; an entry deeper than MAX_DEPTH is refused before the
expensive step, with a problem line. The count follows the HTML parser's stack closely enough
to be an upper bound for HTML people write: end tags close what they name (unless a table
cell or the like stands between), `<p>`, `<li>`, `<dd>`, `<dt>` and table cells close their
open sibling, void elements open nothing. Tags inside comments or code are counted too:
better to over-count than to let a trick through.
"""

from __future__ import annotations

import re

# Well above what Markdown itself can produce (markdown-it stops at 20 levels) plus a few
# levels of hand-written HTML; low enough that a 1 MB entry nested this deep throughout is
# sanitised in a fraction of a second (bench/nesting.py).
MAX_DEPTH = 48

_TAG = re.compile(r"<(/?)([A-Za-z][^\s/>]*)")
_VOID = frozenset({
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
    "source", "track", "wbr", "basefont", "bgsound", "frame", "keygen",
})
# An end tag does not reach past these (the parser's "scope" boundaries).
_SCOPE = frozenset({"table", "td", "th", "caption", "object", "template", "marquee",
                    "applet", "html", "svg", "math"})
# Opening the key closes an open element of the value's names on top of the stack.
_CLOSES_SIBLING = {
    "li": {"li", "p"}, "dd": {"dd", "dt", "p"}, "dt": {"dd", "dt", "p"},
    "tr": {"tr", "td", "th"}, "td": {"td", "th"}, "th": {"td", "th"},
    "p": {"p"}, "option": {"option"},
}
_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "details", "div", "dl", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
    "hr", "main", "menu", "nav", "ol", "pre", "section", "table", "ul",
})


def too_deep(text: str, limit: int = MAX_DEPTH) -> int | None:
    """The line (from 1) of the first tag that opens a level past `limit`, or None."""
    if text.count("<") <= limit:  # most entries: too few tags to get there
        return None
    stack: list[str] = []
    for match in _TAG.finditer(text):
        name = match.group(2).lower()
        if match.group(1):  # an end tag: close up to the last element of that name
            if name in stack:
                at = len(stack) - 1 - stack[::-1].index(name)
                if not any(open_ in _SCOPE for open_ in stack[at + 1:]):
                    del stack[at:]
            continue
        if name in _VOID:
            continue
        if stack and (stack[-1] == "p" and name in _BLOCKS):
            stack.pop()
        closes = _CLOSES_SIBLING.get(name)
        while closes and stack and stack[-1] in closes:
            stack.pop()
        stack.append(name)
        if len(stack) > limit:
            return text.count("\n", 0, match.start()) + 1
    return None
