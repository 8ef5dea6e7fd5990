"""Markdown entries with YAML front matter."""

from __future__ import annotations

import re
from datetime import date
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.config import Config
from pipeline.core.errors import EntryError, Problem
from pipeline.core.models import Article, Body, Source
from pipeline.core.text import slugify, strip_illegal
from pipeline.entries.markup_budget import MAX_MARKUP, too_much_markup
from pipeline.entries.minutes import CountedArticle, count_later
from pipeline.entries.nesting import MAX_DEPTH, too_deep
from pipeline.entries.readers.fields import FieldReader
from pipeline.entries.readers.front_matter import FM_BOUNDARY, simple_fields, yaml_handler
from pipeline.entries.sanitise import one_line, safe_html

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

KNOWN_FIELDS = {
    "title", "date", "category", "summary", "author", "tags", "takeaways", "sources", "slug",
    "updated", "draft",
}
_FENCE = re.compile(r"\A---[ \t]*\r?\n")
_CLOSING = re.compile(r"\n---[ \t]*(\r?\n|\Z)")
_FIELD = re.compile(r"([A-Za-z_][\w-]*)\s*:")
_BOUNDARY = FM_BOUNDARY  # python-frontmatter's: a line of three or more dashes


@cache
def _markdown() -> MarkdownIt:
    from markdown_it import MarkdownIt  # imported to render, not to read an entry's fields

    # Raw HTML and every link are allowed through here and sanitised afterwards, in one
    # place. markdown-it's own check would leave a `javascript:` link as its Markdown source,
    # which then reaches the feeds as text; the sanitiser keeps its text and drops its URL.
    md = MarkdownIt("commonmark", {"html": True, "typographer": False}).enable("table")
    md.validateLink = lambda url: True
    return md


def render_markdown(source: str) -> str:
    return _markdown().render(source)


def markdown_body(source: str, url: str) -> str:
    """A Markdown body as safe HTML with links made absolute against the entry's URL."""
    return safe_html(render_markdown(strip_illegal(source)), url)


def read_body(text: str, url: str) -> str:
    """The body alone, as safe HTML, from an entry file's text (known to have front matter):
    what follows it, without parsing the YAML again."""
    closing = _CLOSING.search(text)
    return markdown_body(text[closing.end():] if closing else text, url)


def read_markdown(path: Path, text: str, config: Config) -> tuple[Article | None, list[Problem]]:
    """Parse one Markdown entry. Returns (None, warnings) for a draft; raises EntryError."""
    fields = FieldReader(path, lambda: _field_lines(text))
    fence = _FENCE.match(text)
    if not fence:
        raise fields.fail("front matter", "missing",
                          "start the file with a line `---`, the fields, then another `---`")
    closing = _CLOSING.search(text)
    if not closing:
        raise fields.fail("front matter", "is not closed", "add a line `---` after the last field")
    try:
        meta, body = _split(text, fence, closing)
    except _yaml_error() as exc:  # evaluated only when something was raised
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1  # the YAML text starts on the fence's line
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise EntryError(Problem(path, "front matter", f"not valid YAML: {reason}",
                                 "check quotes and indentation (titles with ': ' need quotes)",
                                 line=line)) from None
    except ValueError as exc:  # PyYAML raises a plain ValueError for dates like 2025-02-30
        field = _impossible_date_field(text)
        if field:
            raise fields.fail(field, f"impossible date ({exc})",
                              "check the day and month") from None
        raise fields.fail("front matter", f"a value cannot be read ({exc})",
                          "check values tagged with `!!`") from None
    except (TypeError, AttributeError) as exc:  # e.g. `!!timestamp nope` crashes PyYAML
        raise fields.fail("front matter", f"a value cannot be read ({exc})",
                          "check values tagged with `!!`") from None
    block = text[fence.end():closing.start()]
    # python-frontmatter turns front matter that is not a mapping (a list, a bare string)
    # into empty metadata without a word: say so rather than "title is missing".
    if not isinstance(meta, dict) or (not meta and block.strip()):
        raise fields.fail("front matter", "must be a set of `field: value` lines",
                          "write one `field: value` per line")
    warnings = [
        fields.warn(key, "unknown field", f"remove it or check the spelling; known: "
                    f"{', '.join(sorted(KNOWN_FIELDS))}")
        for key in meta if key not in KNOWN_FIELDS
    ]
    draft = meta.get("draft", False)
    if not isinstance(draft, bool):
        raise fields.fail("draft", "must be true or false", "write `draft: true` or remove it")
    if draft:
        return None, warnings

    _check_markup(path, text, closing.end())
    title = fields.text("title", meta.get("title"), required=True)
    published = fields.when("date", meta.get("date"), config.timezone, required=True)
    assert published is not None
    slug = slugify(fields.text("slug", meta.get("slug")) or path.stem)
    if not slug:
        raise fields.fail("slug", "is empty once made URL-safe",
                          "give the entry a `slug:` in a-z0-9")
    url = config.url_for(slug)
    takeaways = meta.get("takeaways")
    if isinstance(takeaways, dict):
        raise fields.fail("takeaways", "must be text or a list of text, not a mapping",
                          "write a list: takeaways: [\"first\", \"second\"]")
    article = CountedArticle(
        path=path,
        slug=slug,
        title=title,
        published=published,
        updated=fields.when("updated", meta.get("updated"), config.timezone),
        body=Body(lambda: markdown_body(body, url)),
        category=fields.text("category", meta.get("category")),
        summary=fields.text("summary", meta.get("summary")),
        author=fields.text("author", meta.get("author")),
        tags=fields.text_list("tags", meta.get("tags")),
        stated_takeaways=fields.text_list("takeaways", takeaways),
        sources=_sources(fields, meta.get("sources")),
        url=url,
    )
    # From the source, not the HTML (rendering waits until the entry is shown), and only
    # when asked for (the digest's few entries).
    return count_later(article, body), warnings


def _split(text: str, fence: re.Match[str] | None = None, closing: re.Match[str] | None = None
           ) -> tuple[object, str]:
    """(front matter, body) exactly as python-frontmatter's parse() gives them, without its
    cost when the block has the simple shape and no line of dashes (its boundary) inside it.
    `fence` and `closing`: the two patterns' matches in `text`, if the caller has them.
    """
    if closing is None:
        closing = _CLOSING.search(text)
    if fence is None:
        fence = _FENCE.match(text)
    if closing is not None and fence is not None and "\r" not in text:  # it turns CRLF to LF
        block = text[fence.end():closing.start()]
        meta = None if "---" in block and _BOUNDARY.search(block) else simple_fields(block)
        if meta is not None:
            return meta, text[closing.end():].strip()
    import frontmatter  # with PyYAML: only for front matter the fast path leaves to YAML

    return frontmatter.parse(text, handler=yaml_handler())  # type: ignore[no-any-return]


def _yaml_error() -> type[Exception]:
    import yaml

    return yaml.YAMLError


def _check_markup(path: Path, text: str, start: int) -> None:
    """Refuse HTML nested too deep for the sanitiser, and more markup than markdown-it renders
    in a fraction of a second, before the body is ever rendered; the body starts at `start`."""
    # too_deep's own first test, without a copy
    line = too_deep(text[start:]) if text.count("<", start) > MAX_DEPTH else None
    if line is not None:
        raise EntryError(Problem(
            path, "body", f"HTML is nested more than {MAX_DEPTH} levels deep; refused",
            "remove the surplus nested tags (often pasted markup, e.g. <div> inside <div>)",
            line=text.count("\n", 0, start) + line))
    # the length first: no copy of a body too short to hold too much
    if len(text) - start > MAX_MARKUP and (count := too_much_markup(text[start:])):
        raise EntryError(Problem(
            path, "body", f"holds {count:,} characters of Markdown markup (line breaks, "
            f"brackets, asterisks, underscores, tags…), more than {MAX_MARKUP:,}: it would "
            "take seconds to render; refused",
            "split it into several entries, or remove pasted or generated markup",
            line=text.count("\n", 0, start) + 1))


def _sources(fields: FieldReader, value: object) -> tuple[Source, ...]:
    if value is None:
        return ()
    hint = "write each as `- {title: \"...\", url: \"https://...\"}`"
    if not isinstance(value, list):
        raise fields.fail("sources", "must be a list", hint)
    sources = []
    for number, item in enumerate(value, 1):
        if not isinstance(item, dict) or not isinstance(item.get("title"), str):
            raise fields.fail("sources", f"item {number} needs a title", hint)
        url = item.get("url", "")
        url = one_line(url) if isinstance(url, str) else None  # a quoted "\x01" is still YAML
        if url is None or (url and not url.startswith(("https://", "http://"))):
            raise fields.fail("sources", f"item {number} has no absolute http(s) url", hint)
        sources.append(Source(fields.text("sources", item["title"]), url))
    return tuple(sources)


def _impossible_date_field(text: str) -> str | None:
    """The top-level field whose unquoted YYYY-MM-DD value is not a real day, if any."""
    for line in text.splitlines()[1:]:
        if line.strip() == "---":
            break
        match = re.match(r"([A-Za-z_][\w-]*)\s*:\s*(\d{4})-(\d\d)-(\d\d)\b", line)
        if match:
            try:
                date(*(int(part) for part in match.groups()[1:]))
            except ValueError:
                return match.group(1)
    return None


def _field_lines(text: str) -> dict[str, int]:
    """Line of each top-level front matter field, for error messages."""
    lines: dict[str, int] = {}
    closing = _CLOSING.search(text)
    head = text[: closing.start()] if closing else text  # not the whole body
    for number, line in enumerate(head.splitlines()[1:], 2):
        if line.strip() == "---":
            break
        match = _FIELD.match(line)
        if match:
            lines.setdefault(match.group(1), number)
    return lines
