"""How much Markdown markup an entry's body holds, counted before it is ever rendered.

markdown-it-py is linear but slow per token: its inline parser takes a run of ordinary
characters in one step and every other character (its "terminators": brackets, asterisks,
underscores, backticks, angle brackets, line breaks…) as a step of its own, at up to ~18 µs
each on this machine (bench/nesting.py). A 1 MB body that is all markup — pasted or
generated, `![` or `- a` lines or `<b>` tags repeated — took 2–14 s to render, with the site
lock held. Real entries hold a few hundred of these characters per thousand words; a body
with more than MAX_MARKUP is refused with a problem line, so that any entry up to the size
limit renders in well under a second. Prose is not limited: a megabyte of words renders in
~0.01 s.
"""

from __future__ import annotations

# markdown-it's inline terminator characters (its `text` rule stops at each) and the line
# break, where every block rule looks again.
MARKUP = "\n!#$%&*+-:<=>@[\\]^_`{}~"
_MARKUP_BYTES = MARKUP.encode()
# ~18 µs each at worst (a list item per line): at most ~0.45 s of rendering, and 50-100 times
# what a long article with links, lists and tables holds.
MAX_MARKUP = 25_000


def markup_count(body: str) -> int:
    """How many of the body's characters markdown-it takes one by one."""
    data = body.encode("utf-8", "surrogatepass")
    return len(data) - len(data.translate(None, _MARKUP_BYTES))


def too_much_markup(body: str) -> int | None:
    """The count when it is over MAX_MARKUP, else None."""
    if len(body) <= MAX_MARKUP:  # it cannot hold more than it holds
        return None
    count = markup_count(body)
    return count if count > MAX_MARKUP else None
