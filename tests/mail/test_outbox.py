"""Per-subscriber messages in the Maildir outbox, parsed back with the email package."""

from __future__ import annotations

import email
import email.policy
import html as html_lib
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path

import lxml.html
import pytest

import pipeline.core.atomic
import pipeline.mail.outbox
from conftest import NOW, markdown_entry, write_entry
from pipeline.core import dot_mark
from pipeline.core.config import Config, load_config
from pipeline.core.models import Digest, Subscriber
from pipeline.entries.collect import collect_articles
from pipeline.entries.summarise import summarise
from pipeline.mail.compose import Composer
from pipeline.mail.outbox import message_name, write_outbox
from pipeline.mail.tokens import subscriber_token
from pipeline.publishing.digest import PLACEHOLDERS, render_digest, subject_for
from pipeline.publishing.seven_bit import no_leading_dots
from pipeline.publishing.templates import WIDTH
from pipeline.state.ledger import Ledger, open_ledger
from pipeline.state.secret import load_secret
from pipeline.state.subscribers import SubscriberBook
from pipeline.subscribers.csv_file import load_subscribers, read_rows


def build_message(digest: Digest, subscriber: Subscriber, config: Config, secret: bytes
                  ) -> bytes:
    """One subscriber's copy, as write_outbox makes it."""
    return Composer(digest, config, secret).compose(subscriber)


URL_LINE = re.compile(r"^\s*(https?://|mailto:)\S*$")
@dataclass
class Issue:
    config: Config
    digest: Digest
    subscribers: list[Subscriber]
    secret: bytes
    ledger: Ledger


def freeze(site: Path, ledger: Ledger) -> Issue:
    """The site's published entries frozen as a digest in a real ledger, nothing written yet."""
    config = load_config(site)
    found, problems = collect_articles(config, NOW)
    assert problems == [] and found
    articles = [summarise(a) for a in found]
    html, text = render_digest(articles, NOW, config)
    book = SubscriberBook(ledger)  # the list lives in the ledger: ids for the tokens
    problems: list = []
    book.import_rows(read_rows(config.subscribers_file, problems), NOW)
    subscribers = list(book.active())
    assert problems == [] and len(subscribers) == 2
    digest = ledger.create_digest(NOW, subject_for(articles, NOW, config), html, text,
                                  [a.slug for a in articles])
    return Issue(config, digest, subscribers, load_secret(config.state_dir), ledger)


@pytest.fixture
def issue(sample_site: Path) -> Iterator[Issue]:
    """The sample journal as digest 1, for the fixture's two active subscribers."""
    with open_ledger(sample_site / ".newsletter") as ledger:
        yield freeze(sample_site, ledger)


@contextmanager
def custom_issue(site: Path, entry_title: str, **config_lines: str) -> Iterator[Issue]:
    """One entry titled `entry_title`; config lines replaced by key, or added under [email]."""
    write_entry(site, "one.md", markdown_entry(title=entry_title))
    path = site / "newsletter.toml"
    text = path.read_text(encoding="utf-8")
    for key, line in config_lines.items():
        text = re.sub(rf"(?m)^{key} = .*$", line, text) if re.search(
            rf"(?m)^{key} = ", text) else text.replace("[email]\n", f"[email]\n{line}\n")
    path.write_text(text, encoding="utf-8")
    with open_ledger(site / ".newsletter") as ledger:
        yield freeze(site, ledger)


def write(issue: Issue, subscribers: list[Subscriber] | None = None) -> int:
    return write_outbox(issue.digest, issue.subscribers if subscribers is None else subscribers,
                        issue.config, issue.ledger, issue.secret, NOW)


def new_dir(issue: Issue) -> Path:
    return issue.config.outbox_dir / "new"


def messages(issue: Issue) -> dict[str, tuple[bytes, EmailMessage]]:
    """Every delivered message by its To address."""
    found = {}
    for path in sorted(new_dir(issue).iterdir()):
        raw = path.read_bytes()
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        found[msg["To"].addresses[0].addr_spec] = (raw, msg)
    return found


def token_of(issue: Issue, address: str) -> str:
    (subscriber,) = [s for s in issue.subscribers if s.email == address]
    return subscriber_token(issue.secret, subscriber.id, address)


def unsubscribe_url(issue: Issue, address: str) -> str:
    token = token_of(issue, address)
    return f"https://journal.example.org/unsubscribe?token={token}"


def body(msg: EmailMessage, subtype: str) -> str:
    part = msg.get_body((subtype,))
    assert part is not None
    return part.get_content()


def test_a_message_is_written_for_every_active_subscriber(issue: Issue) -> None:
    assert write(issue) == 2
    assert set(messages(issue)) == {"ada@example.org", "grace@example.org"}
    assert issue.ledger.message_count(issue.digest.id) == 2
    assert issue.ledger.open_digest() is None  # complete once everyone has a copy


def test_messages_parse_without_defects_as_utf8_multipart_alternative(issue: Issue) -> None:
    write(issue)
    for raw, msg in messages(issue).values():
        assert msg.defects == []
        assert msg.get_content_type() == "multipart/alternative"
        parts = list(msg.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        for part in parts:
            assert part.defects == []
            assert part.get_content_charset() == "utf-8"
            assert part["Content-Transfer-Encoding"] in ("quoted-printable", "base64", "7bit")
        raw.decode("ascii")  # 7-bit clean on the wire


def test_headers_are_complete(issue: Issue) -> None:
    write(issue)
    for _, msg in messages(issue).values():
        assert str(msg["From"]) == "Test Clinic Journal <journal@example.org>"
        assert msg["To"].addresses[0].display_name in ("Ada Lovelace", "Grace Hopper")
        assert msg["Subject"] == issue.digest.subject
        assert msg["Subject"] == ("Test Clinic Journal: Hearing Loss and Dementia: "
                                  "Can Hearing Aids Protect Memory?")
        assert parsedate_to_datetime(msg["Date"]) == issue.digest.created == NOW
        assert msg["List-Id"] == "Test Clinic Journal <test-clinic-journal.example.org>"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        for name in ("From", "To", "Subject", "Date", "Message-ID", "List-Id",
                     "List-Unsubscribe", "List-Unsubscribe-Post"):
            assert len(msg.get_all(name)) == 1, name


def test_message_ids_are_unique_and_on_the_from_domain(issue: Issue) -> None:
    write(issue)
    ids = [msg["Message-ID"] for _, msg in messages(issue).values()]
    assert len(set(ids)) == len(ids) == 2
    for message_id in ids:
        assert re.fullmatch(r"<[^<>@\s]+@example\.org>", message_id), message_id


def test_list_unsubscribe_has_the_subscribers_https_url_and_a_mailto(issue: Issue) -> None:
    write(issue)
    for address, (_, msg) in messages(issue).items():
        targets = re.findall(r"<([^<>]+)>", " ".join(str(msg["List-Unsubscribe"]).split()))
        https = [t for t in targets if t.startswith("https://")]
        mailto = [t for t in targets if t.startswith("mailto:")]
        assert https == [unsubscribe_url(issue, address)]
        assert len(mailto) == 1 and mailto[0].startswith("mailto:unsubscribe@example.org")


def test_each_message_carries_only_its_own_unsubscribe_link(issue: Issue) -> None:
    write(issue)
    found = messages(issue)
    for address, (_, msg) in found.items():
        own = unsubscribe_url(issue, address)
        (other,) = [a for a in found if a != address]
        html, text = body(msg, "html"), body(msg, "plain")
        assert f'href="{html_lib.escape(own)}"' in html
        assert own in text.splitlines() or own in text
        assert address in html and address in text
        other_token = token_of(issue, other)
        assert other_token not in html and other_token not in text
        assert other not in html and other not in text
        for placeholder in PLACEHOLDERS.values():
            assert placeholder not in html and placeholder not in text


def test_no_line_is_longer_than_998_bytes(issue: Issue) -> None:
    write(issue)
    for raw, _ in messages(issue).values():
        assert raw.endswith(b"\r\n")
        assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF throughout
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_a_digest_on_one_long_line_is_still_folded_under_998_bytes(issue: Issue) -> None:
    ada = issue.subscribers[0]
    one_line = replace(issue.digest, html=" ".join(issue.digest.html.split("\n")))
    assert len(one_line.html) > 998 * 10 and "\n" not in one_line.html
    raw = build_message(one_line, ada, issue.config, issue.secret)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.defects == []
    expected = (one_line.html
                .replace(PLACEHOLDERS["unsubscribe_url"],
                         html_lib.escape(unsubscribe_url(issue, ada.email)))
                .replace(PLACEHOLDERS["email"], ada.email))
    # Exactly the digest; a final line break may be added to end the part.
    assert body(msg, "html") in (expected, expected + "\r\n")


def test_html_and_text_round_trip_to_the_digest_with_placeholders_filled(issue: Issue) -> None:
    write(issue)
    for address, (_, msg) in messages(issue).items():
        url = unsubscribe_url(issue, address)
        expected_html = (issue.digest.html
                         .replace(PLACEHOLDERS["unsubscribe_url"], html_lib.escape(url))
                         .replace(PLACEHOLDERS["email"], html_lib.escape(address)))
        expected_text = (issue.digest.text
                         .replace(PLACEHOLDERS["unsubscribe_url"], url)
                         .replace(PLACEHOLDERS["email"], address))
        # Lines end in CRLF on the wire; the content is otherwise exactly the digest's.
        assert body(msg, "html").replace("\r\n", "\n") == expected_html
        assert body(msg, "plain").replace("\r\n", "\n") == expected_text


def test_filled_text_lines_still_fit_in_72_columns(issue: Issue) -> None:
    write(issue)
    for _, msg in messages(issue).values():
        text = body(msg, "plain").replace("\r\n", "\n")
        long = [line for line in text.splitlines()
                if len(line) > WIDTH and not URL_LINE.match(line)]
        assert long == []


def test_files_arrive_in_new_through_tmp(issue: Issue, monkeypatch: pytest.MonkeyPatch) -> None:
    moves: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def recording_replace(src, dst):  # the real rename, observed
        moves.append((Path(src), Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(pipeline.core.atomic.os, "replace", recording_replace)
    write(issue)
    outbox = issue.config.outbox_dir
    assert sorted(p.name for p in (outbox / "new").iterdir()) == sorted(
        message_name(issue.digest, s.email) for s in issue.subscribers)
    assert len(moves) == 2
    for src, dst in moves:
        assert src.parent == outbox / "tmp" and dst.parent == outbox / "new"
        assert src.name == dst.name
    assert list((outbox / "tmp").iterdir()) == []
    assert (outbox / "cur").is_dir()


@pytest.mark.parametrize("few", [0, 64], ids=["one sync a batch", "one fsync a file"])
def test_a_batch_is_recorded_only_after_a_sync_that_saw_its_files(
        issue: Issue, monkeypatch: pytest.MonkeyPatch, few: int) -> None:
    """The sync runs beside the writing of the next batch; the ledger must still never name a
    file that no finished sync had seen in new/ (a power cut would lose it). A batch of up to
    FEW files is synced file by file, a larger one by syncing everything."""
    synced: set[str] = set()
    recorded: list[list[str]] = []
    flushes: list[str] = []
    real_record = issue.ledger.record_messages

    def slow(real: Callable[..., None]) -> Callable[..., None]:
        def flush(folder: Path, *more: object) -> None:
            seen = set(os.listdir(folder))
            time.sleep(0.05)  # long enough for the next batch to be written meanwhile
            real(folder, *more)
            flushes.append(real.__name__)
            synced.update(seen)
        return flush

    def checked_record(digest_id: int, written: datetime, rows: list) -> None:
        assert {name for _, name in rows} <= synced
        recorded.append([name for _, name in rows])
        real_record(digest_id, written, rows)

    monkeypatch.setattr(pipeline.mail.outbox, "BATCH", 1)
    monkeypatch.setattr(pipeline.mail.outbox, "FEW", few)
    for name in ("flush_to_disk", "flush_files"):
        monkeypatch.setattr(pipeline.mail.outbox, name,
                            slow(getattr(pipeline.mail.outbox, name)))
    monkeypatch.setattr(issue.ledger, "record_messages", checked_record)
    assert write(issue) == 2
    assert len(recorded) == 2  # one batch each, both recorded
    assert flushes == (["flush_files"] * 2 if few else ["flush_to_disk"] * 2)
    assert issue.ledger.message_count(issue.digest.id) == 2
    assert issue.ledger.open_digest() is None


def test_a_few_files_are_made_durable_each_and_a_file_gone_means_syncing_everything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """flush_files: every named file and the folder itself reach the disk (their own fsync);
    if one has already moved on, the whole machine is synced as flush_to_disk does."""
    for name in ("a", "b"):
        (tmp_path / name).write_bytes(b"message")
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(pipeline.core.atomic.os, "fsync", lambda fd: synced.append(
        os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    monkeypatch.setattr(pipeline.core.atomic.os, "sync", lambda: synced.append("everything"))
    pipeline.core.atomic.flush_files(tmp_path, ["a", "b"])
    assert synced == [str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path)]
    synced.clear()
    pipeline.core.atomic.flush_files(tmp_path, ["a", "gone", "b"])
    assert synced == [str(tmp_path / "a"), "everything", str(tmp_path)]


def test_file_names_are_deterministic_per_digest_and_subscriber(issue: Issue) -> None:
    names = {message_name(issue.digest, s.email) for s in issue.subscribers}
    assert len(names) == 2
    assert message_name(issue.digest, "ADA@Example.org") == \
           message_name(issue.digest, "ada@example.org")
    write(issue)
    assert {p.name for p in new_dir(issue).iterdir()} == names
    assert set(issue.ledger.messages(issue.digest.id).values()) == names


def test_second_write_writes_nothing(issue: Issue) -> None:
    write(issue)
    before = {p.name: (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns)
              for p in new_dir(issue).iterdir()}
    assert write(issue) == 0
    assert write(issue, issue.subscribers + issue.subscribers) == 0
    after = {p.name: (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns)
             for p in new_dir(issue).iterdir()}
    assert after == before
    assert issue.ledger.message_count(issue.digest.id) == 2


class Killed(BaseException):
    """The process dying at that point."""


def write_killed_before_the_record(issue: Issue, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run killed after its files were made durable, before the ledger recorded them."""
    def killed(*_: object) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(issue.ledger, "record_messages", killed)
        with pytest.raises(Killed):
            write(issue)
    assert len(list(new_dir(issue).iterdir())) == 2
    assert issue.ledger.message_count(issue.digest.id) == 0


def test_a_file_in_new_without_a_ledger_row_is_recorded_not_rewritten(
        issue: Issue, monkeypatch: pytest.MonkeyPatch) -> None:
    write_killed_before_the_record(issue, monkeypatch)
    ada = new_dir(issue) / message_name(issue.digest, "ada@example.org")
    original = ada.read_bytes()
    inode = ada.stat().st_ino
    assert issue.ledger.open_digest() == issue.digest
    assert write(issue) == 0
    assert ada.read_bytes() == original and ada.stat().st_ino == inode
    assert len(list(new_dir(issue).iterdir())) == 2
    assert issue.ledger.message_count(issue.digest.id) == 2
    assert issue.ledger.open_digest() is None


def test_a_file_already_moved_to_sent_without_a_ledger_row_is_not_written_again(
        issue: Issue, monkeypatch: pytest.MonkeyPatch) -> None:
    write_killed_before_the_record(issue, monkeypatch)
    name = message_name(issue.digest, "ada@example.org")
    sent = issue.config.outbox_dir / "sent"
    sent.mkdir()
    (new_dir(issue) / name).rename(sent / name)  # a send took it after the killed run
    assert write(issue) == 0
    assert not (new_dir(issue) / name).exists() and (sent / name).exists()
    assert issue.ledger.message_count(issue.digest.id) == 2


def test_a_partial_outbox_is_finished_without_duplicates(issue: Issue) -> None:
    ada, grace = issue.subscribers
    assert write(issue, [ada]) == 1
    assert write(issue) == 1  # only Grace was missing
    assert len(list(new_dir(issue).iterdir())) == 2
    assert set(messages(issue)) == {ada.email, grace.email}


def test_a_message_survives_reopening_the_ledger(issue: Issue) -> None:
    write(issue)
    with open_ledger(issue.config.state_dir, read_only=True) as ledger:
        assert ledger.message_count(issue.digest.id) == 2
    with open_ledger(issue.config.state_dir) as ledger:
        assert write_outbox(issue.digest, issue.subscribers, issue.config, ledger,
                            issue.secret, NOW) == 0


@pytest.mark.parametrize("name", [
    "Mallory\r\nBcc: victim@example.com",
    "Mallory\nSubject: free money",
    "Mallory\rX-Injected: yes",
])
def test_a_name_with_cr_or_lf_cannot_inject_a_header(issue: Issue, name: str) -> None:
    subscriber = Subscriber(email="mallory@example.org", name=name)
    raw = build_message(issue.digest, subscriber, issue.config, issue.secret)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.defects == []
    for header in ("Bcc", "X-Injected"):
        assert msg[header] is None
    assert len(msg.get_all("Subject")) == 1 and msg["Subject"] == issue.digest.subject
    assert [a for _, a in getaddresses([str(msg["To"])])] == ["mallory@example.org"]
    assert "\r" not in msg["To"].addresses[0].display_name
    assert "\n" not in msg["To"].addresses[0].display_name


def test_a_loaded_name_with_cr_lf_cannot_inject_a_header(issue: Issue) -> None:
    (issue.config.subscribers_file).write_text(
        'email,name,categories,status\n'
        'mallory@example.org,"Mallory\r\nBcc: victim@example.com",,active\n', encoding="utf-8")
    subscribers, problems = load_subscribers(issue.config.subscribers_file)
    assert problems == []
    assert write(issue, subscribers) == 1
    (_, msg), = messages(issue).values()
    assert msg["Bcc"] is None
    assert msg["To"].addresses[0].addr_spec == "mallory@example.org"


def test_an_unsubscribe_url_with_an_ampersand_is_escaped_only_in_html(site: Path) -> None:
    line = 'unsubscribe_url = "{site_url}unsubscribe?list=weekly&token={token}"'
    with custom_issue(site, "Only entry", unsubscribe_url=line) as issue:
        write(issue)
        for address, (_, msg) in messages(issue).items():
            token = token_of(issue, address)
            url = f"https://journal.example.org/unsubscribe?list=weekly&token={token}"
            html, text = body(msg, "html"), body(msg, "plain")
            assert f'href="{url.replace("&", "&amp;")}"' in html
            assert url in text.splitlines()
            hrefs = [a.get("href") for a in lxml.html.document_fromstring(html).iter("a")]
            assert url in hrefs
            assert f"<{url}>" in str(msg["List-Unsubscribe"])


@pytest.mark.parametrize("name", [
    'Ada "The Countess" Lovelace, Jr.',
    "O'Brien \\ Backslash (comment) <not-an-address@evil.example>",
    "Zoë Ångström",
    "山田 太郎",
])
def test_display_names_round_trip(issue: Issue, name: str) -> None:
    raw = build_message(issue.digest, Subscriber("ada@example.org", name), issue.config,
                        issue.secret)
    raw.decode("ascii")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.defects == []
    (to,) = msg["To"].addresses
    assert (to.display_name, to.addr_spec) == (name, "ada@example.org")


@pytest.mark.parametrize("title", ["Café", "Heat — a short guide"])
def test_a_short_non_ascii_subject_is_encoded(site: Path, title: str) -> None:
    with custom_issue(site, title) as issue:
        assert issue.digest.subject == f"Test Clinic Journal: {title}"
        assert write(issue) == 2
        for raw, msg in messages(issue).values():
            raw.decode("ascii")
            assert msg.defects == []
            assert msg["Subject"] == issue.digest.subject


def test_a_long_non_ascii_subject_is_encoded(site: Path) -> None:
    title = "Café — naïve “quotes” 🫀 and a title long enough to need folding"
    with custom_issue(site, title) as issue:
        write(issue)
        for raw, msg in messages(issue).values():
            raw.decode("ascii")
            assert msg["Subject"] == f"Test Clinic Journal: {title}"
            assert title in body(msg, "plain")


def test_a_non_ascii_from_name_is_encoded(site: Path) -> None:
    with custom_issue(site, "Only entry",
                      **{"from": 'from = "Clinique Santé <journal@example.org>"'}) as issue:
        write(issue)
        for raw, msg in messages(issue).values():
            raw.decode("ascii")
            assert msg.defects == []
            assert msg["From"].addresses[0].display_name == "Clinique Santé"
            assert msg["From"].addresses[0].addr_spec == "journal@example.org"


def test_a_non_ascii_journal_title_is_encoded_in_list_id(site: Path) -> None:
    with custom_issue(site, "Only entry", title='title = "Clinique Santé"') as issue:
        write(issue)
        for raw, msg in messages(issue).values():
            raw.decode("ascii")
            assert msg["List-Id"] == "Clinique Santé <test-clinic-journal.example.org>"


def test_a_long_non_ascii_name_is_folded_into_short_encoded_words(issue: Issue) -> None:
    name = "Ünïcödé Ñåmé " * 7
    raw = build_message(issue.digest, Subscriber("ada@example.org", name), issue.config,
                        issue.secret)
    header = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert all(len(word) <= 75 for word in re.findall(r"=\?[^?]+\?[bBqQ]\?[^?]*\?=", header))
    to_lines = re.search(r"(?m)^To:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*", header)
    assert to_lines and all(len(line) <= 78 for line in to_lines.group(0).split("\r\n"))
    # Decoded as RFC 2047 says mail clients must: white space between adjacent encoded words
    # is dropped. (policy.default's address parser inserts a space there, a CPython quirk, so
    # it cannot be the oracle for a name split across words.)
    to_value = to_lines.group(0).removeprefix("To:").rsplit("<", 1)[0]
    assert str(make_header(decode_header(to_value))) == " ".join(name.split())
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["To"].addresses[0].addr_spec == "ada@example.org" and not msg.defects


def test_building_a_message_twice_gives_the_same_bytes(issue: Issue) -> None:
    ada = issue.subscribers[0]
    first = build_message(issue.digest, ada, issue.config, issue.secret)
    assert build_message(issue.digest, ada, issue.config, issue.secret) == first


def test_only_the_outbox_type_spells_its_folders() -> None:
    """One owner of the outbox's layout: no other module joins a folder name onto a path."""
    package = Path(__file__).resolve().parents[2] / "pipeline"
    folder = re.compile(r'/\s*(?:"|\')(?:tmp|new|cur|sent|failed|withdrawn)(?:"|\')|'
                        r'"\.reason"')
    spelt = [str(p.relative_to(package)) for p in package.rglob("*.py")
             if folder.search(p.read_text(encoding="utf-8"))]
    # returns/sources.py reads the Maildir that returning mail is delivered to, not ours
    assert spelt == ["mail/outbox_folders.py", "subscribers/returns/sources.py"]


def test_the_html_part_goes_as_7bit_unless_a_filled_in_value_would_make_a_line_too_long(
        issue: Issue) -> None:
    from pipeline.mail.compose import _crlf, _fill_7bit, _segments

    write(issue)
    for _, msg in messages(issue).values():
        assert msg.get_body(("html",))["Content-Transfer-Encoding"] == "7bit"
    line = '<p class="x">' + "y" * 700 + '<a href="@@UNSUBSCRIBE_URL@@">@@EMAIL@@</a></p>'
    pieces = _segments(f"<html>\n{line}\n</html>", encode=_crlf, join=b"")
    url = "https://journal.example.org/unsubscribe?token=" + "t" * 40
    fitting = _fill_7bit(pieces, {"unsubscribe_url": url, "email": "ada@example.org"})
    assert fitting is not None and max(map(len, fitting[0].split(b"\r\n"))) <= 998
    long_address = "a" * 64 + "@" + "b" * 180 + ".example.org"
    assert _fill_7bit(pieces, {"unsubscribe_url": url, "email": long_address}) is None


def leading_dots(raw: bytes) -> list[bytes]:
    return [line for line in raw.split(b"\r\n") if line.startswith(b".")]


def test_messages_with_no_line_starting_with_a_dot_are_marked_so(issue: Issue) -> None:
    # MJML's own <style> for Outlook has a line ".mj-outlook-group-fix {…}": it gets a space,
    # so a digest's messages usually have no such line, and say so to `send`.
    assert "\n .mj-outlook-group-fix" in issue.digest.html
    write(issue)
    for path in new_dir(issue).iterdir():
        raw = path.read_bytes()
        assert leading_dots(raw) == []
        stat = path.stat()
        assert os.getxattr(path, dot_mark.ATTRIBUTE) == b"%d %d" % (stat.st_size,
                                                                   stat.st_mtime_ns)


@pytest.mark.parametrize("where", ["text", "html", "address"])
def test_a_message_with_a_line_starting_with_a_dot_is_not_marked(issue: Issue, where: str
                                                                 ) -> None:
    digest, ada = issue.digest, issue.subscribers[0]
    if where == "text":
        digest = replace(digest, text=digest.text + "\n.a line of its own\n")
    elif where == "html":  # in a part that goes as 7bit, where it stays as it is
        digest = replace(digest, html=digest.html.replace("</body>", "\n.x</body>"))
    else:  # a value filled in at the start of a quoted-printable line
        digest = replace(digest, text=digest.text + "\n" + PLACEHOLDERS["email"] + "\n")
        ada = replace(ada, email=".ada@example.org")
    raw, no_leading_dot = Composer(digest, issue.config, issue.secret).compose_marked(ada)
    assert leading_dots(raw) != [] and not no_leading_dot
    raw, no_leading_dot = Composer(issue.digest, issue.config, issue.secret).compose_marked(
        issue.subscribers[0])
    assert leading_dots(raw) == [] and no_leading_dot


def test_no_leading_dots_reads_the_same() -> None:
    page = ('<style type="text/css">\n.a { color: red; }\n</style>\n<pre>\n.hidden\n</pre>\n'
            '<p>one\n.two</p>')
    done = no_leading_dots(page)
    assert "\n." not in done
    assert done == page.replace("\n.a", "\n .a").replace("\n.", "\n&#46;")
    tree = lxml.html.fromstring(done)
    assert tree.xpath("string(//pre)") == "\n.hidden\n"  # the dot, also where spaces count
    assert tree.xpath("string(//p)") == "one\n.two"
