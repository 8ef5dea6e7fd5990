"""What premailer's output does not need, removed invisibly (screenshots at 600 and 375 px,
light and dark, compared before and after): 7 KB of a 10-entry digest, so the message stays
under Gmail's clip and our size budget.

- MJML's reset rule for `table, td` (collapse borders, Outlook's table spacing) stays in a
  `<style>` block, where Outlook reads it, instead of being inlined onto each of the ~100
  tables and cells (every MJML table has cellspacing="0", so nothing moves where styles are
  dropped): it goes into a block of its own that premailer leaves alone (data-premailer).
- Declarations in style attributes are joined without spaces (premailer writes `a: b; c: d`).
- Adjacent Outlook-only comments are merged into one, and the Outlook-only table MJML wraps
  around a section's single full-width column is dropped, as is that column's own div.
- The font stack is said once (on the page's wrapper, and in <head> for Outlook) instead of on
  each of ~26 text blocks and buttons; `display:block` on paragraphs, `cursor:auto` on cells,
  units on zero lengths, MJML's `vertical-align` attribute and bare `<tbody>`s go: 3.9 KB.
"""

from __future__ import annotations

import re

from lxml import etree

# MJML's reset for every table and cell, as mjml-python writes it.
_RESET = re.compile(r"table\s*,\s*td\s*\{[^}]*\}")
_CONDITIONAL = re.compile(r"\[if mso \| IE\]>(.*)<!\[endif\]", re.S)
_COLUMN_OPENS = re.compile(r'<table border="0" cellpadding="0" cellspacing="0" role="presentation">'
                           r'<tr><td style="vertical-align:top;width:\d+px;">')
# One Outlook-only comment closing and the next opening with the same condition (MJML writes
# one per table it opens or closes): Outlook reads the two as one run of markup.
_ADJACENT_CONDITIONALS = re.compile(r"<!\[endif\]-->\s*<!--\[if mso \| IE\]>")


def keep_reset_in_style(document: str) -> str:
    """The document with MJML's table reset moved into a style block premailer ignores."""
    found = _RESET.search(document)
    if found is None:
        return document
    rule = found.group(0)
    document = document[:found.start()] + document[found.end():]
    return document.replace("</head>", f'<style data-premailer="ignore">{rule}</style></head>', 1)


def trimmed(html: str) -> str:
    """premailer's output without the Outlook-only wrappers a lone column does not need, the
    font stack said once, and styles that repeat what an element already is."""
    page = etree.fromstring(html.strip(), etree.HTMLParser())
    _drop_lone_column_tables(page)
    _hoist_font_family(page)
    # MJML's <tbody>s: every HTML parser puts a table's rows in one anyway (one with
    # attributes of a site's own template stays).
    for tbody in page.iter("tbody"):
        if not tbody.attrib:
            tbody.tag = "bare-tbody"
    etree.strip_tags(page, "bare-tbody")
    for element in page.iter():
        if not isinstance(element.tag, str):
            continue
        if element.tag == "td" and "vertical-align" in element.attrib:
            del element.attrib["vertical-align"]  # MJML's, not an HTML attribute: no effect
        style = element.get("style")
        if style and not any(c in style for c in "()\"'"):  # nothing quoted to keep intact
            element.set("style", ";".join(
                f"{name}:{_ZERO_PX.sub('0', value)}"
                for name, value in ((n.strip(), v.strip())
                                    for n, _, v in (d.partition(":") for d in style.split(";")))
                if name and (name, value) not in _DEFAULTS.get(element.tag, ())))
    html = etree.tostring(page, method="html", encoding="unicode", pretty_print=True)
    return _ADJACENT_CONDITIONALS.sub("", html)


# Declarations that say what the element is anyway (premailer copies MJML's `p` rule onto
# every paragraph; MJML writes the cursor a cell has), in any client.
_DEFAULTS = {"p": {("display", "block")}, "td": {("cursor", "auto")}}
_ZERO_PX = re.compile(r"(?<![\w.#-])0px\b")  # a zero length needs no unit
_FONT_FAMILY = re.compile(r"(?:^|;)\s*font-family\s*:\s*([^;]*?)\s*(?:;|$)")


def _hoist_font_family(page: etree._Element) -> None:
    """MJML writes the font stack on every text block and button (~80 bytes each). When the
    document uses one stack only, it is said once: inline on the page's wrapper, which every
    client that keeps a div's style passes on to what is inside (tables included: the
    document is in standards mode), and in a style block for Outlook on Windows, whose Word
    engine does not pass a font on to table cells but reads `td`, `p`… rules from <head>."""
    head, body = page.find("head"), page.find("body")
    wrapper = next((d for d in body.iterchildren("div") if d.get("role") == "article"), None) \
        if body is not None else None
    if head is None or wrapper is None:
        return
    styled = [(el, found) for el in wrapper.iter() if isinstance(el.tag, str)
              and (found := _FONT_FAMILY.search(el.get("style") or ""))]
    families = {_spelled_once(found.group(1)) for _, found in styled}
    if len(families) != 1 or len(styled) < 2:
        return  # several fonts (a site's own template): each stays where it is set
    family = families.pop()
    for element, found in styled:
        style = element.get("style")
        element.set("style", (style[:found.start()] + ";" + style[found.end():]).strip(";"))
    wrapper.set("style", f"font-family:{family};{wrapper.get('style') or ''}".rstrip(";"))
    rule = etree.SubElement(head, "style")
    rule.text = f"td,div,p,li,a,span{{font-family:{family}}}"


def _spelled_once(family: str) -> str:
    """A font stack in one spelling: MJML quotes `Segoe UI` with " on buttons, ' elsewhere."""
    return re.sub(r"\s*,\s*", ",", family.replace('"', "'"))


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
    if table.get("style") == "vertical-align:top;":  # it aligned the inline-block div: moot
        del table.attrib["style"]
    column.getparent().replace(column, table)


def _remove_keeping_tail(node: etree._Element) -> None:
    parent, previous = node.getparent(), node.getprevious()
    if node.tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + node.tail
        else:
            parent.text = (parent.text or "") + node.tail
    parent.remove(node)
