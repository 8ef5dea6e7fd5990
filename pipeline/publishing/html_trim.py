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
    """premailer's output without the Outlook-only wrappers a lone column does not need."""
    page = etree.fromstring(html.strip(), etree.HTMLParser())
    _drop_lone_column_tables(page)
    for element in page.iter():
        style = element.get("style") if isinstance(element.tag, str) else None
        if style and not any(c in style for c in "()\"'"):  # nothing quoted to keep intact
            element.set("style", ";".join(
                f"{name.strip()}:{value.strip()}"
                for name, _, value in (d.partition(":") for d in style.split(";"))
                if name.strip()))
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
