"""The corpus of real-world bounces (tests/bounces/, see its README) through the classifier:
each file's outcome and failed addresses as tests/bounces/expected.tsv says."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.subscribers.returns.classify import BOUNCE, classify

CORPUS = Path(__file__).resolve().parents[1] / "bounces"


def _expected() -> list[tuple[str, str, set[str]]]:
    rows = []
    for line in (CORPUS / "expected.tsv").read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, outcome, addresses, *_ = [*line.split("\t"), "", ""]
        rows.append((name, outcome, set(addresses.split())))
    return rows


EXPECTED = _expected()


def test_the_corpus_is_large_and_every_file_is_listed() -> None:
    files = {str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*.eml")}
    assert files == {name for name, _, _ in EXPECTED}
    assert len(files) >= 120


@pytest.mark.parametrize(("name", "outcome", "addresses"), EXPECTED,
                         ids=[name for name, _, _ in EXPECTED])
def test_each_bounce_is_classified_as_expected(name: str, outcome: str,
                                               addresses: set[str]) -> None:
    verdict = classify((CORPUS / name).read_bytes())
    if verdict.kind == BOUNCE:
        got = "+".join(sorted({f.kind for f in verdict.failures}))
    else:
        got = verdict.kind
    assert got == outcome, verdict.reason
    assert {f.address.lower() for f in verdict.failures if f.address} == addresses


def test_the_outcomes_cover_every_kind() -> None:
    kinds = {outcome for _, outcome, _ in EXPECTED}
    assert {"permanent", "temporary", "policy", "complaint", "auto-reply", "delivered",
            "unrecognised"} <= kinds


@settings(max_examples=200, deadline=None)
@example(b"\x00" * 10 + b"\x80", "simple_45.eml")  # a Message-ID that is not ASCII
@given(st.binary(max_size=3000), st.sampled_from(sorted(p.name for p in
                                                         (CORPUS / "flufl").glob("*.eml"))))
def test_damaged_bounces_never_crash_the_classifier(noise: bytes, name: str) -> None:
    """Real bounces with bytes overwritten or cut: always a verdict, never an exception."""
    data = (CORPUS / "flufl" / name).read_bytes()
    at = len(noise) % max(len(data), 1)
    verdict = classify(data[:at] + noise + data[at + len(noise):])
    assert verdict.kind and verdict.key
