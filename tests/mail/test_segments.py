"""Segments: subscribers get the entries of the categories they chose, each distinct set of
entries rendered once however many subscribers share it."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest

import pipeline.publishing.digest
from conftest import NOW, markdown_entry, write_entry
from pipeline.mail.segments import Renditions
from pipeline.run import run
from pipeline.state.ledger import open_ledger

SUBSCRIBERS = """\
email,name,categories,status
all@example.org,Chose Nothing,,active
heart1@example.org,Heart One,Heart Health,active
heart2@example.org,Heart Two,heart health,active
mixed@example.org,Mixed,Nutrition;HEART HEALTH,active
skin@example.org,Skin Only,Dermatology,active
"""


@pytest.fixture
def segmented(site: Path) -> Path:
    (site / "subscribers.csv").write_text(SUBSCRIBERS, encoding="utf-8")
    for n, category in enumerate(("Heart Health", "Nutrition", "Sleep"), 1):
        write_entry(site, f"e{n}.md", markdown_entry(
            title=f"{category} news", date=f"2026-03-1{n}", category=f'"{category}"'))
    return site


def bodies(site: Path, digest_id: int = 1) -> dict[str, tuple[str, str]]:
    """Recipient → (subject, plain text) of one digest's messages."""
    found = {}
    for path in (site / "outbox" / "new").glob(f"digest-{digest_id:05d}-*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        found[message["To"].addresses[0].addr_spec] = (
            str(message["Subject"]), message.get_body(("plain",)).get_content())
    return found


def count_renders(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = pipeline.publishing.digest.render_digest

    def counting(articles, created, config):  # type: ignore[no-untyped-def]
        calls.append(len(articles))
        return real(articles, created, config)

    monkeypatch.setattr(pipeline.publishing.digest, "render_digest", counting)
    return calls


def test_subscribers_get_only_their_categories_and_each_choice_is_rendered_once(
        segmented: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    renders = count_renders(monkeypatch)
    report = run(segmented, NOW)
    got = bodies(segmented)
    assert sorted(got) == ["all@example.org", "heart1@example.org", "heart2@example.org",
                           "mixed@example.org"]  # Dermatology has nothing new: no message
    assert report.written == 4
    titles = {who: {t for t in ("Heart Health news", "Nutrition news", "Sleep news")
                    if t in text} for who, (_, text) in got.items()}
    assert titles["all@example.org"] == {"Heart Health news", "Nutrition news", "Sleep news"}
    assert titles["heart1@example.org"] == titles["heart2@example.org"] == {"Heart Health news"}
    assert titles["mixed@example.org"] == {"Heart Health news", "Nutrition news"}
    assert got["heart1@example.org"][0] == "Test Clinic Journal: Heart Health news"
    assert got["all@example.org"][0] == "Test Clinic Journal: Sleep news"
    # Three distinct sets of entries, three renders: not one per subscriber (five), and the
    # two spellings of "Heart Health" are one segment.
    assert sorted(renders) == [1, 2, 3]
    with open_ledger(segmented / ".newsletter") as ledger:
        assert ledger.rendition_count(report.digest_id) == 2  # the full one is the digest


def test_a_resumed_digest_uses_the_frozen_renditions(segmented: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.core.config import load_config
    from pipeline.entries.collect import collect_articles

    report = run(segmented, NOW)
    renders = count_renders(monkeypatch)
    config = load_config(segmented)
    articles, _ = collect_articles(config, NOW)
    with open_ledger(segmented / ".newsletter") as ledger:
        digest = ledger.digest(report.digest_id)
        again = Renditions(digest, articles, config, ledger)
        heart = again.for_segment("heart health")
        assert heart is not None and heart.slugs == ("e1",)
        assert again.for_segment("dermatology") is None
        assert again.for_segment("") is digest
    assert renders == [] and again.rendered == 0
    assert bodies(segmented)["heart1@example.org"][0] == heart.subject


def test_a_segment_with_nothing_new_gets_the_next_digest_in_its_category(
        segmented: Path) -> None:
    run(segmented, NOW)
    write_entry(segmented, "skin.md", markdown_entry(
        title="Sun and skin", date="2026-03-20", category="Dermatology"))
    report = run(segmented, NOW)
    assert report.digest_id == 2 and report.written == 2
    assert sorted(bodies(segmented, 2)) == ["all@example.org", "skin@example.org"]
