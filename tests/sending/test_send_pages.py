"""A send reads its queue from the ledger a page at a time (due.PAGE) and feeds the pool as
it drains: with a page of 7, a queue of several pages is sent whole, each message once, in
both outbox modes; a cap and a withdrawn subscriber across pages; a SIGKILL across a page
boundary. A real SMTP server on loopback, a real SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import (
    Inbox,
    add_subscribers,
    delivery_states,
    free_port,
    markdown_entry,
    smtp_server,
    use_compact_outbox,
    use_relay,
    write_entry,
)
from pipeline.delivery import due as sending_queue
from pipeline.delivery.pool import Pool
from pipeline.delivery.send import send
from pipeline.mail.compact import stores
from pipeline.run import run

PAGE = 7
DEFAULT_PAGE = sending_queue.PAGE
KILL_CHILD = """
import sys
import pipeline.delivery.due as sending_queue
sending_queue.PAGE = int(sys.argv[1])
from pipeline.cli.main import cli
cli(["send", "--site", sys.argv[2], "--rate", "150"])
"""






@pytest.fixture
def most_queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A page of PAGE, and the most jobs the pool ever held at once (it is fed pages)."""
    monkeypatch.setattr(sending_queue, "PAGE", PAGE)
    most = [0]
    feed = Pool.feed

    def counting(self: Pool, jobs: object) -> None:
        feed(self, jobs)  # type: ignore[arg-type]
        most[0] = max(most[0], self.jobs.qsize())

    monkeypatch.setattr(Pool, "feed", counting)
    return most


@pytest.mark.parametrize("mode", ["maildir", "compact"])
def test_a_queue_of_several_pages_is_sent_whole_each_message_once(
        site: Path, mode: str, most_queued: list[int]) -> None:
    port = free_port()
    if mode == "compact":
        use_compact_outbox(site)
    use_relay(site, port, connections=3)
    addresses = add_subscribers(site, 40)
    write_entry(site, "a.md", markdown_entry())
    assert run(site).written == 40
    # reader0012 (in the second page) leaves before the send: withdrawn, not sent
    rows = (site / "subscribers.csv").read_text().replace(
        "reader0012@example.org,Reader 12,,active",
        "reader0012@example.org,Reader 12,,unsubscribed")
    (site / "subscribers.csv").write_text(rows)
    run(site)
    inbox = Inbox()
    with smtp_server(inbox, port):
        first = send(site, limit=17)  # a cap across pages
        assert (first.due, first.sent, first.left, first.withdrawn) == (17, 17, 22, 1)
        rest = send(site)
        assert (rest.due, rest.sent, rest.left) == (22, 22, 0)
    got = Counter(a for a, _ in inbox.received)
    assert sorted(got) == sorted(set(addresses) - {addresses[12]})
    assert set(got.values()) == {1}
    assert delivery_states(site) == {"sent": 39, "withdrawn": 1}
    assert 0 < most_queued[0] <= 2 * PAGE, "the pool held the whole queue"


def test_a_sender_killed_across_a_page_boundary_loses_nothing(site: Path) -> None:
    port = free_port()
    use_compact_outbox(site)
    use_relay(site, port, connections=2)
    addresses = add_subscribers(site, 60)
    write_entry(site, "a.md", markdown_entry())
    assert run(site).written == 60
    inbox = Inbox()
    with smtp_server(inbox, port):
        sender = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(PAGE), str(site)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env={**os.environ})
        deadline = time.monotonic() + 30
        while len(inbox.received) < 3 * PAGE + 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        sender.send_signal(signal.SIGKILL)
        sender.wait()
        killed_at = len(inbox.received)
        assert 3 * PAGE < killed_at < 60, "the kill must land past the third page"
        [store] = stores(site / "outbox")
        journaled = len(store.outcomes())
        sending_queue.PAGE = PAGE  # the second send pages too (restored below)
        try:
            report = send(site)
        finally:
            sending_queue.PAGE = DEFAULT_PAGE
    got = Counter(a for a, _ in inbox.received)
    assert sorted(got) == sorted(addresses)  # nothing lost
    # Twice only from the window between the relay's 250 and the journal's line: at most one
    # per connection the killed sender had open.
    assert sum(got.values()) - 60 <= 2, got.most_common(3)
    assert journaled + report.sent == 60
    assert delivery_states(site) == {"sent": 60}
