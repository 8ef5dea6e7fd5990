"""CSS inlining for the compiled digest: premailer's rules, without premailer's cost or bulk.

Mail clients that drop `<style>` blocks still honour `style=""` attributes, so every rule of
the template's style blocks that can be inlined is copied onto the elements it matches, as
premailer did with the options we used (`keep_style_tags`, `!important` kept, no classes
removed, no width/height attributes): rules sorted by !important, then specificity (ids,
classes, elements), then order; an element's own style attribute wins; rules with
pseudo-classes, `*`, and everything inside `@media` stay in the `<style>` blocks only (they
are kept whole); `background-color`, `text-align` and `vertical-align` are also written as
the `bgcolor`, `align` and `valign` attributes old clients read.

What else it does, all invisible (screenshots at 600 and 375 px, light and dark, compared
before and after): MJML's reset rule for `table, td` (collapse borders, and
Outlook's table spacing) is left to the `<style>` block, where Outlook reads it, rather than
copied onto each of the ~100 tables and cells (7 KB of a 10-entry digest; every MJML table
has cellspacing="0", so nothing moves where styles are dropped); declarations are joined
without spaces; adjacent Outlook-only comments are merged into one; and the Outlook-only table
MJML wraps around a section's single full-width column is dropped, as is that column's own
div. premailer (with cssutils)
cost ~0.25 s per run to import and warm up.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

from cssselect import SelectorError
from lxml import etree
from lxml.cssselect import CSSSelector

# MJML's reset for every table and cell: Outlook reads it from <style>; inline it is bulk.
NOT_INLINED = frozenset({"table, td"})
_FILTER_PSEUDO = (":first-child", ":last-child", ":nth-child")
_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_ELEMENT = re.compile(r"(^|[\s>+~(])([a-zA-Z][\w-]*)")
_SHORT_COLOUR = re.compile(r"^#([0-9a-f])([0-9a-f])([0-9a-f])$", re.I)
_IMPORTANT = re.compile(r"\s*!\s*important\s*$", re.I)
_CONDITIONAL = re.compile(r"\[if mso \| IE\]>(.*)<!\[endif\]", re.S)
_COLUMN_OPENS = re.compile(r'<table border="0" cellpadding="0" cellspacing="0" role="presentation">'
                           r'<tr><td style="vertical-align:top;width:\d+px;">')
# One Outlook-only comment closing and the next opening with the same condition (MJML writes
# one per table it opens or closes): Outlook reads the two as one run of markup.
_ADJACENT_CONDITIONALS = re.compile(r"<!\[endif\]-->\s*<!--\[if mso \| IE\]>")

Declarations = list[tuple[str, str]]


def inline_css(document: str) -> str:
    """The document with its style blocks' rules copied into style attributes."""
    parser = etree.HTMLParser()
    page = etree.fromstring(document.strip(), parser)
    rules: list[tuple[tuple[int, ...], str, Declarations]] = []
    for index, style in enumerate(page.iter("style")):
        media = style.get("media")
        if media and media not in ("all", "screen"):
            continue
        rules.extend(_rules(style.text or "", index, len(rules)))
    rules.sort(key=lambda rule: rule[0])
    matched: dict[etree._Element, list[Declarations]] = {}
    for _, selector, declarations in rules:
        for element in _select(selector)(page):
            matched.setdefault(element, []).append(declarations)
    for element, found in matched.items():
        merged: dict[str, str] = {}
        for declarations in found:
            merged.update(declarations)
        merged.update(declarations_of(element.get("style", "")))
        merged = {k: v for k, v in merged.items() if v.lower() != "unset"}
        if merged:
            element.set("style", ";".join(f"{k}:{v}" for k, v in merged.items()))
    for element in page.iter("table", "td", *(e.tag for e in matched)):
        _basic_attributes(element)
    _drop_lone_column_tables(page)
    html = etree.tostring(page, method="html", encoding="unicode", pretty_print=True)
    return _ADJACENT_CONDITIONALS.sub("", html)


def _drop_lone_column_tables(page: etree._Element) -> None:
    """MJML wraps each column in an Outlook-only table cell, so that columns sit side by side
    in Outlook. A section with one full-width column has nothing to sit beside it: the cell is
    the section's own width, and Outlook lays the column out the same without it."""
    for column in list(page.iter("div")):
        if "mj-column-per-100" not in (column.get("class") or "").split():
            continue
        parent = column.getparent()
        if len(parent) != 5 or parent[2] is not column:  # not the section's only column
            continue
        comments = [parent[i] for i in (0, 1, 3, 4)]
        if not all(node.tag is etree.Comment for node in comments):
            continue
        opens = "".join(_CONDITIONAL.fullmatch(c.text or "").group(1) for c in comments[:2]
                        if _CONDITIONAL.fullmatch(c.text or ""))
        closes = "".join(_CONDITIONAL.fullmatch(c.text or "").group(1) for c in comments[2:]
                         if _CONDITIONAL.fullmatch(c.text or ""))
        if _COLUMN_OPENS.fullmatch(opens) and closes == "</td></tr></table>":
            for comment in comments:
                _remove_keeping_tail(comment)
            _unwrap_lone_column(column)


def _unwrap_lone_column(column: etree._Element) -> None:
    """A lone full-width column's own div (inline-block, 100% wide, in a cell of font-size 0,
    so exactly as wide and high as its table) holds only the table of its rows: the table
    takes its place."""
    if len(column) != 1 or column[0].tag != "table" or (column.text or "").strip():
        return
    table = column[0]
    table.tail = column.tail
    column.getparent().replace(column, table)


def _remove_keeping_tail(node: etree._Element) -> None:
    parent, previous = node.getparent(), node.getprevious()
    if node.tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + node.tail
        else:
            parent.text = (parent.text or "") + node.tail
    parent.remove(node)


def declarations_of(text: str) -> Declarations:
    """`a: b; c: d` as pairs, in order; `;` inside quotes or brackets does not split."""
    pairs = []
    for part in _split(text, ";"):
        name, colon, value = part.partition(":")
        if colon and name.strip() and value.strip():
            pairs.append((name.strip().lower(), " ".join(value.split())))
    return pairs


def _rules(css: str, sheet: int, start: int
           ) -> Iterator[tuple[tuple[int, ...], str, Declarations]]:
    number = start
    for selectors, body in _blocks(_COMMENT.sub("", css)):
        if selectors.startswith("@") or selectors in NOT_INLINED:
            continue
        declarations = declarations_of(body)
        important = [(k, _IMPORTANT.sub("", v) + " !important") for k, v in declarations
                     if _IMPORTANT.search(v)]
        normal = [(k, v) for k, v in declarations if not _IMPORTANT.search(v)]
        for selector in (s.strip() for s in selectors.split(",")):
            if not selector or "*" in selector or selector.startswith(":"):
                continue
            if ":" in selector and not any(p in selector for p in _FILTER_PSEUDO):
                continue
            specificity = (selector.count("#"), selector.count("."),
                           len(_ELEMENT.findall(selector)))
            for flag, bulk in ((1, important), (0, normal)):
                if bulk:
                    number += 1
                    yield (flag, *specificity, sheet, number), selector, bulk


def _blocks(css: str) -> Iterator[tuple[str, str]]:
    """(prelude, body) of each top-level block; an @media block's body is skipped whole."""
    position = 0
    while True:
        opening = css.find("{", position)
        if opening < 0:
            return
        depth, at = 1, opening + 1
        while depth and at < len(css):
            depth += {"{": 1, "}": -1}.get(css[at], 0)
            at += 1
        prelude = css[position:opening].strip()
        yield " ".join(prelude.split()), css[opening + 1:at - 1]
        position = at


def _split(text: str, separator: str) -> Iterator[str]:
    depth, quote, start = 0, "", 0
    for at, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == separator and depth == 0:
            yield text[start:at]
            start = at + 1
    yield text[start:]


@lru_cache(maxsize=256)
def _select(selector: str) -> CSSSelector:
    try:
        return CSSSelector(selector)
    except SelectorError:
        return lambda page: []  # premailer skipped what cssselect cannot read, too


def _basic_attributes(element: etree._Element) -> None:
    style = element.get("style")
    if not style:
        return
    for name, value in declarations_of(style):
        if name == "text-align":
            element.set("align", value)
        elif name == "vertical-align":
            element.set("valign", value)
        elif name == "background-color" and "transparent" not in value.lower():
            element.set("bgcolor", _SHORT_COLOUR.sub(r"#\1\1\2\2\3\3", value))
