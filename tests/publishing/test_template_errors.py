"""A typo in a site's override template is reported with the template's file and line, before
anything is written to the outbox; once fixed, the same entries go out."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import PROBLEM_LINE, REPO, markdown_entry, messages, write_entry
from pipeline.cli.main import cli

HTML = "digest.mjml.j2"
TEXT = "digest.txt.j2"
PARTIAL = "\n\n<mj-title>{{ journl }}</mj-title>\n"  # templates/partials/head.j2, typo on line 3

# name → (template, text replaced, replacement, text on the line to report, words of the problem)
TYPOS: dict[str, tuple[str, str, str, str, str]] = {
    "misspelt variable": (HTML, "{{ article.title }}", "{{ article.titel }}", "article.titel",
                          "has no attribute 'titel'"),
    "misspelt end tag": (HTML, "{%- endfor %}\n    <mj-section css-class=\"frame\"",
                         "{%- endfo %}\n    <mj-section css-class=\"frame\"", "endfo %}",
                         "Encountered unknown tag 'endfo'"),
    "unknown filter": (TEXT, "{{ journal.title | upper | wrap }}", "{{ journal.title | wrapp }}",
                       "| wrapp }}", "No filter named 'wrapp'"),
    "missing include": (HTML, "<mj-title>", "{% include 'partials/nope.j2' %}<mj-title>",
                        "partials/nope.j2", "includes 'partials/nope.j2', which does not exist"),
    "division by zero": (TEXT, "{{ issue_date }}", "{{ 1 / 0 }}", "1 / 0",
                         "ZeroDivisionError: division by zero"),
    "bare < in MJML": (HTML, '<span aria-hidden="true">→</span>',
                       '<span aria-hidden="true">→ < more</span>', "→ < more",
                       "MJML did not compile"),
    "unclosed tag in MJML": (HTML, '<mj-text padding="0 24px">',
                             '<mj-text padding="0 24px"><p>', "24px\"><p>",
                             "<p> is not closed"),
    "unquoted attribute in MJML": (HTML, '<mj-text padding="0 24px">', "<mj-text padding=0>",
                                   "padding=0>", "MJML did not compile"),
}


def run(site: Path, command: str = "run") -> tuple[int, str]:
    result = CliRunner().invoke(cli, [command, "--site", str(site)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stderr


def override(site: Path, name: str, old: str, new: str) -> str:
    text = (REPO / "templates" / name).read_text(encoding="utf-8")
    assert old in text, old
    changed = text.replace(old, new, 1)
    path = site / "templates" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(changed, encoding="utf-8")
    return changed


@pytest.mark.parametrize("typo", sorted(TYPOS))
def test_a_template_typo_names_file_and_line_before_the_outbox_is_touched(site: Path,
                                                                          typo: str) -> None:
    name, old, new, marker, words = TYPOS[typo]
    changed = override(site, name, old, new)
    line = next(n for n, text in enumerate(changed.splitlines(), 1) if marker in text)
    write_entry(site, "entry.md", markdown_entry(title="Held back by a typo"))
    code, err = run(site)
    assert code == 78
    problem = err.removeprefix("error: ").rstrip("\n")
    assert problem.startswith(f"templates/{name}:{line}: template: "), problem
    assert words in problem
    assert PROBLEM_LINE.fullmatch(problem)
    assert not (site / "outbox").exists()

    assert run(site, "check") == (1, f"{problem}\n1 entry ready, 1 problem.\n")
    (site / "templates" / name).unlink()  # fixed: the same entry goes out
    assert run(site) == (0, "")
    assert {str(m["Subject"]) for m in messages(site)} == {
        "Test Clinic Journal: Held back by a typo"}


def test_a_typo_in_an_included_partial_names_the_partial(site: Path) -> None:
    override(site, HTML, "<mj-title>", "{% include 'partials/head.j2' %}<mj-title>")
    (site / "templates" / "partials" / "head.j2").parent.mkdir(exist_ok=True)
    (site / "templates" / "partials" / "head.j2").write_text(PARTIAL, encoding="utf-8")
    write_entry(site, "entry.md", markdown_entry())
    code, err = run(site)
    assert code == 78
    assert err.startswith("error: templates/partials/head.j2:3: template: 'journl' is undefined")
    assert not (site / "outbox").exists()


def test_a_template_that_is_not_utf8_is_named(site: Path) -> None:
    text = (REPO / "templates" / HTML).read_text(encoding="utf-8").replace("Read the", "Café:")
    (site / "templates").mkdir()
    (site / "templates" / HTML).write_bytes(text.encode("utf-8").replace("é".encode(), b"\xe9"))
    write_entry(site, "entry.md", markdown_entry())
    code, err = run(site)
    assert code == 78
    assert err.startswith(f"error: templates/{HTML}:1: template: is not UTF-8 — save it as")
    assert not (site / "outbox").exists()
