"""The corpus of broken and hostile entries in tests/hostile/: each broken one is reported as
`path:line: field: problem — hint` and left out, and everything else is still published,
both by the collect stage and by a whole `newsletter run` (which then exits 1)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import NOW, PROBLEM_LINE, markdown_entry, messages, parsed_feeds, write_entry
from pipeline.cli.main import cli
from pipeline.core.config import Config
from pipeline.entries import collect
from pipeline.entries.collect import collect_articles

CORPUS = Path(__file__).resolve().parents[1] / "hostile"

# file → (line, field, words the problem must contain). The hint after " — " says what to do.
REJECTED: dict[str, tuple[int, str, str]] = {
    "no-front-matter.md": (1, "front matter", "missing"),
    "unclosed-front-matter.md": (1, "front matter", "is not closed"),
    "malformed-yaml.md": (4, "front matter", "not valid YAML"),
    "front-matter-not-fields.md": (1, "front matter", "must be a set of `field: value` lines"),
    "missing-title.md": (1, "title", "is missing"),
    "empty-title.md": (2, "title", "is missing or empty"),
    "blank-title.md": (2, "title", "is empty"),
    "title-no.md": (2, "title", "must be text, not true/false"),
    "missing-date.md": (1, "date", "is missing"),
    "impossible-date.md": (3, "date", "impossible date"),
    "ambiguous-date.md": (3, "date", "is ambiguous (day/month or month/day?)"),
    "unreadable-date.md": (3, "date", "'last Tuesday' is not a date"),
    "tags-number.md": (4, "tags", "must be a list of text, not a number"),
    "takeaways-mapping.md": (4, "takeaways", "not a mapping"),
    "category-list.md": (4, "category", "must be text, not a list"),
    "draft-maybe.md": (4, "draft", "must be true or false"),
    "latin-1.md": (8, "file", "is not UTF-8"),
    "utf-16.md": (1, "file", "is UTF-16, not UTF-8"),
    "empty.md": (1, "file", "is empty"),
    "whitespace-only.md": (1, "file", "is empty"),
    "binary.md": (1, "file", "is binary"),
    "duplicate-slug-second.md": (1, "slug", "is already used by articles/duplicate-slug-first.md"),
    "page-without-date-line.txt": (1, "date", "no date line"),
    "page-without-title.txt": (1, "title", "missing"),
    "page-impossible-date.txt": (9, "date", "'31 Feb 2026' is not a date"),
    "huge.md": (1, "file", "byte limit"),  # written by the test: 1 MB has no place in git
}
# Hostile but publishable: sanitised, escaped, made absolute (see test_untrusted_text.py).
PUBLISHED = {
    "script-and-handlers.md", "control-characters.md", "header-injection.md",
    "relative-links.md", "placeholder-in-title.md", "windows-line-endings.md",
    "byte-order-mark.md", "unknown-field.md", "duplicate-slug-first.md", "accented-title.md",
    "page-with-only-a-title.txt",
}
WARNED = {"unknown-field.md": (4, "autor", "unknown field")}


def corpus_site(site: Path) -> Path:
    shutil.copytree(CORPUS, site / "articles", dirs_exist_ok=True)
    filler = "Words go here. " * (collect.MAX_ENTRY_BYTES // 15 + 1)
    write_entry(site, "huge.md", markdown_entry(title="Huge", body=filler))
    return site


def test_the_corpus_and_its_table_agree() -> None:
    on_disk = {p.name for p in CORPUS.iterdir() if not p.name.startswith(".")}
    assert on_disk | {"huge.md"} == set(REJECTED) | PUBLISHED


def test_collect_reports_each_broken_entry_where_and_what_and_keeps_the_rest(
        site: Path, config: Config) -> None:
    corpus_site(site)
    articles, problems = collect_articles(config, NOW)
    assert {a.path.name for a in articles} == PUBLISHED
    errors = {p.path.name: p for p in problems if not p.warning}
    assert set(errors) == set(REJECTED)
    for name, (line, field, words) in REJECTED.items():
        problem = errors[name]
        assert (problem.line, problem.field) == (line, field), str(problem)
        assert words in problem.problem, str(problem)
        assert problem.hint.strip(), str(problem)
        assert PROBLEM_LINE.fullmatch(str(problem))
        assert str(problem).startswith(f"articles/{name}:{line}: {field}: ")
    warnings = {p.path.name: (p.line, p.field, p.problem) for p in problems if p.warning}
    assert warnings == WARNED


def test_run_publishes_the_rest_reports_each_rejection_and_exits_1(site: Path) -> None:
    corpus_site(site)
    result = CliRunner().invoke(cli, ["run", "--site", str(site)], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    reported = result.stderr.splitlines()
    assert all(PROBLEM_LINE.fullmatch(line) for line in reported), reported
    for name, (line, field, words) in REJECTED.items():
        assert any(r.startswith(f"articles/{name}:{line}: {field}: ") and words in r
                   for r in reported), name
    assert len(reported) == len(REJECTED) + len(WARNED)
    assert f"{len(PUBLISHED)} published entries" in result.stdout
    assert "Digest 1: 10 entries" in result.stdout  # digest.max_articles

    for feed in parsed_feeds(site).values():
        assert len(feed.entries) == len(PUBLISHED)
    sent = messages(site)
    assert len(sent) == 2  # one per active subscriber
    assert sent[0]["Subject"] == "Test Clinic Journal: Café, Ärzte und Öl — naïve questions"


def test_the_rejected_entries_are_published_once_fixed(site: Path) -> None:
    corpus_site(site)
    CliRunner().invoke(cli, ["run", "--site", str(site)])
    (site / "articles" / "missing-title.md").write_text(
        '---\ntitle: "Now with a title"\ndate: 2026-01-05\n---\n\nBody.\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", "--site", str(site)])
    assert result.exit_code == 1  # the others are still broken
    assert "articles/missing-title.md" not in result.stderr
    newest = [m for m in messages(site) if "Now with a title" in str(m["Subject"])]
    assert len(newest) == 2


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_check_lists_the_same_problem_as_run(site: Path, name: str) -> None:
    corpus_site(site)
    keep = {name, "duplicate-slug-first.md" if name == "duplicate-slug-second.md" else name}
    for other in (site / "articles").iterdir():
        if other.name not in keep:
            other.unlink()
    result = CliRunner().invoke(cli, ["check", "--site", str(site)])
    line, field, _ = REJECTED[name]
    assert result.exit_code == 1
    assert f"articles/{name}:{line}: {field}: " in result.stderr
    assert not (site / "public").exists() and not (site / "outbox").exists()


def test_symlinks_leaving_articles_are_refused_and_loops_reported(site: Path,
                                                                  tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.md"
    secret.parent.mkdir()
    secret.write_text(markdown_entry(title="Secret from outside"), encoding="utf-8")
    articles = site / "articles"
    write_entry(site, "steady.md", markdown_entry(title="A steady entry"))
    write_entry(site, "_kept/linked.md", markdown_entry(title="Linked from inside",
                                                        date="2026-03-15"))
    (articles / "inside.md").symlink_to(articles / "_kept" / "linked.md")
    (articles / "outside.md").symlink_to(secret)
    (articles / "elsewhere").symlink_to(secret.parent, target_is_directory=True)
    (articles / "loop-a.md").symlink_to(articles / "loop-b.md")
    (articles / "loop-b.md").symlink_to(articles / "loop-a.md")
    (articles / "sub").mkdir()
    (articles / "sub" / "up").symlink_to(articles, target_is_directory=True)
    for command in ("check", "run"):
        result = CliRunner().invoke(cli, [command, "--site", str(site)], catch_exceptions=False)
        assert result.exit_code == 1, result.output  # reported, not crashed on (70)
        lines = result.stderr.splitlines()
        problems = {PROBLEM_LINE.fullmatch(line).group("path"): line for line in lines[:5]}
        assert set(problems) == {"articles/outside.md", "articles/elsewhere",
                                 "articles/loop-a.md", "articles/loop-b.md", "articles/sub/up"}
        assert "leads outside articles/" in problems["articles/outside.md"]
        assert "leads outside articles/" in problems["articles/elsewhere"]
        assert "cannot be followed" in problems["articles/loop-a.md"]
        assert "a folder already read (a loop)" in problems["articles/sub/up"]
    titles = {entry.title for feed in parsed_feeds(site).values() for entry in feed.entries}
    assert titles == {"A steady entry", "Linked from inside"}
    for path in (site / "public").rglob("*"):
        assert not path.is_file() or b"Secret from outside" not in path.read_bytes()
    assert all("Secret" not in str(m["Subject"]) for m in messages(site))


def test_a_file_name_with_control_characters_is_shown_escaped(site: Path) -> None:
    write_entry(site, "steady.md", markdown_entry(title="A steady entry"))
    write_entry(site, "bad\nname\u202e.md", "---\ndate: 2026-03-14\n---\n\nNo title.\n")
    result = CliRunner().invoke(cli, ["run", "--site", str(site)], catch_exceptions=False)
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()  # one problem, one line: the newline is escaped
    assert PROBLEM_LINE.fullmatch(line)
    assert line.startswith("articles/bad\\nname\\u202e.md:1: title: is missing or empty — ")
