"""The compact outbox (`[outbox] mode = "compact"`): a digest stored once per rendition with its
recipients, each message assembled while it is sent, with the bytes the per-subscriber .eml
would have had. Real sites, a real SMTP server (aiosmtpd) on loopback, a real SIGKILL."""

from __future__ import annotations

import email
import json
import secrets
import shutil
from collections import Counter
from datetime import timedelta
from email import policy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import (
    NOW,
    Inbox,
    add_subscribers,
    delivery_states,
    free_port,
    invoke,
    kill_send_midway,
    markdown_entry,
    outbox_folder,
    smtp_server,
    use_compact_outbox,
    use_relay,
    write_entry,
)
from pipeline.core.config import load_config
from pipeline.core.models import Subscriber
from pipeline.delivery.send import plan_send, send
from pipeline.mail.compact import CompactStore, parse_record, record_line, stores
from pipeline.mail.compose import Composer
from pipeline.run import run
from pipeline.state.ledger import open_ledger

ODD = """\
email,name,categories,status
ada@example.org,Ada Lovelace,,active
"o'brien+tag@example.org","O'Brien, ""Bert"" <the best>",,active
zoe@exämple.org,Zoë Ünïcödé — 日本語の名前,,active
long@example.org,{long},,active
eq@example.org,=?utf-8?q?=41?= tricky,,active
plain@example.org,,,active
left@example.org,Left Already,,unsubscribed
""".format(long="Averyveryverylong Name " * 8)






def received(inbox: Inbox) -> dict[str, bytes]:
    got = dict(inbox.received)
    assert len(got) == len(inbox.received), "a recipient got two messages"
    return got


def test_both_modes_put_the_same_bytes_on_the_wire(site: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (site / "subscribers.csv").write_text(ODD, encoding="utf-8")
    write_entry(site, "a.md", markdown_entry(title="Sleep and blood pressure"))
    twin = tmp_path / "twin"
    shutil.copytree(site, twin)
    use_compact_outbox(twin)
    port = free_port()
    use_relay(site, port)
    use_relay(twin, port)
    key = secrets.token_hex(16)  # the one random part of a digest: the same for both sites
    monkeypatch.setattr(secrets, "token_hex", lambda n: key)
    assert run(site, NOW).written == 6 and run(twin, NOW).written == 6
    assert outbox_folder(twin, "new") == []
    [store] = stores(twin / "outbox")
    assert sorted(p.name for p in store.dir.iterdir()) == ["recipients", "rendition-0.json"]
    eml = {p.name: p.read_bytes() for p in (site / "outbox" / "new").glob("*.eml")}
    maildir, compacted = Inbox(), Inbox()
    with smtp_server(maildir, port):
        assert send(site, NOW).sent == 6
    with smtp_server(compacted, port):
        assert send(twin, NOW).sent == 6
    by_file, by_store = received(maildir), received(compacted)
    assert sorted(by_file) == sorted(by_store)
    assert "zoe@xn--exmple-cua.org" in by_store  # IDNA, as the list stores it
    for address, data in by_store.items():
        assert data == by_file[address]
    assert sorted(by_file.values()) == sorted(eml.values())
    message = email.message_from_bytes(by_store["o'brien+tag@example.org"], policy=policy.SMTP)
    assert message["To"].addresses[0].display_name == 'O\'Brien, "Bert" <the best>'
    assert delivery_states(twin) == {"sent": 6}
    assert outbox_folder(twin, "sent") == []  # nothing per subscriber, in either folder
    _, out, _ = invoke("status", "--site", str(twin))
    assert "6 messages written, 6 sent" in out and "waiting in the outbox: 0" in out
    _, out, _ = invoke("status", "--json", "--site", str(twin))
    assert json.loads(out)["kept"]["outbox"]["compact"]["messages"] == 6


names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=140)
local = st.text(st.sampled_from("abcxyz0189!#$%&'*+/=?^_`{|}~-"), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(name=names, user=local, sid=st.integers(1, 10**12))
def test_a_message_assembled_from_the_store_is_the_composed_one(
        config_and_digest: tuple, name: str, user: str, sid: int) -> None:
    config, digest = config_and_digest
    secret = b"s" * 32
    subscriber = Subscriber(f"{user}@example.org", name, id=sid)
    composer = Composer(digest, config, secret)
    thawed = Composer.thawed(json.loads(json.dumps(composer.frozen())))
    _, _, address, shown, token = parse_record(record_line(0, subscriber, secret))
    assert thawed.assemble(address, shown, token) == composer.compose(subscriber)


@pytest.fixture
def config_and_digest(site: Path) -> tuple:
    write_entry(site, "a.md", markdown_entry(title="Öl & naïve — “quotes”"))
    assert run(site, NOW).written == 2
    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        digest = ledger.last_digest()
    return load_config(site), digest


def test_a_sender_killed_with_sigkill_loses_nothing_and_sends_nothing_twice(
        site: Path) -> None:
    port = free_port()
    use_compact_outbox(site)
    use_relay(site, port, connections=4)
    addresses = add_subscribers(site, 300)
    write_entry(site, "a.md", markdown_entry())
    assert run(site).written == 300
    inbox = Inbox()
    with smtp_server(inbox, port):
        killed_at = kill_send_midway(site, inbox)
        assert 0 < killed_at < 300, "the kill must land mid-run"
        [store] = stores(site / "outbox")
        journaled = len(store.outcomes())
        assert journaled >= killed_at - 4
        report = send(site)
    assert report.recovered <= journaled
    assert journaled + report.sent == 300
    got = Counter(a for a, _ in inbox.received)
    assert sorted(got) == sorted(addresses)  # nothing lost
    # Twice only from the window between the relay's 250 and the journal's line: at most one
    # per connection the killed sender had open.
    assert sum(got.values()) - 300 <= 4, got.most_common(5)
    assert delivery_states(site) == {"sent": 300}
    assert len(store.outcomes()) == 300


def test_deferred_withdrawn_failed_dry_run_and_erasure(site: Path) -> None:
    port = free_port()
    use_compact_outbox(site)
    use_relay(site, port, retry_after=60)
    addresses = add_subscribers(site, 6)
    write_entry(site, "a.md", markdown_entry())
    assert run(site, NOW).written == 6
    [store] = stores(site / "outbox")
    write_entry(site, "b.md", markdown_entry(title="A second entry"))
    code, out, _ = invoke("run", "--site", str(site))  # a second digest, as cron runs it
    assert code == 0 and "6 messages written to outbox/compact." in out, out
    assert len(stores(site / "outbox")) == 2
    shutil.rmtree(stores(site / "outbox")[1].dir)  # this test follows the first digest only
    assert len(plan_send(site, NOW).missing) == 6  # the second digest's, named, not sent
    plan = plan_send(site, NOW)
    assert plan.due == 6
    _, out, _ = invoke("status", "--site", str(site))
    assert "waiting in the outbox: 6" in out
    journal = store.dir / "journal"
    code, out, _ = invoke("send", "--dry-run", "--site", str(site))  # no server listening
    assert code == 0 and "6 messages are due" in out and not journal.exists()
    # reader0001 leaves before the send: withdrawn, never sent
    rows = (site / "subscribers.csv").read_text().replace(
        "reader0001@example.org,Reader 1,,active", "reader0001@example.org,Reader 1,,unsubscribed")
    (site / "subscribers.csv").write_text(rows)
    run(site, NOW)
    inbox = Inbox()
    inbox.rcpt_reply = lambda a: ("450 4.2.0 try later" if a == addresses[2] else
                                  "550 5.1.1 <reader0003@example.org>: no such user"
                                  if a == addresses[3] else None)
    with smtp_server(inbox, port):
        report = send(site, NOW)
    assert (report.sent, report.deferred, report.failed, report.withdrawn) == (3, 1, 1, 1)
    assert sorted(received(inbox)) == [addresses[i] for i in (0, 4, 5)]
    outcomes = store.outcomes()
    assert Counter(s for s, _, _ in outcomes.values()) == {"sent": 3, "failed": 1,
                                                           "withdrawn": 1}
    assert plan_send(site, NOW).due == 0  # the deferred one waits for its time
    assert plan_send(site, NOW + timedelta(hours=1)).due == 1
    # erasure: the refused address leaves the recipients and the journal (its reason too)
    code, _, _ = invoke("subscribers", "remove", "--site", str(site), addresses[3])
    assert code == 0
    for path in store.dir.iterdir():
        assert b"reader0003" not in path.read_bytes(), path.name
    later = Inbox()
    with smtp_server(later, port):
        assert send(site, NOW + timedelta(hours=1)).sent == 1
    assert sorted(received(later)) == [addresses[2]]
    assert delivery_states(site) == {"sent": 4, "withdrawn": 1}  # the erased address's rows went
    assert sum(1 for _ in CompactStore(site / "outbox", store.dir.name).records()) == 5


def test_a_writer_killed_mid_digest_resumes_without_a_second_line(site: Path) -> None:
    from pipeline.mail.compact import write_compact
    from pipeline.state.secret import load_secret
    from pipeline.state.subscribers import SubscriberBook

    use_compact_outbox(site)
    addresses = add_subscribers(site, 2600)  # more than one batch (2,000)
    write_entry(site, "a.md", markdown_entry())
    assert run(site, NOW).written == 2600
    config = load_config(site)
    [store] = stores(site / "outbox")
    lines = store.recipients.read_bytes().splitlines(keepends=True)
    # As a kill leaves it: the first batch recorded, 300 more lines on disk and half a line.
    store.recipients.write_bytes(b"".join(lines[:2300]) + lines[2300][:17])
    with open_ledger(config.state_dir) as ledger:
        digest = ledger.last_digest()
        ledger._db.execute("DELETE FROM messages WHERE filename NOT IN "
                           "(SELECT filename FROM messages ORDER BY rowid LIMIT 2000)")
        ledger._db.execute("UPDATE digests SET complete = 0")
        ledger._db.commit()
        people = list(SubscriberBook(ledger).active())
        written = write_compact(digest, people, config, ledger, load_secret(config.state_dir),
                                NOW)
        assert written == 300 and ledger.message_count(digest.id) == 2600
    records = [r[2] for r in store.records()]
    assert sorted(records) == sorted(addresses)  # each once, the half line gone
    port = free_port()
    use_relay(site, port, connections=2)
    inbox = Inbox()
    with smtp_server(inbox, port):
        assert send(site, NOW).sent == 2600
    assert sorted(received(inbox)) == sorted(addresses)


def test_retention_removes_a_finished_store_only(site: Path) -> None:
    from pipeline.mail.outbox_folders import Outbox

    port = free_port()
    use_compact_outbox(site)
    use_relay(site, port)
    write_entry(site, "a.md", markdown_entry())
    run(site, NOW)
    [store] = stores(site / "outbox")
    later = NOW + timedelta(days=400)
    assert Outbox(site / "outbox").prune(later) == 0  # nothing sent yet: kept
    with smtp_server(Inbox(), port):
        assert send(site, NOW).sent == 2
    assert Outbox(site / "outbox").prune(NOW - timedelta(days=1)) == 0  # too recent
    assert Outbox(site / "outbox").prune(later) == 3
    assert not store.dir.exists()
