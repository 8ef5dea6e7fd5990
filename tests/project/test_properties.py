"""Arbitrary text in everything a writer or a subscriber export controls, through a whole
`newsletter run`: the run succeeds or reports the entry, every feed parses as XML and with
feedparser, every message parses with exactly our headers, and nothing becomes markup."""

from __future__ import annotations

import csv
import io
import tempfile
from datetime import date
from pathlib import Path

import yaml
from click.testing import CliRunner
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from conftest import (
    CONFIG,
    MESSAGE_HEADERS,
    PROBLEM_LINE,
    feed_html,
    html_of,
    markdown_entry,
    messages,
    parsed_feeds,
    to_display_name,
    unsafe_markup,
    write_entry,
)
from pipeline.cli.main import cli
from pipeline.entries.sanitise import header_text, one_line
from pipeline.subscribers.csv_file import load_subscribers

HOSTILE = st.sampled_from([
    "<script>alert(1)</script>", "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    '<a href="javascript:alert(1)">x</a>', '<a href="&#106;avascript:alert(1)">x</a>',
    "<img src=x onerror=alert(1)>", '<p onclick="x()">p</p>', "<svg onload=alert(1)>",
    "<iframe src=//x>", "<form action=//x><input></form>", "<style>*{}</style>",
    "[x](javascript:y)", "![i](relative.png)", "[r](../up/)", "\r\n", "\n", "\r",
    "\nBcc: victim@example.net", "=?utf-8?q?=0D=0ABcc:_x@y?=", "@@EMAIL@@",
    "@@UNSUBSCRIBE_URL@@", "\x00", "\x01", "\x0b", "\x1b", "\x7f", "\x85", "\u2028", "\ufeff",
    "\ufffe", "&#1;", "&#xfffe;", "]]>", "<![CDATA[", "&", "<", ">", '"', "'", "é", "—", "😀",
    "\n---\n", ": ", "- ", "{", "%", "{{ x }}", "{% if %}",
])
TEXT = st.lists(st.text(max_size=20) | HOSTILE, max_size=6).map("".join)
EMAILS = ("ada@example.org", "grace@example.org")
# Every example is a whole run with its SQLite fsyncs: on tmpfs they cost nothing, and the
# disk of this shared machine is noisy. The files are still real files.
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None


def hostile_entry(title: str, body: str, takeaways: list[str], category: str, raw: bool) -> str:
    fields = {"title": title, "date": date(2026, 2, 1), "category": category,
              "takeaways": takeaways}
    front = yaml.safe_dump(fields, allow_unicode=True, sort_keys=False)
    if raw:  # pasted straight in, as a hurried writer would: may break the YAML
        front = front.replace(yaml.safe_dump({"title": title}, allow_unicode=True),
                              f"title: {title}\n")
    return f"---\n{front}---\n\n{body}\n"


def subscriber_list(names: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["email", "name", "categories", "status"])
    for address, name in zip(EMAILS, names, strict=True):
        # No category choice: everyone gets every entry (choices are test_segments.py's).
        writer.writerow([address, name, "", "active"])
    return out.getvalue()


# No explain phase: it reruns a failure hundreds of times (minutes, at a whole run each).
@settings(max_examples=40, deadline=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
@given(title=TEXT, body=TEXT, takeaways=st.lists(TEXT, max_size=3), category=TEXT,
       names=st.lists(TEXT, min_size=2, max_size=2), raw=st.booleans())
def test_any_text_is_published_safely_or_reported(title: str, body: str, takeaways: list[str],
                                                  category: str, names: list[str],
                                                  raw: bool) -> None:
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        site = Path(tmp)
        (site / "newsletter.toml").write_text(CONFIG, encoding="utf-8")
        (site / "subscribers.csv").write_text(subscriber_list(names), encoding="utf-8")
        write_entry(site, "steady.md", markdown_entry(title="A steady entry", date="2026-01-01"))
        write_entry(site, "hostile.md", hostile_entry(title, body, takeaways, category, raw))
        result = CliRunner().invoke(cli, ["run", "--site", str(site)], catch_exceptions=False)

        # The run succeeds, or reports the hostile entry (and only it) and goes on. A name
        # with a control character is reported too (and imported without it).
        assert result.exit_code in (0, 1), result.output
        reported = result.stderr.splitlines()
        for line in reported:
            assert PROBLEM_LINE.fullmatch(line), line
            assert line.startswith("articles/hostile.md:") or (
                line.startswith("subscribers.csv:") and ": warning: name: " in line
                and line.endswith("contains a control character — removed; check that row "
                                  "in the file")), line
        rejected = any(": warning: " not in line for line in reported)
        assert result.exit_code == (1 if rejected else 0)

        feeds = parsed_feeds(site)
        for feed in feeds.values():
            assert len(feed.entries) == (1 if rejected else 2)
            assert feed.entries[-1].title == "A steady entry"
        for value in feed_html(site):
            assert "<script" not in value.lower()
            assert unsafe_markup(value) == []
        for name in ("feed.xml", "atom.xml", "feed.json"):
            assert b"<script" not in (site / "public" / name).read_bytes().lower()

        sent = messages(site)
        assert len(sent) == len(EMAILS)
        loaded = {s.email: s.name for s in load_subscribers(site / "subscribers.csv")[0]}
        for message in sent:
            assert list(message.keys()) == MESSAGE_HEADERS
            assert not message.defects
            assert all(not part.defects for part in message.walk())
            (to,) = message["To"].addresses
            assert to_display_name(message) == header_text(loaded[to.addr_spec])[:100].strip()
            subject = str(message["Subject"])
            assert "\r" not in subject and "\n" not in subject
            if not raw and not rejected:  # the title arrives as written, on one line
                # As written: what YAML gives back (PyYAML's dump and load turn a NEL into a
                # space), the text the pipeline was handed.
                written = yaml.safe_load(yaml.safe_dump({"t": title}, allow_unicode=True))["t"]
                assert subject == header_text(f"Test Clinic Journal: {one_line(written)}")
            html = html_of(message)
            assert "<script" not in html.lower()
            assert unsafe_markup(html, allowed=frozenset({"style", "meta"})) == []
            assert to.addr_spec not in html.split("This message was sent to")[0]
