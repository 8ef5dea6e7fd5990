"""Each digest's web copy under public/digests/ (the "View in browser" target) and the archive
page listing them, made by real runs."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import lxml.html
import pytest
from click.testing import CliRunner

from conftest import markdown_entry, write_entry, write_template
from pipeline.cli.main import cli
from pipeline.mail.tokens import unsubscribe_token
from pipeline.run import run as run_pipeline

SUBSCRIBED = ("ada@example.org", "grace@example.org", "left@example.org")


def run(site: Path) -> str:
    result = CliRunner().invoke(cli, ["run", "--site", str(site)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def messages(site: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default)
            for p in sorted((site / "outbox" / "new").glob("*.eml"))]


def page(path: Path) -> lxml.html.HtmlElement:
    return lxml.html.document_fromstring(path.read_bytes())


def web_copy_of(message: email.message.EmailMessage, site: Path) -> Path:
    """The public/ file the message's "View in browser" link points at."""
    html = message.get_body(("html",)).get_content()
    [href] = {a.get("href") for a in lxml.html.document_fromstring(html).iter("a")
              if a.text_content().strip() == "View in browser"}
    assert href.startswith("https://journal.example.org/")
    return site / "public" / href.removeprefix("https://journal.example.org/")


def test_every_message_links_to_a_web_copy_that_exists(sample_site: Path) -> None:
    run(sample_site)
    sent = messages(sample_site)
    copies = {web_copy_of(m, sample_site) for m in sent}
    assert len(copies) == 1
    [copy] = copies
    assert copy.is_file() and copy.parent == sample_site / "public" / "digests"
    text = sent[0].get_body(("plain",)).get_content()
    assert f"https://journal.example.org/digests/{copy.name}" in text.splitlines()


def test_the_web_copy_shows_the_same_articles_as_the_email(sample_site: Path) -> None:
    run(sample_site)
    message = messages(sample_site)[0]
    emailed = lxml.html.document_fromstring(message.get_body(("html",)).get_content())
    copy = page(web_copy_of(message, sample_site))

    def cards(doc: lxml.html.HtmlElement) -> list[tuple[str | None, str]]:
        return [(a.get("href"), " ".join(a.text_content().split())) for a in doc.iter("a")
                if a.getparent() is not None and a.getparent().tag != "td"
                and "/journal/" in (a.get("href") or "")]

    assert cards(copy) == cards(emailed) and len(cards(copy)) == 9
    assert [li.text_content() for li in copy.iter("li")] == \
           [li.text_content() for li in emailed.iter("li")]
    assert copy.find(".//title").text == emailed.find(".//title").text


def test_the_web_copy_has_no_subscriber_address_token_or_placeholder(sample_site: Path) -> None:
    run(sample_site)
    copy = web_copy_of(messages(sample_site)[0], sample_site).read_text(encoding="utf-8")
    for address in SUBSCRIBED:
        assert address not in copy
        assert unsubscribe_token(b"test-secret-for-this-site-0123456789", address) not in copy
    assert "@@" not in copy and "token=" not in copy and "unsubscribe" not in copy.lower()
    assert "View in browser" not in copy  # it is the browser copy
    assert "Past digests" in copy


def test_a_site_template_printing_subscriber_fields_still_leaks_nothing(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry(title="Only entry"))
    write_template(site, "digest.mjml.j2",
        "<mjml><mj-body><mj-section><mj-column>"
        "<mj-text>{{ articles[0].title }} for {{ email }}</mj-text>"
        '<mj-text><a href="{{ unsubscribe_url }}">Leave</a> '
        '<a href="{{ web_url }}">View in browser</a></mj-text>'
        "</mj-column></mj-section></mj-body></mjml>\n", encoding="utf-8")
    run(site)
    sent = messages(site)
    assert "for ada@example.org" in sent[0].get_body(("html",)).get_content() \
        or "for grace@example.org" in sent[0].get_body(("html",)).get_content()
    copy = web_copy_of(sent[0], site).read_text(encoding="utf-8")
    assert "Only entry for you" in copy
    assert not any(address in copy for address in SUBSCRIBED)
    assert "token=" not in copy and "@@" not in copy


def test_web_copy_and_archive_let_browsers_find_the_feeds(sample_site: Path) -> None:
    run(sample_site)
    copy = web_copy_of(messages(sample_site)[0], sample_site)
    archive = sample_site / "public" / "digests" / "index.html"
    for path in (copy, archive):
        links = {(link.get("type"), link.get("href")) for link in page(path).iter("link")
                 if link.get("rel") == "alternate"}
        assert links == {
            ("application/rss+xml", "https://journal.example.org/feed.xml"),
            ("application/atom+xml", "https://journal.example.org/atom.xml"),
            ("application/feed+json", "https://journal.example.org/feed.json"),
        }, path.name
        assert page(path).find(".//head/link[@rel='alternate']") is not None  # in <head>
        for _, href in links:
            assert (sample_site / "public" / href.rsplit("/", 1)[1]).is_file()


def test_the_archive_lists_every_digest_newest_first_and_its_links_work(site: Path) -> None:
    write_entry(site, "first.md", markdown_entry(title="First entry", date="2026-03-01"))
    run(site)
    write_entry(site, "second.md", markdown_entry(title="Second entry", date="2026-04-01"))
    write_entry(site, "third.md", markdown_entry(title="Third entry", date="2026-04-02"))
    run(site)
    archive = site / "public" / "digests" / "index.html"
    items = list(page(archive).iter("li"))
    assert len(items) == 2
    assert "Third entry" in items[0].text_content() and "2 articles" in items[0].text_content()
    assert "First entry" in items[1].text_content() and "1 article" in items[1].text_content()
    for item in items:
        [href] = [a.get("href") for a in item.iter("a")]
        assert (archive.parent / href).is_file()  # relative: works served or from disk
    assert len(list(archive.parent.glob("*.html"))) == 3
    assert {web_copy_of(m, site).name for m in messages(site)} == {
        p.name for p in archive.parent.glob("2026-*.html")}


def test_a_run_with_nothing_new_leaves_the_web_pages_alone(sample_site: Path) -> None:
    run(sample_site)
    folder = sample_site / "public" / "digests"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    write_entry(sample_site, "draft.md", markdown_entry(title="Draft", draft="true"))
    assert "Nothing new" in run(sample_site)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_a_deleted_archive_page_comes_back_with_the_next_digest(site: Path) -> None:
    write_entry(site, "first.md", markdown_entry(title="First entry", date="2026-03-01"))
    run(site)
    (site / "public" / "digests" / "index.html").unlink()
    write_entry(site, "second.md", markdown_entry(title="Second entry", date="2026-04-01"))
    run(site)
    items = list(page(site / "public" / "digests" / "index.html").iter("li"))
    assert len(items) == 2


def test_a_first_run_stopped_between_its_web_copy_and_its_digest_is_finished_by_the_next(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The web copy is written before the ledger records the digest (no message may link to a
    missing page); a first run killed in between must not read as a site whose ledger was
    lost."""
    from pipeline.state.ledger import Ledger

    write_entry(site, "a.md", markdown_entry())

    def killed(*_: object) -> None:
        raise KeyboardInterrupt  # as SIGKILL would, after the web copy, before the digest

    with monkeypatch.context() as patch:
        patch.setattr(Ledger, "create_digest", killed)
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(site)
    assert list((site / "public" / "digests").glob("*.html")) and not messages(site)
    assert "2 messages written" in run(site)
    assert sorted(m["To"].addresses[0].addr_spec for m in messages(site)) == list(SUBSCRIBED[:2])
    assert all(web_copy_of(m, site).exists() for m in messages(site))
