"""The compact store's lookups a send makes at a million recipients, kept in sorted arrays
(pipeline/mail/compact.py): the order they are sorted in, and a journal's outcomes (each
message's last, a line not ours left alone), read from a real journal file."""

from __future__ import annotations

import random
from array import array
from pathlib import Path

import pytest

from pipeline.mail.compact import Outcomes, sorted_by_key


def test_the_index_is_sorted_with_the_last_of_equal_keys_last() -> None:
    rng = random.Random(17)
    keys = [rng.getrandbits(64) for _ in range(5000)]
    keys += [*keys[:50], 0, 2**64 - 1, 0]  # lines written twice, and the extremes
    starts = list(range(0, 100 * len(keys), 100))
    got_keys, got_starts = sorted_by_key(array("Q", keys), array("Q", starts))
    assert list(zip(got_keys, got_starts, strict=True)) == sorted(
        zip(keys, starts, strict=True))


def test_a_journal_gives_each_message_its_last_outcome(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    journal = tmp_path / "journal"
    journal.write_bytes(
        b'F 00000000000000aa 1700000000.000 "450 later\\nthe subscriber is not marked\\n"\n'
        b"S 00000000000000bb 1700000001.500\n"
        b"not a line we wrote\n"
        b"S 00000000000000aa 1700000002.000\n"
        b'W 00000000000000cc 1700000003.000 "not sent: left"\n'
        b"S 00000000000000dd 17000")  # half a line: a kill in the middle of its write
    outcomes = Outcomes(journal)
    assert len(outcomes) == 3
    assert outcomes.get("00000000000000aa") == ("sent", 1700000002.0, "")
    assert outcomes.get("00000000000000cc") == ("withdrawn", 1700000003.0, "not sent: left")
    assert "00000000000000bb" in outcomes and "00000000000000dd" not in outcomes
    assert outcomes.get("00000000000000dd") is None
    assert (outcomes.count("sent"), outcomes.count("withdrawn"), outcomes.count("failed")) \
        == (2, 1, 0)
    assert "cannot read" in caplog.text
    assert len(Outcomes(tmp_path / "none")) == 0  # no journal yet: nothing sent
