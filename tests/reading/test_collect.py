"""Collecting entries from a real articles/ folder: order, filters, duplicates and bad files."""

from __future__ import annotations

import dataclasses
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import ENTRIES, NOW, markdown_entry, write_entry
from pipeline.core.config import Config, load_config
from pipeline.core.errors import Problem
from pipeline.core.models import Article, Body
from pipeline.entries import collect, fork
from pipeline.entries.cache import RecalledArticle
from pipeline.entries.collect import collect_articles, scan
from pipeline.entries.readers import READERS, LazyReader


def slugs(config: Config) -> list[str]:
    articles, _ = collect_articles(config, NOW)
    return [a.slug for a in articles]


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if not p.warning]


def test_newest_first(site: Path, config: Config) -> None:
    write_entry(site, "middle.md", markdown_entry(date="2026-05-01"))
    write_entry(site, "oldest.md", markdown_entry(date="2025-01-01"))
    write_entry(site, "newest.md", markdown_entry(date="2026-11-01T09:00:00+00:00"))
    write_entry(site, "same-day-later.md", markdown_entry(date="2026-05-01T10:00:00+01:00"))
    assert slugs(config) == ["newest", "same-day-later", "middle", "oldest"]


def test_order_mixes_formats_by_date(site: Path, config: Config) -> None:
    shutil.copy(ENTRIES / "walking-after-meals.txt", site / "articles")  # 9 Apr 2026
    shutil.copy(ENTRIES / "hay-fever-eye-drops.txt", site / "articles")  # 2 May 2026
    write_entry(site, "april.md", markdown_entry(date="2026-04-20"))
    assert slugs(config) == ["hay-fever-eye-drops", "april", "walking-after-meals"]


def test_draft_is_left_out_silently(site: Path, config: Config) -> None:
    write_entry(site, "draft.md", markdown_entry(draft="true"))
    write_entry(site, "kept.md", markdown_entry())
    articles, problems = collect_articles(config, NOW)
    assert [a.slug for a in articles] == ["kept"]
    assert problems == []


def test_future_dated_entry_is_left_out_until_its_time(site: Path, config: Config) -> None:
    write_entry(site, "tomorrow.md", markdown_entry(date="2026-11-26"))
    write_entry(site, "now.md", markdown_entry(date=NOW.isoformat()))
    write_entry(site, "today.md", markdown_entry(date="2026-11-25"))
    articles, problems = collect_articles(config, NOW)
    assert [a.slug for a in articles] == ["now", "today"]
    assert problems == []
    later, _ = collect_articles(config, NOW + timedelta(days=1))
    assert [a.slug for a in later] == ["tomorrow", "now", "today"]


def test_future_dated_is_judged_as_an_instant_not_a_wall_clock(site: Path,
                                                             config: Config) -> None:
    # 12:30 in New York is 17:30 UTC: after NOW (12:00 UTC) although "12:30" looks early.
    write_entry(site, "ny.md", markdown_entry(date="2026-11-25T12:30:00-05:00"))
    write_entry(site, "tokyo.md", markdown_entry(date="2026-11-25T20:00:00+09:00"))  # 11:00 UTC
    assert slugs(config) == ["tokyo"]


def test_duplicate_slug_reports_the_second_and_keeps_the_first(site: Path,
                                                              config: Config) -> None:
    write_entry(site, "a-first.md", markdown_entry(title="First", slug="shared"))
    write_entry(site, "b-second.md", markdown_entry(title="Second", slug="shared",
                                                    date="2026-04-01"))
    articles, problems = collect_articles(config, NOW)
    assert [(a.slug, a.title) for a in articles] == [("shared", "First")]
    assert len(problems) == 1
    problem = problems[0]
    assert problem.path == Path("articles/b-second.md")
    assert problem.field == "slug"
    assert not problem.warning
    assert "articles/a-first.md" in problem.problem
    assert str(problem).startswith("articles/b-second.md:1: slug: 'shared' is already used by")


def test_duplicate_slug_across_formats(site: Path, config: Config) -> None:
    shutil.copy(ENTRIES / "hay-fever-eye-drops.txt", site / "articles")
    write_entry(site, "hay-fever-eye-drops.md", markdown_entry(title="Markdown twin"))
    articles, problems = collect_articles(config, NOW)
    assert [a.title for a in articles] == ["Markdown twin"]  # .md sorts before .txt
    assert [(p.path, p.field) for p in problems] == [
        (Path("articles/hay-fever-eye-drops.txt"), "slug")]


@pytest.mark.parametrize(("name", "data", "words"), [
    ("latin1.md", markdown_entry(title="Café").encode("latin-1"), "not UTF-8"),
    ("empty.md", b"", "empty"),
    ("blank.txt", b" \n\n\t\n", "empty"),
    ("binary.md", b"---\ntitle: x\x00\x01\x02\n---\n", "binary"),
    ("image.txt", bytes(range(256)) * 4, "binary"),
])
def test_bad_file_is_reported_and_the_rest_collected(site: Path, config: Config, name: str,
                                                     data: bytes, words: str) -> None:
    write_entry(site, "good.md", markdown_entry())
    (site / "articles" / name).write_bytes(data)
    articles, problems = collect_articles(config, NOW)
    assert [a.slug for a in articles] == ["good"]
    assert len(problems) == 1
    problem = problems[0]
    assert problem.path == Path("articles") / name
    assert problem.field == "file"
    assert words in problem.problem
    assert not problem.warning
    assert str(problem).startswith(f"articles/{name}:")


def test_non_utf8_problem_names_the_line_of_the_bad_byte(site: Path, config: Config) -> None:
    text = markdown_entry(body="First line.\n\nA café.")
    (site / "articles" / "latin1.md").write_bytes(text.encode("latin-1"))
    _, problems = collect_articles(config, NOW)
    (problem,) = problems
    assert problem.line == text.splitlines().index("A café.") + 1


def test_utf8_with_byte_order_mark_is_read(site: Path, config: Config) -> None:
    (site / "articles" / "bom.md").write_bytes(b"\xef\xbb\xbf" + markdown_entry().encode())
    articles, problems = collect_articles(config, NOW)
    assert [a.slug for a in articles] == ["bom"]
    assert problems == []


def test_oversize_file_is_reported_and_the_rest_collected(site: Path, config: Config) -> None:
    write_entry(site, "good.md", markdown_entry())
    filler = "Words go here. " * (collect.MAX_ENTRY_BYTES // 15 + 1)
    big = write_entry(site, "huge.md", markdown_entry(body=filler))
    assert big.stat().st_size > collect.MAX_ENTRY_BYTES
    articles, problems = collect_articles(config, NOW)
    assert [a.slug for a in articles] == ["good"]
    (problem,) = problems
    assert problem.path == Path("articles/huge.md")
    assert problem.field == "file"
    assert "limit" in problem.problem


def test_file_at_the_size_limit_is_read(site: Path, config: Config,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_entry(site, "edge.md", markdown_entry())
    monkeypatch.setattr(collect, "MAX_ENTRY_BYTES", path.stat().st_size)
    assert slugs(config) == ["edge"]
    monkeypatch.setattr(collect, "MAX_ENTRY_BYTES", path.stat().st_size - 1)
    assert slugs(config) == []


def test_entry_errors_are_reported_and_the_rest_collected(site: Path, config: Config) -> None:
    write_entry(site, "good.md", markdown_entry())
    write_entry(site, "no-title.md", "---\ndate: 2026-01-01\n---\n\nBody.\n")
    shutil.copy(ENTRIES / "no-date-line.txt", site / "articles")
    articles, problems = collect_articles(config, NOW)
    assert [a.slug for a in articles] == ["good"]
    assert sorted((str(p.path), p.field) for p in problems) == [
        ("articles/no-date-line.txt", "date"), ("articles/no-title.md", "title")]


def test_warnings_are_passed_on_and_the_entry_kept(site: Path, config: Config) -> None:
    write_entry(site, "typo.md", markdown_entry(autor="Someone"))
    articles, problems = collect_articles(config, NOW)
    assert [a.slug for a in articles] == ["typo"]
    assert [(p.field, p.warning, p.line) for p in problems] == [("autor", True, 4)]


def test_hidden_files_and_folders_are_ignored(site: Path, config: Config) -> None:
    write_entry(site, "visible.md", markdown_entry())
    write_entry(site, ".hidden.md", "not even front matter")
    write_entry(site, ".drafts/secret.md", markdown_entry(title="Secret"))
    write_entry(site, "_partial.md", "not an entry")
    (site / "articles" / ".DS_Store.txt").write_bytes(b"\x00\x01binary")
    articles, problems = collect_articles(config, NOW)
    assert [a.slug for a in articles] == ["visible"]
    assert problems == []


def test_other_formats_are_ignored_and_subfolders_read(site: Path, config: Config) -> None:
    write_entry(site, "notes.docx", "whatever")
    write_entry(site, "README", "whatever")
    write_entry(site, "2026/nested.md", markdown_entry())
    write_entry(site, "UPPER.MD", markdown_entry(date="2026-01-01"))
    assert slugs(config) == ["nested", "upper"]


def test_no_articles_folder_is_nothing_to_collect(site: Path, config: Config) -> None:
    shutil.rmtree(site / "articles")
    assert scan(config) == []
    assert collect_articles(config, NOW) == ([], [])


def test_all_sample_articles_collect_without_problems(sample_site: Path) -> None:
    config = load_config(sample_site)
    articles, problems = collect_articles(config, NOW)
    assert problems == []
    assert len(articles) == 9
    assert [a.published for a in articles] == sorted((a.published for a in articles),
                                                     reverse=True)
    assert {a.path.suffix for a in articles} == {".md", ".txt"}
    assert len({a.slug for a in articles}) == 9
    for article in articles:
        assert article.title and article.body_html and article.summary, article.path
        assert article.url == f"https://journal.example.org/journal/{article.slug}/"
        assert article.published.tzinfo is not None
        assert article.sources, article.path
        assert all(s.url.startswith("https://") for s in article.sources), article.path


def test_collect_is_stable(sample_site: Path) -> None:
    config = load_config(sample_site)
    assert collect_articles(config, NOW) == collect_articles(config, NOW)


def test_an_older_entry_keeps_its_slug_when_a_newer_file_sorts_first(site: Path,
                                                                     config: Config) -> None:
    write_entry(site, "z-original.md", markdown_entry(title="Original", slug="shared",
                                                      date="2026-01-01"))
    write_entry(site, "a-newcomer.md", markdown_entry(title="Newcomer", slug="shared",
                                                      date="2026-06-01"))
    articles, problems = collect_articles(config, NOW)
    assert [a.title for a in articles] == ["Original"]
    assert [p.path for p in problems] == [Path("articles/a-newcomer.md")]


def test_a_reader_crash_is_reported_and_the_rest_collected(site: Path, config: Config,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    def broken_reader(*_: object) -> None:
        raise RuntimeError("reader bug")

    monkeypatch.setitem(READERS, ".markdown", broken_reader)
    write_entry(site, "odd.markdown", markdown_entry(title="Odd"))
    write_entry(site, "fine.md", markdown_entry(title="Fine"))
    articles, problems = collect_articles(config, NOW)
    assert [a.title for a in articles] == ["Fine"]
    assert [(p.path, p.field) for p in problems] == [(Path("articles/odd.markdown"), "file")]
    assert "reader bug" in problems[0].problem


def read_note(path: Path, text: str, config: Config) -> tuple[Article | None, list[Problem]]:
    """A reader for a format of our own: the first line is the title, the rest the body."""
    title, _, body = text.partition("\n")
    return Article(path=path, slug=path.stem, title=title, body=Body(f"<p>{body.strip()}</p>"),
                   published=NOW - timedelta(days=1), url=config.url_for(path.stem)), []


def test_a_new_format_is_one_reader_and_one_registry_line(
        site: Path, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    write_entry(site, "hello.note", "Hello from a note\nIts body.\n")
    assert collect_articles(config, NOW)[0] == []  # not a format we read
    monkeypatch.setitem(READERS, ".note", LazyReader(__name__, "read_note"))
    (article,), problems = collect_articles(config, NOW)
    assert problems == [] and article.title == "Hello from a note"
    assert article.body_html == "<p>Its body.</p>" and article.takeaways == ("Its body.",)


def test_many_entries_read_on_two_cores_come_out_as_on_one(site: Path, config: Config,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """A large first run reads part of the entries in a fork: same articles, same problems,
    same cache rows, whichever part a broken or draft entry falls in."""
    import os

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: entries are always read in one process here")
    for n in range(40):
        entry = markdown_entry(title=f"Entry {n}", date=f"2026-0{1 + n % 9}-{10 + n % 18}")
        write_entry(site, f"e{n:02}.md", entry)
    for name in ("e05.md", "e33.md"):  # one in each part
        write_entry(site, name, "---\ntitle: [unclosed\n---\n")
    write_entry(site, "e36.md", markdown_entry(draft="true"))
    (site / "articles" / "e38.md").write_bytes(b"\xff\xfe broken")

    class Store:
        def __init__(self) -> None:
            self.rows: dict[str, object] = {}

        def cached_entries(self) -> dict[str, object]:
            return {}

        def store_entries(self, rows: dict[str, object]) -> None:
            self.rows = rows

    forks = []
    real_fork = os.fork

    def counted_fork() -> int:
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    one, two = Store(), Store()
    monkeypatch.setattr(collect, "PARALLEL_FROM", 10**6)
    alone = collect_articles(config, NOW, one)  # type: ignore[arg-type]
    monkeypatch.setattr(collect, "PARALLEL_FROM", 10)
    monkeypatch.setattr(os, "fork", counted_fork)
    shared = collect_articles(config, NOW, two)  # type: ignore[arg-type]
    assert len(forks) == 1
    assert shared == alone and len(alone[0]) == 36 and len(errors(alone[1])) == 3
    assert [a.body_html for a in shared[0]] == [a.body_html for a in alone[0]]
    assert len(two.rows) == 40 and _rows(two.rows) == _rows(one.rows)


def _forked_site(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: entries are always read in one process here")
    for n in range(40):
        body = f"Entry {n} opens here.\n\n    indented code {n}\n\n- a list\n- of {n}"
        entry = markdown_entry(title=f"Entry {n}", date=f"2026-0{1 + n % 9}-{10 + n % 18}",
                               body=body)
        write_entry(site, f"e{n:02}.md", entry)
    monkeypatch.setattr(collect, "PARALLEL_FROM", 10)
    # One entry a chunk, and this process slowed: both take some (the fork the most).
    monkeypatch.setattr(fork, "MIN_CHUNK", 1)
    real_read_one = collect._read_one

    def read_one(*args: object, row_only: bool = False) -> object:
        # The fork slowed too: on a quiet machine it could take all 40 before this process
        # had read its first.
        time.sleep(0.001 if row_only else 0.002)
        return real_read_one(*args, row_only=row_only)  # type: ignore[arg-type]

    monkeypatch.setattr(collect, "_read_one", read_one)


def test_the_bodies_the_feeds_show_are_rendered_on_both_cores_as_on_one(
        site: Path, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a large read, the fork renders every other shown body (those it read, recalled
    from its rows, and those this process read): the same HTML as each Body renders."""
    _forked_site(site, monkeypatch)
    answered: list[str | None] = []
    real_answers = collect.ReadingFork.answers

    def answers(self: collect.ReadingFork) -> list[str | None]:
        answered.extend(real_answers(self))
        return answered

    monkeypatch.setattr(collect.ReadingFork, "answers", answers)
    shared, _ = collect_articles(config, NOW)
    assert all(a.body.rendered for a in shared[:config.feed_max_items])
    assert len(answered) >= 15 and None not in answered
    kinds = {type(a).__name__ for a in shared}
    assert kinds == {"CountedArticle", "RecalledArticle"}  # both ways of asking were used
    monkeypatch.setattr(collect, "PARALLEL_FROM", 10**6)
    alone, _ = collect_articles(config, NOW)
    assert [a.body_html for a in shared] == [a.body_html for a in alone]


def test_a_body_changed_before_the_fork_renders_it_is_not_taken_from_the_fork(
        site: Path, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry read by this process is rendered from the text it read: if its file
    changed since, the fork's rendering of the new bytes is not used."""
    _forked_site(site, monkeypatch)
    real_ask = collect.ReadingFork.ask

    def ask(self: collect.ReadingFork, asks: list[tuple[str, ...]]) -> None:
        for ask in asks:
            if ask[0] == "entry":
                path = site / ask[1]
                path.write_text(path.read_text().replace("opens here", "was CHANGED"))
        real_ask(self, asks)

    monkeypatch.setattr(collect.ReadingFork, "ask", ask)
    shared, _ = collect_articles(config, NOW)
    fresh = [a for a in shared if not isinstance(a, RecalledArticle)]
    assert fresh and not any("CHANGED" in a.body_html for a in fresh)


def test_a_fork_that_dies_leaves_its_bodies_to_this_process(
        site: Path, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    _forked_site(site, monkeypatch)
    real_ask = collect.ReadingFork.ask

    def ask(self: collect.ReadingFork, asks: list[tuple[str, ...]]) -> None:
        os.kill(self.pid, signal.SIGKILL)
        real_ask(self, asks)

    monkeypatch.setattr(collect.ReadingFork, "ask", ask)
    shared, problems = collect_articles(config, NOW)
    monkeypatch.setattr(collect, "PARALLEL_FROM", 10**6)
    alone, _ = collect_articles(config, NOW)
    assert problems == [] and len(shared) == 40
    assert [a.body_html for a in shared] == [a.body_html for a in alone]


def test_a_fork_that_dies_while_reading_leaves_its_entries_to_this_process(
        site: Path, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunks the fork took are read here when its rows never come."""
    import os

    _forked_site(site, monkeypatch)
    slowed = collect._read_one
    calls = []

    def dying(*args: object, row_only: bool = False) -> object:
        if row_only:
            calls.append(1)
            if len(calls) == 3:
                os._exit(1)  # in the fork: killed with chunks taken and unread
        return slowed(*args, row_only=row_only)  # type: ignore[arg-type]

    monkeypatch.setattr(collect, "_read_one", dying)
    shared, problems = collect_articles(config, NOW)
    monkeypatch.setattr(collect, "PARALLEL_FROM", 10**6)
    alone, _ = collect_articles(config, NOW)
    assert problems == [] and len(shared) == 40 and shared == alone
    assert [a.body_html for a in shared] == [a.body_html for a in alone]


def _rows(rows: dict[str, object]) -> dict[str, tuple[object, ...]]:
    import marshal

    return {key: (row.size, row.mtime_ns, row.checksum, marshal.loads(row.payload))  # type: ignore[attr-defined]
            for key, row in rows.items()}


def test_a_threaded_process_reads_many_entries_without_forking(site: Path, config: Config,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    """`serve` collects entries from a thread: a fork there could inherit a lock held by
    another thread forever."""
    import os
    import threading

    for n in range(20):
        write_entry(site, f"e{n:02}.md", markdown_entry(title=f"Entry {n}"))

    def no_fork() -> int:
        raise AssertionError("forked from a threaded process")

    monkeypatch.setattr(collect, "PARALLEL_FROM", 10)
    monkeypatch.setattr(os, "fork", no_fork)
    release = threading.Event()
    other = threading.Thread(target=release.wait, daemon=True)
    other.start()
    try:
        articles, problems = collect_articles(config, NOW)
    finally:
        release.set()
        other.join()
    assert len(articles) == 20 and problems == []


def test_an_entry_recalled_from_the_cache_is_the_entry_read_from_its_file(
        site: Path, config: Config) -> None:
    """Recalled entries decode most fields only when used; what they hold is the same."""
    write_entry(site, "full.md", markdown_entry(
        title="Every field", date="2026-03-14T09:30:00+01:00", updated="2026-03-20",
        category="Heart Health", summary="A standfirst.", author="Dr Ada", tags="[salt, bp]",
        takeaways='["Eat less salt", "Walk more"]',
        sources='\n  - {title: "A trial", url: "https://example.org/trial"}',
        body="Read [the guide](../guide/) first."))
    write_entry(site, "bare.md", markdown_entry(title="Bare", date="2026-03-15"))
    write_entry(site, "same.md", markdown_entry(title="Same slug", slug="bare"))

    class Store:
        def __init__(self) -> None:
            self.rows: dict[str, object] = {}

        def cached_entries(self) -> dict[str, object]:
            return self.rows

        def store_entries(self, rows: dict[str, object]) -> None:
            self.rows.update(rows)

    def refuse(*_: object) -> None:
        raise AssertionError("an unchanged entry was read again")

    store = Store()
    read = collect_articles(config, NOW, store)  # type: ignore[arg-type]
    with pytest.MonkeyPatch.context() as patch:  # recalled, not read: until a body is shown
        patch.setitem(READERS, ".md", refuse)
        recalled = collect_articles(config, NOW, store)  # type: ignore[arg-type]
        assert [a.slug for a in recalled[0]] == ["full", "bare"]
    assert len(store.rows) == 3 and len(read[0]) == 2
    assert recalled == read and read == recalled and recalled[1] == read[1]
    assert [(str(p.path), p.problem) for p in recalled[1]] == [
        ("articles/bare.md", "'bare' is already used by articles/same.md")]  # the older one
    for old, new in zip(read[0], recalled[0], strict=True):
        # Every field, each read through its descriptor (some are decoded or counted on use)
        every = [f.name for f in dataclasses.fields(Article)]
        assert {name: getattr(new, name) for name in every} == {
            name: getattr(old, name) for name in every}
        assert new.takeaways == old.takeaways and new.date_label == old.date_label
        assert new.body_html == old.body_html and hash(new) == hash(old)
    full = recalled[0][0]
    assert full.title == "Every field" and full.sources[0].url == "https://example.org/trial"
    assert full.published.isoformat() == "2026-03-14T08:30:00+00:00" and full.updated
    assert full.tags == ("salt", "bp") and "https://journal.example.org/journal/guide/" in (
        full.body_html)
