"""The fast path for simple front matter reads exactly what YAML reads, or steps aside.

Checked against PyYAML itself on generated blocks full of YAML's surprises (`No`, `~`, dates
real and impossible, octal-looking numbers, colons, quotes, comments, lists in both styles).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.entries.readers.front_matter import simple_fields

WORDS = ["No", "no", "yes", "On", "off", "TRUE", "false", "y", "n", "~", "null", "Null",
         "2025-01-31", "2025-02-30", "2025-1-5", "2025-01-31 09:30", "2025-01-31T09:30:00Z",
         "1.10", "012", "0x1F", "1_000", "1:30", "42", "+7", "0", "-3", ".inf", "1e3",
         "a: b", "a:b", "a #b", "a#b", "#c", "x,y", "[x]", "{x}", "- x", "-x", "?x", ":x",
         "it's", 'say "hi"', "back\\slash", "é café", "Dr Bench 1", "https://e.org/a?b=1",
         "&a", "*a", "!!str x", "|", ">", "%x", "@x", "`x", "<<", "=", "\u00a0", "a  b",
         "tab\there", "emoji 🩺", "\u2028", "\x85", ""]
SCALAR = st.sampled_from(WORDS)
QUOTED = st.one_of(SCALAR.map(lambda w: f'"{w}"'), SCALAR.map(lambda w: f"'{w}'"))
VALUE = st.one_of(SCALAR, QUOTED)
FLOW_LIST = st.lists(VALUE, max_size=4).map(lambda items: "[" + ", ".join(items) + "]")
FLOW_MAP = st.lists(st.tuples(st.sampled_from(["title", "url", "yes", "null"]), VALUE),
                    min_size=1, max_size=3).map(
    lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}")
KEY = st.sampled_from(["title", "date", "tags", "sources", "draft", "my-key", "_x", "No",
                       "null", "on", "2025", "title "])
ITEM = st.one_of(VALUE, FLOW_MAP)
BLOCK_LIST = st.tuples(st.sampled_from(["", "  ", "    "]), st.lists(ITEM, max_size=3)).map(
    lambda t: "".join(f"\n{t[0]}- {item}" for item in t[1]))
FIELD = st.one_of(
    st.tuples(KEY, st.one_of(VALUE, FLOW_LIST, FLOW_MAP)).map(lambda t: f"{t[0]}: {t[1]}"),
    st.tuples(KEY, BLOCK_LIST).map(lambda t: f"{t[0]}:{t[1]}"),
    st.sampled_from(["", "# a comment", "  indented: x", "  continued", "...", "- stray"]),
)
BLOCK = st.lists(FIELD, max_size=8).map("\n".join)
# Mostly values that stay in the fast path, so the resolver's answers are compared often.
PLAIN_WORDS = st.sampled_from(["No", "yes", "off", "~", "null", "2025-01-31", "2025-02-30",
                               "2025-1-5", "012", "42", "+7", "1:30", "a:b", "Dr Bench 1",
                               "é café", "x,y", "1.10", "0", "a  b"])
SIMPLE = st.lists(st.tuples(KEY, st.one_of(
    PLAIN_WORDS, PLAIN_WORDS.map(lambda w: f'"{w}"'),
    st.lists(PLAIN_WORDS, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"))),
    max_size=6).map(lambda fields: "\n".join(f"{k}: {v}" for k, v in fields))


def yaml_reading(block: str) -> object:
    try:
        return yaml.load(block, Loader=yaml.CSafeLoader)
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        return type(exc)


def fast_reading(block: str) -> object:
    try:
        return simple_fields(block)
    except ValueError as exc:
        return type(exc)


@settings(max_examples=3000, deadline=None)
@given(block=BLOCK | SIMPLE)
def test_the_fast_path_reads_what_yaml_reads_or_steps_aside(block: str) -> None:
    fast = fast_reading(block)
    if fast is None:
        return
    expected = yaml_reading(block)
    if expected is None:  # an empty block: YAML reads nothing, the fast path an empty mapping
        assert fast == {}
        return
    assert fast == expected and _types(fast) == _types(expected), block


def _types(value: object) -> object:
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value)


def test_the_common_shape_takes_the_fast_path() -> None:
    block = ('title: "Sleep and blood pressure"\ndate: 2026-03-14\ncategory: Heart Health\n'
             "author: Dr Bench 1\ntags: [sleep, heart]\ndraft: No\nsources:\n"
             '  - {title: "Study 1", url: "https://example.org/1"}\n')
    assert simple_fields(block) == {
        "title": "Sleep and blood pressure", "date": date(2026, 3, 14),
        "category": "Heart Health", "author": "Dr Bench 1", "tags": ["sleep", "heart"],
        "draft": False, "sources": [{"title": "Study 1", "url": "https://example.org/1"}]}


@pytest.mark.parametrize("block", [
    "title: x # a comment", 'title: "a \\"quoted\\" word"', "summary: one\n  two",
    "date: 2026-03-14T09:30:00+01:00", "title: 1.10", "tags:\n  - a\n    - b", "x: &a 1",
])
def test_what_the_fast_path_cannot_be_sure_of_goes_to_yaml(block: str) -> None:
    assert simple_fields(block) is None


def test_an_impossible_date_is_left_to_yaml_and_its_error() -> None:
    assert simple_fields("date: 2025-02-30") is None  # YAML raises, or finds a worse slip first


# Whole files: the fence lines, what lies between, around and after them, as editors leave it.
LINE = st.one_of(SIMPLE, BLOCK, st.sampled_from(
    ["", " ", "---", "----", "--- ", "---\t", "- - -", "--", "---x", "text", "  text  ",
     "\t", "\u00a0", "\r", "# heading", "a: b"]))
FILE = st.tuples(st.sampled_from(["---", "--- ", "---\t", "----", " ---", ""]),
                 st.lists(LINE, max_size=6), st.sampled_from(["---", "--- ", "----", "...", ""]),
                 st.lists(LINE, max_size=6), st.sampled_from(["", "\n", "\n\n", "  \n", " "])
                 ).map(lambda t: "\n".join([t[0], *t[1], t[2], *t[3]]) + t[4])


def _parse(read: object, text: str) -> object:
    try:
        return read(text)  # type: ignore[operator]
    except (yaml.YAMLError, ValueError, TypeError, AttributeError) as exc:
        return type(exc)


@settings(max_examples=1500, deadline=None)
@given(FILE)
def test_the_reader_splits_a_file_as_python_frontmatter_does(text: str) -> None:
    """The body's exact text counts too: the reading time is drawn from it."""
    import frontmatter

    from pipeline.entries.readers.front_matter import yaml_handler
    from pipeline.entries.readers.markdown import _split

    expected = _parse(lambda t: frontmatter.parse(t, handler=yaml_handler()), text)
    assert _parse(_split, text) == expected
    if isinstance(expected, tuple):
        assert _types(_parse(_split, text)[0]) == _types(expected[0])  # type: ignore[index]


def test_the_resolver_rules_are_pyyaml_s_own() -> None:
    """The fast path resolves plain values without importing PyYAML, by a copy of its table:
    the same patterns, flags, tags and order for every first character."""
    from yaml.resolver import Resolver

    from pipeline.entries.readers.front_matter import _IMPLICIT

    def table(rules: dict) -> dict:  # type: ignore[type-arg]
        return {first: [(tag, p.pattern, p.flags) for tag, p in entries]
                for first, entries in rules.items()}

    assert table(_IMPLICIT) == table(Resolver.yaml_implicit_resolvers)


@settings(max_examples=3000, deadline=None)
@given(st.one_of(SCALAR, PLAIN_WORDS, st.text(alphabet="-+.:_0123456789eExXbonNulTtZ ~<=",
                                               max_size=24), st.text(max_size=12)))
def test_plain_values_resolve_as_pyyaml_resolves_them(plain: str) -> None:
    import yaml

    from pipeline.entries.readers.front_matter import _tag

    expected = yaml.resolver.Resolver().resolve(yaml.ScalarNode, plain, (True, False))
    assert _tag(plain) == expected


def test_the_boundary_is_python_frontmatter_s() -> None:
    from frontmatter.default_handlers import YAMLHandler

    from pipeline.entries.readers.front_matter import FM_BOUNDARY

    assert YAMLHandler.FM_BOUNDARY is not None
    assert (FM_BOUNDARY.pattern, FM_BOUNDARY.flags) == (YAMLHandler.FM_BOUNDARY.pattern,
                                                        YAMLHandler.FM_BOUNDARY.flags)


def test_reading_simple_front_matter_imports_no_yaml_library(site: Path) -> None:
    """PyYAML and python-frontmatter are imported only for a block the fast path leaves."""
    import subprocess
    import sys

    simple = ('---\ntitle: "Sleep"\ndate: 2026-03-14\ntags: [a, b]\nsources:\n'
              '  - {title: "S", url: "https://example.org/1"}\n---\n\nBody.\n')
    awkward = '---\ntitle: "Sleep" # a comment\ndate: 2026-03-14\n---\n\nBody.\n'
    script = (
        "import sys\nfrom pathlib import Path\n"
        "from pipeline.core.config import load_config\n"
        "from pipeline.entries.collect import read_entry\n"
        "config = load_config(Path(sys.argv[1]))\n"
        "article, problems = read_entry(Path(sys.argv[2]), Path('a.md'), config)\n"
        "assert article is not None and article.title == 'Sleep', (article, problems)\n"
        "print(sorted({'yaml', 'frontmatter'} & set(sys.modules)))\n")
    for text, imported in ((simple, "[]"), (awkward, "['frontmatter', 'yaml']")):
        entry = site / "articles" / "a.md"
        entry.write_text(text)
        done = subprocess.run([sys.executable, "-c", script, str(site), str(entry)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == imported
