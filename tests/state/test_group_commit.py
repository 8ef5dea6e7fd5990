"""The server's writer: changes from many threads share commits, each is on disk when its
caller gets the answer, and one that fails is undone alone (a real SQLite file)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.core.models import ACTIVE, UNSUBSCRIBED, Subscriber
from pipeline.state.group_commit import GroupCommit
from pipeline.state.ledger import Ledger, connect_ledger, open_ledger
from pipeline.state.subscribers import SubscriberBook

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def a_list(state_dir: Path, count: int) -> list[int]:
    with open_ledger(state_dir) as ledger:
        book = SubscriberBook(ledger)
        book.import_rows((Subscriber(f"r{n}@example.org") for n in range(count)), NOW)
        return [book.get(f"r{n}@example.org").id for n in range(count)]  # type: ignore[union-attr]


def status_on_disk(state_dir: Path, subscriber_id: int) -> str:
    with open_ledger(state_dir, read_only=True) as ledger:  # another connection
        return SubscriberBook(ledger).by_id(subscriber_id).status  # type: ignore[union-attr]


def unsubscribe(subscriber_id: int):
    def change(ledger: Ledger) -> int:
        SubscriberBook(ledger).set_status_by_id(subscriber_id, UNSUBSCRIBED, NOW,
                                                source="one-click")
        return subscriber_id
    return change


def test_every_change_from_many_threads_is_on_disk_when_its_caller_is_answered(
        tmp_path: Path) -> None:
    ids = a_list(tmp_path, 60)
    writer = GroupCommit(lambda: connect_ledger(tmp_path))
    seen: dict[int, str] = {}

    def one(subscriber_id: int) -> None:
        assert writer.run(unsubscribe(subscriber_id)) == subscriber_id
        seen[subscriber_id] = status_on_disk(tmp_path, subscriber_id)

    threads = [threading.Thread(target=one, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    writer.close()
    assert seen == dict.fromkeys(ids, UNSUBSCRIBED)
    with open_ledger(tmp_path, read_only=True) as ledger:
        history = SubscriberBook(ledger).history(ids[0])
    assert [e.source for e in history if e.new == UNSUBSCRIBED] == ["one-click"]


def test_a_change_that_fails_is_undone_alone_and_its_caller_gets_the_error(
        tmp_path: Path) -> None:
    first, second, third = a_list(tmp_path, 3)
    writer = GroupCommit(lambda: connect_ledger(tmp_path))
    hold, holding = threading.Event(), threading.Event()

    def blocking(ledger: Ledger) -> None:  # keeps the writer busy while the others queue
        holding.set()
        hold.wait(10)

    def half_done(ledger: Ledger) -> None:
        unsubscribe(second)(ledger)
        raise LookupError("no such token")

    errors: list[BaseException] = []

    def call(change) -> None:
        try:
            writer.run(change)
        except LookupError as exc:
            errors.append(exc)

    threading.Thread(target=call, args=(blocking,)).start()
    holding.wait(10)
    queued = [threading.Thread(target=call, args=(c,)) for c in (half_done, unsubscribe(third))]
    for thread in queued:
        thread.start()
    while writer._queue.qsize() < 2:  # both in the same next batch
        threading.Event().wait(0.01)
    hold.set()
    for thread in queued:
        thread.join(10)
    writer.close()
    assert [str(e) for e in errors] == ["no such token"]
    assert status_on_disk(tmp_path, first) == ACTIVE
    assert status_on_disk(tmp_path, second) == ACTIVE  # its half-done change was undone
    assert status_on_disk(tmp_path, third) == UNSUBSCRIBED



def test_a_writer_that_cannot_open_the_ledger_fails_its_callers_instead_of_hanging(
        tmp_path: Path) -> None:
    def cannot_open() -> Ledger:
        raise OSError("disk I/O error")

    writer = GroupCommit(cannot_open)
    with pytest.raises(RuntimeError, match="writer thread has stopped"):
        writer.run(unsubscribe(1))
