"""Compiled templates kept between runs (.newsletter/compiled-templates/): never used once their
source changed, and a damaged store only costs compiling again."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from conftest import NOW, REPO, markdown_entry, messages, text_of, write_entry, write_template
from pipeline.run import run

STORE = Path(".newsletter") / "compiled-templates"


def test_a_template_edited_after_a_run_is_what_the_next_run_uses(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry(title="First"))
    run(site, NOW)
    assert list((site / STORE).glob("*.cache"))
    own = (REPO / "templates" / "digest.txt.j2").read_text(encoding="utf-8")
    write_template(site, "digest.txt.j2", "Edited after the first run.\n" + own)
    write_entry(site, "b.md", markdown_entry(title="Second", date="2026-03-15"))
    run(site, NOW + timedelta(minutes=5))
    latest = [m for m in messages(site) if "Second" in m["Subject"]]
    assert latest and all("Edited after the first run." in text_of(m) for m in latest)
    write_template(site, "digest.txt.j2", "Edited once more.\n" + own)
    write_entry(site, "c.md", markdown_entry(title="Third", date="2026-03-16"))
    run(site, NOW + timedelta(minutes=10))
    latest = [m for m in messages(site) if "Third" in m["Subject"]]
    assert latest and all("Edited once more." in text_of(m) for m in latest)


def test_a_damaged_store_is_compiled_again(site: Path) -> None:
    write_entry(site, "a.md", markdown_entry(title="First"))
    run(site, NOW)
    for path in (site / STORE).glob("*.cache"):
        path.write_bytes(b"not a compiled template")
    write_entry(site, "b.md", markdown_entry(title="Second", date="2026-03-15"))
    assert run(site, NOW + timedelta(minutes=5)).written == 2
    assert all(b"not a compiled" not in p.read_bytes() for p in (site / STORE).glob("*.cache"))


def test_files_from_another_jinja2_or_template_code_are_removed(site: Path) -> None:
    (site / STORE).mkdir(parents=True)
    stale = site / STORE / "0123456789abcdef-old.cache"
    stale.write_bytes(b"compiled by something else")
    write_entry(site, "a.md", markdown_entry(title="First"))
    assert run(site, NOW).written == 2
    assert not stale.exists() and list((site / STORE).glob("*.cache"))
