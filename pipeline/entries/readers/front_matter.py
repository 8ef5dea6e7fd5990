"""Front matter as YAML reads it, without YAML's cost for the simple cases.

PyYAML's C parser leaves building the values to Python (about 60 µs of an entry's ~170 µs).
Most front matter is a handful of `field: value` lines, so `simple_fields` reads exactly that
shape itself: quoted strings without escapes, plain words, `[a, b]` lists, `- item` lists and
`- {key: "value"}` items, each plain value resolved by PyYAML's own rules (so `No` is still
false and `2026-01-31` still a date). Anything else (comments, escapes, multi-line values,
numbers other than plain integers, timestamps with a time, anchors, tags…) returns None, and
the caller hands the block to YAML as before: the fast path never decides what YAML means.

PyYAML itself (and python-frontmatter) are imported only when a block goes to YAML: importing
them was ~11 ms of a run that reads one new entry. The resolver's rules are therefore a copy of
PyYAML's table (`_IMPLICIT`), which tests/reading/test_front_matter.py compares with PyYAML's
own, pattern by pattern, so a PyYAML that changed them would fail the tests, not the reading.
"""

from __future__ import annotations

import re
from datetime import date
from functools import cache, lru_cache
from typing import Any

_STR = "tag:yaml.org,2002:str"
# PyYAML's implicit resolvers (yaml/resolver.py, class Resolver), in its order: (tag, pattern,
# the first characters it is tried for; "" is the empty scalar).
_IMPLICIT_RULES = (
    ("tag:yaml.org,2002:bool", r'''^(?:yes|Yes|YES|no|No|NO
                    |true|True|TRUE|false|False|FALSE
                    |on|On|ON|off|Off|OFF)$''', re.X, "yYnNtTfFoO"),
    ("tag:yaml.org,2002:float", r'''^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
                    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
                    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$''', re.X, "-+0123456789."),
    ("tag:yaml.org,2002:int", r'''^(?:[-+]?0b[0-1_]+
                    |[-+]?0[0-7_]+
                    |[-+]?(?:0|[1-9][0-9_]*)
                    |[-+]?0x[0-9a-fA-F_]+
                    |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$''', re.X, "-+0123456789"),
    ("tag:yaml.org,2002:merge", r"^(?:<<)$", 0, "<"),
    ("tag:yaml.org,2002:null", r'''^(?: ~
                    |null|Null|NULL
                    | )$''', re.X, ("~", "n", "N", "")),
    ("tag:yaml.org,2002:timestamp", r'''^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
                    |[0-9][0-9][0-9][0-9] -[0-9][0-9]? -[0-9][0-9]?
                     (?:[Tt]|[ \t]+)[0-9][0-9]?
                     :[0-9][0-9] :[0-9][0-9] (?:\.[0-9]*)?
                     (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$''', re.X, "0123456789"),
    ("tag:yaml.org,2002:value", r"^(?:=)$", 0, "="),
    ("tag:yaml.org,2002:yaml", r"^(?:!|&|\*)$", 0, "!&*"),
)
_IMPLICIT: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
for _tag_name, _pattern, _flags, _firsts in _IMPLICIT_RULES:
    for _first in _firsts:
        _IMPLICIT.setdefault(_first, []).append((_tag_name, re.compile(_pattern, _flags)))
# python-frontmatter's YAML boundary: a line of three or more dashes (its YAMLHandler's).
FM_BOUNDARY = re.compile(r"^-{3,}\s*$", re.MULTILINE)
_BOOLS = {"yes": True, "no": False, "true": True, "false": False, "on": True, "off": False}
# Characters YAML treats specially anywhere in a block (line breaks of its own, tabs, BOM,
# non-printables it refuses): leave such a block to YAML and its error messages.
_AWKWARD = re.compile("[\t\r\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff"
                      "\ud800-\udfff]")
_KEY_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*):(?: +(.*))?")
_ITEM_LINE = re.compile(r"( *)- +(.*)")
_DOUBLE = re.compile(r'"([^"\\]*)" *')
# The commonest lines, read in one match each, as the steps below would read them: a key
# and a value that is (2) quoted without escapes (_DOUBLE), (3-5) a plain YYYY-MM-DD (always
# a timestamp to YAML's resolver), (6) a flow list (_flow_list), (7) plain text without
# indicators, `:` or `#` (so _PLAIN matches it; _resolve decides what it is), or none.
_COMMON_LINE = re.compile(r'''([A-Za-z_][A-Za-z0-9_-]*):(?:\ +(?:"([^"\\]*)"
    |([0-9]{4})-([0-9]{2})-([0-9]{2})|(\[.*)|([^\s\-?:,\[\]{}#&*!|>'"%@`][^:#]*?)))?\ *''', re.X)
_SINGLE = re.compile(r"'([^']*)' *")
# A plain scalar: no indicator first, no ": " or " #" inside, not ending in ":".
_PLAIN = re.compile(r"(?![-?:,\[\]{}#&*!|>'\"%@`])(?:(?!: | #).)*(?<!:)")
# Inside [ ] or { }: quoted, or plain without flow indicators, quotes, colons or #.
_FLOW_ITEM = re.compile(r""" *(?:"([^"\\]*)"|'([^']*)'"""
                        r"""|([^,\[\]{}#"'&*!|>%@`:?\s-][^,\[\]{}#"':]*?)) *(,|$)""")
_FLOW_PAIR = re.compile(r" *([A-Za-z_][A-Za-z0-9_-]*): +")
_DAY = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


class _NotSimple(Exception):
    """The block is not of the simple shape: YAML reads it."""


def simple_fields(block: str) -> dict[str, Any] | None:
    """The mapping YAML would read from `block`, or None if it is not simple enough to be
    sure."""
    if _AWKWARD.search(block):
        return None
    lines = block.split("\n")
    fields: dict[str, Any] = {}
    at = 0
    try:
        while at < len(lines):
            line = lines[at]
            at += 1
            common = _COMMON_LINE.fullmatch(line)
            if common:
                kind = common.lastindex
                key = _key(common.group(1))
                if kind == 2:
                    fields[key] = common.group(2)
                elif kind == 5:
                    fields[key] = date(int(common.group(3)), int(common.group(4)),
                                       int(common.group(5)))
                elif kind == 6:
                    fields[key] = _flow_list(common.group(6))
                elif kind == 7:
                    fields[key] = _resolve(common.group(7))
                else:
                    fields[key], at = _block_list(lines, at)
                continue
            if not line.strip(" "):
                continue
            match = _KEY_LINE.fullmatch(line.rstrip(" "))
            if not match:
                return None
            key, value = _key(match.group(1)), (match.group(2) or "").rstrip(" ")
            if value:
                fields[key] = _value(value)
                continue
            fields[key], at = _block_list(lines, at)
    except (_NotSimple, ValueError):  # an impossible date: YAML says which error comes first
        return None
    return fields


def _block_list(lines: list[str], at: int) -> tuple[list[Any] | None, int]:
    """The `- item` lines after a field with no value (None if there are none)."""
    items: list[Any] = []
    indent = None
    while at < len(lines):
        line = lines[at]
        if not line.strip(" "):
            at += 1
            continue
        match = _ITEM_LINE.fullmatch(line.rstrip(" "))
        if not match:
            if line.startswith((" ", "-")):
                raise _NotSimple  # a continuation or nesting: not this shape
            break
        if indent is None:
            indent = match.group(1)
        elif match.group(1) != indent:
            raise _NotSimple
        items.append(_value(match.group(2)))
        at += 1
    return (items if indent is not None else None), at


def _value(text: str) -> Any:
    if text[0] == '"':
        return _whole(_DOUBLE, text).group(1)
    if text[0] == "'":
        return _whole(_SINGLE, text).group(1)
    if text[0] == "[":
        return _flow_list(text)
    if text[0] == "{":
        return _flow_map(text)
    if not _PLAIN.fullmatch(text):
        raise _NotSimple
    return _resolve(text)


def _whole(pattern: re.Pattern[str], text: str) -> re.Match[str]:
    match = pattern.fullmatch(text)
    if match is None:
        raise _NotSimple
    return match


def _flow_list(text: str) -> list[Any]:
    inner = text.rstrip(" ")
    if not inner.endswith("]"):
        raise _NotSimple
    inner = inner[1:-1]
    if not inner.strip(" "):  # str.strip would take a no-break space too; YAML keeps it
        return []
    items, position = [], 0
    while position < len(inner):
        match = _FLOW_ITEM.match(inner, position)
        if match is None:
            raise _NotSimple
        items.append(_flow_scalar(match))
        position = match.end()
        if match.group(4) == "" and position < len(inner):
            raise _NotSimple
    if inner.rstrip(" ").endswith(","):
        raise _NotSimple  # a trailing comma: leave it to YAML
    return items


def _flow_map(text: str) -> dict[str, Any]:
    inner = text.rstrip(" ")
    if not inner.endswith("}"):
        raise _NotSimple
    inner = inner[1:-1]
    mapping: dict[str, Any] = {}
    position = 0
    while position < len(inner):
        pair = _FLOW_PAIR.match(inner, position)
        if pair is None:
            raise _NotSimple
        value = _FLOW_ITEM.match(inner, pair.end())
        if value is None or (value.group(4) == "" and value.end() < len(inner)):
            raise _NotSimple
        mapping[_key(pair.group(1))] = _flow_scalar(value)
        position = value.end()
    if not mapping or inner.rstrip(" ").endswith(","):
        raise _NotSimple
    return mapping


def _flow_scalar(match: re.Match[str]) -> Any:
    if match.group(1) is not None:
        return match.group(1)
    if match.group(2) is not None:
        return match.group(2)
    return _resolve(match.group(3))


def _key(plain: str) -> str:
    """A key that YAML reads as text (not `no`, `null`, `2025`…)."""
    if plain in _TEXT_KEYS:  # the same dozen keys in every entry
        return plain
    if not isinstance(_resolve(plain), str):
        raise _NotSimple
    if len(_TEXT_KEYS) < 1024:
        _TEXT_KEYS.add(plain)
    return plain


_TEXT_KEYS: set[str] = set()


@lru_cache(maxsize=4096)  # categories, authors and tags repeat from entry to entry
def _tag(plain: str) -> str:
    """The tag PyYAML's resolver gives a plain scalar (BaseResolver.resolve, implicit)."""
    for tag, pattern in _IMPLICIT.get(plain[:1], ()):
        if pattern.match(plain):
            return tag
    return _STR


def _resolve(plain: str) -> Any:
    """A plain scalar by YAML's own resolver: text, true/false, null, a whole number or a
    date; anything else (floats, octal, times…) is left to YAML."""
    tag = _tag(plain)
    if tag == _STR:
        return plain
    if tag.endswith(":bool"):
        return _BOOLS[plain.lower()]
    if tag.endswith(":null"):
        return None
    if tag.endswith(":int") and re.fullmatch(r"[-+]?(?:0|[1-9][0-9]*)", plain):
        return int(plain)
    if tag.endswith(":timestamp") and (day := _DAY.fullmatch(plain)):
        return date(*(int(part) for part in day.groups()))
    raise _NotSimple


@cache
def yaml_handler() -> Any:
    """python-frontmatter's YAML handler (same split, same loader) with the fast path first;
    imports python-frontmatter and PyYAML, so only made for a block the fast path leaves."""
    from frontmatter.default_handlers import YAMLHandler

    class FastYAMLHandler(YAMLHandler):  # type: ignore[misc]
        def load(self, fm: str, **kwargs: object) -> Any:
            fields = simple_fields(fm)
            return fields if fields is not None else super().load(fm, **kwargs)

    return FastYAMLHandler()
