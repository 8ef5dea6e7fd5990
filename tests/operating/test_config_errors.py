"""A broken newsletter.toml is reported at start, every problem at once, each with its key,
line and what is expected; nothing is done. Unknown keys are warnings; the run goes on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import CONFIG, PROBLEM_LINE, markdown_entry, messages, write_entry
from pipeline.cli.main import cli

FROM = 'from = "Test Clinic Journal <journal@example.org>"'
URL = 'url = "https://journal.example.org/"'
MAILTO = 'unsubscribe_mailto = "unsubscribe@example.org"'

# name → (edit to the test config, the expected `newsletter.toml:LINE: KEY: PROBLEM — HINT` start)
BROKEN: dict[str, tuple[tuple[str, str], str]] = {
    "bad TOML": (('title = "Test Clinic Journal"', "title = Test Clinic Journal"),
                 "newsletter.toml:2: not valid TOML: Invalid value (at line 2, column 9) — "
                 "fix the syntax"),
    "missing site URL": ((URL + "\n", ""), "newsletter.toml:1: site.url: is required — add "
                         "`url = ...` under [site]"),
    "relative site URL": ((URL, 'url = "journal.example.org"'),
                          "newsletter.toml:3: site.url: 'journal.example.org' is not an absolute "
                          "URL — write it as https://your.domain/"),
    "From without @": ((FROM, 'from = "journal at example.org"'),
                       "newsletter.toml:13: email.from: 'journal at example.org' is not one valid "
                       "address (An email address must have an @-sign) — write it as \"Journal "
                       "Name <journal@your.domain>\""),
    "From with two addresses": ((FROM, 'from = "A <a@example.org>, B <b@example.org>"'),
                                "newsletter.toml:13: email.from: 'A <a@example.org>, B "
                                "<b@example.org>' is not one valid address (2 addresses)"),
    "From with a space": ((FROM, 'from = "A <a b@example.org>"'),
                          "newsletter.toml:13: email.from: 'A <a b@example.org>' is not one "
                          "valid address"),
    "From with CR/LF": ((FROM, 'from = "A <a@example.org>\\r\\nBcc: x@example.net"'),
                        "newsletter.toml:13: email.from: 'A <a@example.org>\\r\\nBcc: "
                        "x@example.net' is not one valid address (it spans lines)"),
    "empty From": ((FROM, 'from = ""'), "newsletter.toml:13: email.from: '' is not one valid "
                   "address"),
    "Reply-To with CR/LF": (("[email]", '[email]\nreply_to = "a@example.org\\r\\nBcc: x@y.org"'),
                            "newsletter.toml:13: email.reply_to: 'a@example.org\\r\\nBcc: "
                            "x@y.org' is not one valid address (it spans lines)"),
    "Reply-To not an address": (("[email]", '[email]\nreply_to = "the clinic"'),
                                "newsletter.toml:13: email.reply_to: 'the clinic' is not one "
                                "valid address"),
    "unsubscribe mailto with a header": (
        (MAILTO, 'unsubscribe_mailto = "u@example.org>\\r\\nBcc: x@example.net"'),
        "newsletter.toml:14: email.unsubscribe_mailto: 'u@example.org>\\r\\nBcc: "
        "x@example.net' is not one valid address (it spans lines) — write it as "
        '"unsubscribe@your.domain"'),
    "unsubscribe URL with a line break": (
        ("[email]", '[email]\nunsubscribe_url = "https://x.example/u?t={token}\\r\\nBcc: x"'),
        "newsletter.toml:13: email.unsubscribe_url: contains a space or line break — remove it"),
    "control character in the title": (
        ('title = "Test Clinic Journal"', 'title = "Test\\u0001 Clinic Journal"'),
        "newsletter.toml:2: site.title: contains a control character — remove it"),
    "number for text": (('title = "Test Clinic Journal"', "title = 42"),
                        "newsletter.toml:2: site.title: must be a string, not int — put the "
                        "value in quotes"),
    "unknown timezone": (('timezone = "Europe/London"', 'timezone = "Europe/Londn"'),
                         "newsletter.toml:6: site.timezone: unknown timezone 'Europe/Londn' — "
                         "use an IANA name"),
}


def run(site: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [*args, "--site", str(site)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout, result.stderr


def configure(site: Path, *edits: tuple[str, str]) -> None:
    text = CONFIG
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    (site / "newsletter.toml").write_text(text, encoding="utf-8")


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_config_error_names_key_line_and_fix_and_nothing_is_done(site: Path,
                                                                    case: str) -> None:
    edit, expected = BROKEN[case]
    configure(site, edit)
    write_entry(site, "entry.md", markdown_entry())
    code, out, err = run(site, "run")
    assert code == 78
    assert out == ""
    assert err.startswith(f"error: {site}/{expected}"), err
    problem = err.removeprefix("error: ").splitlines()[0]
    assert PROBLEM_LINE.fullmatch(problem.removeprefix(f"{site}/"))
    # At start, before any work: no lock or ledger, no feeds, no messages.
    assert sorted(p.name for p in site.iterdir()) == ["articles", "newsletter.toml",
                                                      "subscribers.csv"]
    assert run(site, "check")[0] == 78


def test_every_problem_is_reported_at_once(site: Path) -> None:
    configure(site, (URL + "\n", ""), (FROM, 'from = "nope"'),
              ("max_articles = 10", 'max_articles = "ten"'),
              ('timezone = "Europe/London"', 'timezone = "Mars/Olympus"'))
    code, _, err = run(site, "run")
    assert code == 78
    keys = re.findall(r"newsletter\.toml:\d+: ([\w.]+): ", err)
    assert sorted(keys) == ["digest.max_articles", "email.from", "site.timezone", "site.url"]


def test_unknown_keys_and_tables_are_warnings_naming_what_is_known(site: Path) -> None:
    configure(site, ("max_articles = 10", "max_articles = 10\nmax_article = 3"),
                    ("[email]", '[emial]\nfrom = "x"\n\n[email]'))
    write_entry(site, "entry.md", markdown_entry())
    code, _, err = run(site, "run")
    assert code == 0
    assert "newsletter.toml:11: warning: digest.max_article: unknown key — remove it or check " \
           "its spelling; known: max_articles, subject, cadence" in err
    assert "newsletter.toml:13: warning: emial: unknown table — remove it; known: site, feed, " \
           "digest, email" in err
    assert len(messages(site)) == 2


def test_a_from_name_with_accents_is_encoded_not_a_crash(site: Path) -> None:
    configure(site, (FROM, 'from = "Clínica Norte <journal@example.org>"'))
    write_entry(site, "entry.md", markdown_entry())
    assert run(site, "run")[0] == 0
    assert str(messages(site)[0]["From"]) == "Clínica Norte <journal@example.org>"


def test_a_byte_order_mark_is_fine_and_other_encodings_are_named(site: Path) -> None:
    (site / "newsletter.toml").write_bytes(b"\xef\xbb\xbf" + CONFIG.encode())
    write_entry(site, "entry.md", markdown_entry())
    assert run(site, "run")[0] == 0
    (site / "newsletter.toml").write_bytes(CONFIG.replace("Test", "Tést").encode("latin-1"))
    code, _, err = run(site, "run")
    assert code == 78
    assert "newsletter.toml:2: is not UTF-8 (byte 17) — save it as UTF-8" in err
