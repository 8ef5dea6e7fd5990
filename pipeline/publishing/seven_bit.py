"""The digest's HTML as 7-bit text in short lines, so its mail part needs no transfer encoding.

Quoted-printable costs an HTML part ~8 % (every `=` of every attribute becomes `=3D`, and a
soft line break every 76 characters). HTML has its own escape for any character, `&#NNNN;`,
and a line break between two attributes of a tag means exactly what a space does; so the
part can be plain ASCII (`Content-Transfer-Encoding: 7bit`, lines under SMTP's 998) and read
the same. The digest keeps that form (ledger, web copy, messages), so a message's part
decodes to exactly the digest. Where it cannot be done without changing what a byte means
(a non-ASCII character inside `<style>` or `<script>`, where `&#…;` is not decoded, or a long
line with no tag to break in), `seven_bit_html` returns None and the part stays
quoted-printable.
"""

from __future__ import annotations

import re

LINE = 500  # characters before a break is looked for: a line then gains at most the filled-in
#             address (≤ 254) and unsubscribe URL, and stays well under 998
_RAW_TEXT = re.compile(r"<(style|script)\b[^>]*>(.*?)</\1\s*>", re.S | re.I)
# A start tag, and the whitespace before each of its attributes (also inside Outlook's
# conditional comments, which Outlook reads as markup): a line break there is the same
# whitespace. Attribute values are skipped whole, so nothing inside one is ever touched.
_TAG_NAME = re.compile(r"<[A-Za-z][^\s/>]*")
_ATTRIBUTE = re.compile(r"""([ \t]+)[^\s"'>/=]+(?:[ \t]*=[ \t]*(?:"[^"]*"|'[^']*'|[^\s"'>]+))?""")


def no_leading_dots(html: str) -> str:
    """`html` read the same, with no line that starts with "." (SMTP doubles such a dot, and
    a message with none is sent without searching it for them: core/dot_mark.py). Inside
    `<style>` and `<script>` a space goes before the dot (MJML's Outlook rule is such a line);
    elsewhere the dot becomes `&#46;`, which HTML reads as a dot, also in `<pre>`."""
    if "\n." not in html:
        return html
    html = _RAW_TEXT.sub(lambda raw: raw.group(0).replace("\n.", "\n ."), html)
    return html.replace("\n.", "\n&#46;")


def seven_bit_html(html: str) -> str | None:
    """`html` as ASCII with lines of at most ~LINE characters, or None if that would change
    its meaning."""
    if not html.isascii():
        if any(not body.isascii() for _, body in _RAW_TEXT.findall(html)):
            return None
        html = html.encode("ascii", "xmlcharrefreplace").decode("ascii")
    lines = []
    for line in html.split("\n"):
        while len(line) > LINE:
            at = _break_at(line)
            if at is None:
                return None
            lines.append(line[:at])
            line = line[at + 1:]
        lines.append(line)
    return "\n".join(lines)


def _break_at(line: str) -> int | None:
    """Where to break: the last single space before an attribute at or before LINE, else the
    first one after it (under 990), else None."""
    best = None
    for tag in _TAG_NAME.finditer(line):
        at = tag.end()
        while (attribute := _ATTRIBUTE.match(line, at)) is not None:
            at = attribute.end()
            if attribute.group(1) != " ":
                continue  # one space only: the break replaces it one for one
            space = attribute.start()
            if space > LINE and best is not None:
                return best
            best = space
            if space > LINE:
                return space if space < 990 else None
        if tag.start() > LINE and best is not None:
            return best
    return best if best is not None and best < 990 else None
