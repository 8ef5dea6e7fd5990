"""Returning mail end to end: VERP return paths on a real send, then bounces, complaints and
auto-replies read back from a Maildir, an mbox and .eml files, changing the list (or not)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import NOW, invoke, smtp_server
from pipeline.core.config import load_config
from pipeline.mail.return_path import claimed, make_token, return_path, verify
from pipeline.subscribers.returns.intake import KEPT_DIR, process_paths
from returning import (
    EnvelopeInbox,
    arf,
    deliver_to,
    dsn,
    history,
    maildir,
    returns_rows,
    statuses,
    subscriber_id,
    vacation,
)

VERP = "bounces+{token}@example.org"


def use_verp(site: Path) -> None:
    text = (site / "newsletter.toml").read_text(encoding="utf-8")
    (site / "newsletter.toml").write_text(
        text.replace("[email]\n", f'[email]\nreturn_path = "{VERP}"\n'), encoding="utf-8")


@pytest.fixture
def sent_with_verp(written: Path, port: int) -> tuple[Path, dict[str, str]]:
    """The `written` site's digest sent through a real SMTP server with VERP on; returns the
    site and each recipient's envelope sender."""
    from pipeline.delivery.send import send

    use_verp(written)
    inbox = EnvelopeInbox()
    with smtp_server(inbox, port):
        assert send(written).sent == 2
    return written, inbox.senders


# -- the return path ------------------------------------------------------------------------

def test_each_message_goes_out_with_its_own_signed_return_path(sent_with_verp) -> None:
    site, senders = sent_with_verp
    assert sorted(senders) == ["ada@example.org", "grace@example.org"]
    secret = os.environ["NEWSLETTER_SECRET"].encode()
    for address, sender in senders.items():
        assert sender.startswith("bounces+d1-") and sender.endswith("@example.org")
        local = sender.split("@")[0]
        assert local == local.lower() and len(local) <= 64  # safe where MTAs lowercase
        token = verify(VERP, [secret], sender.upper(), address)
        assert token is not None and token.digest_id == 1
        assert token.subscriber_id == subscriber_id(site, address)
    assert senders["ada@example.org"] != senders["grace@example.org"]


def test_without_the_setting_the_plain_envelope_sender_is_kept(written: Path, port: int) -> None:
    from pipeline.delivery.send import send

    inbox = EnvelopeInbox()
    with smtp_server(inbox, port):
        assert send(written).sent == 2
    assert set(inbox.senders.values()) == {"journal@example.org"}


def test_a_forged_or_damaged_token_verifies_for_no_one() -> None:
    secret = b"s3cret"
    good = return_path(VERP, secret, 7, 42, "ada@example.org")
    assert verify(VERP, [b"old", secret], good, "ada@example.org") is not None
    local, domain = good.split("@")
    for bad in (good.replace("d7-", "d8-"), good.replace("-42-", "-43-"),
                local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + domain,
                return_path(VERP, b"not the secret", 7, 42, "ada@example.org")):
        assert verify(VERP, [secret], bad, "ada@example.org") is None
    # Made for the address the subscriber had: not valid for whoever has the id now.
    assert verify(VERP, [secret], good, "someone.else@example.org") is None
    assert claimed(VERP, "journal@example.org") is None
    assert claimed(VERP, "bounces+" + make_token(secret, None, 5, "a@b.org") + "@example.org"
                   ) == ("c", None, 5)


def test_a_bad_return_path_setting_is_a_config_error(site: Path) -> None:
    from pipeline.core.errors import ConfigError

    for value in ("bounces@example.org", "bounces+{token}", "a{token}@x.org <b@c.org>",
                  "bounces+{token}{token}@example.org"):
        text = (site / "newsletter.toml").read_text(encoding="utf-8")
        (site / "newsletter.toml").write_text(
            text.replace("[email]\n", f'[email]\nreturn_path = "{value}"\n', 1),
            encoding="utf-8")
        with pytest.raises(ConfigError, match=r"email\.return_path"):
            load_config(site)
        (site / "newsletter.toml").write_text(text, encoding="utf-8")


# -- bounces and complaints change the list -----------------------------------------------

def test_a_permanent_bounce_to_the_verp_address_marks_that_subscriber(sent_with_verp,
                                                                      tmp_path: Path) -> None:
    site, senders = sent_with_verp
    box = maildir(tmp_path / "Maildir")
    # The remote server names an address we never sent to (a forward): the token decides.
    deliver_to(box, "1.eml", dsn(senders["ada@example.org"], "ada.l@forward.example.net"))
    code, out, err = invoke("bounces", "process", "--site", str(site), str(box))
    assert (code, err) == (0, ""), err
    assert "1 bounced" in out and "ada@example.org: bounced (5.1.1)" in out
    assert statuses(site)["ada@example.org"] == "bounced"
    assert statuses(site)["grace@example.org"] == "active"
    assert returns_rows(site) == [("ada@example.org", "permanent", "5.1.1", 1, "active",
                                   "bounced")]
    # The audit trail says how, with the DSN's status code (and never an address).
    assert history(site, "ada@example.org")[-1] == ("bounce",
                                                    "status: active -> bounced (5.1.1)")
    assert os.listdir(box / "new") == [] and os.listdir(box / "cur") == ["1.eml:2,S"]
    # Safe to run again on the same mail: nothing changes, nothing is counted twice.
    code, out, _ = invoke("bounces", "process", "--site", str(site), str(box))
    assert code == 0 and "1 seen before" in out
    assert len(returns_rows(site)) == 1
    assert [h for h in history(site, "ada@example.org") if h[0] == "bounce"] == [
        ("bounce", "status: active -> bounced (5.1.1)")]


def test_temporary_failures_bounce_after_the_limit(site: Path, tmp_path: Path) -> None:
    from pipeline.run import run

    run(site)
    files = []
    for n in range(3):
        path = tmp_path / f"delay{n}.eml"
        path.write_bytes(dsn("journal@example.org", "grace@example.org", status="4.2.2",
                             action="delayed", diagnostic="452 4.2.2 Mailbox full",
                             original_id=f"<digest-0000{n + 1}-abcdefab-0123@example.org>",
                             message_id=f"<delay-{n}@mx.example.net>"))
        files.append(path)
    first = process_paths(site, files[:2], now=NOW)
    assert first.outcomes["counted"] == 2 and statuses(site)["grace@example.org"] == "active"
    # Outside the window, old failures no longer count...
    late = process_paths(site, files[2:], now=NOW + timedelta(days=30))
    assert late.outcomes["counted"] == 1 and statuses(site)["grace@example.org"] == "active"
    # ... and a third within it makes the address bounced.
    more = []
    for n in (3, 4):
        more.append(tmp_path / f"delay{n}.eml")
        more[-1].write_bytes(dsn("journal@example.org", "grace@example.org", status="4.4.7",
                                 message_id=f"<delay-{n}@mx.example.net>",
                                 diagnostic="delivery time expired"))
    assert process_paths(site, more[:1], now=NOW + timedelta(days=31)).outcomes["counted"] == 1
    last = process_paths(site, more[1:], now=NOW + timedelta(days=32))
    assert last.outcomes["bounced"] == 1
    assert last.changes == [("grace@example.org", "bounced", "4.4.7")]
    assert statuses(site)["grace@example.org"] == "bounced"
    assert [h for h in history(site, "grace@example.org") if h[0] == "bounce"] == [
        ("bounce", "status: active -> bounced (4.4.7; 3 temporary failures within 14 days)")]


def test_a_complaint_makes_the_subscriber_complained_for_good(sent_with_verp,
                                                               tmp_path: Path) -> None:
    site, senders = sent_with_verp
    report = tmp_path / "fbl.eml"
    report.write_bytes(arf("fbl@example.org", "grace@example.org",
                           return_path=senders["grace@example.org"]))
    code, out, _ = invoke("bounces", "process", "--site", str(site), str(report))
    assert code == 0 and "grace@example.org: complained" in out
    assert statuses(site)["grace@example.org"] == "complained"
    assert history(site, "grace@example.org")[-1] == (
        "complaint", "status: active -> complained (feedback type abuse)")
    # Never mailed again: an import with --reactivate does not bring it back.
    csv = tmp_path / "back.csv"
    csv.write_text("email,name,categories,status\ngrace@example.org,,,active\n")
    invoke("subscribers", "import", "--site", str(site), "--reactivate", str(csv))
    assert statuses(site)["grace@example.org"] == "complained"
    code, out, _ = invoke("subscribers", "list", "--site", str(site))
    assert "complained" in out


def test_auto_replies_change_nothing(sent_with_verp, tmp_path: Path) -> None:
    site, senders = sent_with_verp
    mbox = tmp_path / "replies.mbox"
    mbox.write_bytes(b"From ada@example.org Thu Nov 26 08:00:00 2026\n"
                     + vacation(senders["ada@example.org"]).replace(b"\r\n", b"\n") + b"\n")
    code, out, _ = invoke("bounces", "process", "--site", str(site), str(mbox))
    assert code == 0 and "1 ignored" in out
    assert statuses(site)["ada@example.org"] == "active" and returns_rows(site) == []


# -- bad input changes nothing and is reported ---------------------------------------------

def test_a_forged_return_path_token_changes_nothing(sent_with_verp, tmp_path: Path) -> None:
    site, senders = sent_with_verp
    real = senders["ada@example.org"]
    forged = real.replace("-" + real.split("-")[2][:4], "-aaaa")
    box = maildir(tmp_path / "Maildir")
    deliver_to(box, "forged.eml", dsn(forged, "ada@example.org"))
    code, _, err = invoke("bounces", "process", "--site", str(site), str(box))
    assert code == 1
    assert "kept aside: its return-path token does not verify" in err
    assert statuses(site)["ada@example.org"] == "active" and returns_rows(site) == []
    kept = sorted((site / KEPT_DIR).iterdir())
    assert [p.suffix for p in kept] == [".eml", ".reason"]
    assert "does not verify" in kept[1].read_text()
    assert os.listdir(box / "cur") == ["forged.eml:2,FS"]  # flagged for a look


def test_a_bounce_for_an_address_that_left_the_list_changes_nothing(site: Path,
                                                                    tmp_path: Path) -> None:
    from pipeline.run import run

    run(site)
    path = tmp_path / "left.eml"
    path.write_bytes(dsn("journal@example.org", "left@example.org"))
    stranger = tmp_path / "stranger.eml"
    stranger.write_bytes(dsn("journal@example.org", "nobody@example.net",
                             message_id="<other@mx.example.net>"))
    code, _, err = invoke("bounces", "process", "--site", str(site), str(path), str(stranger))
    assert code == 1
    assert "left.eml: kept aside: for an address that left the list (unsubscribed)" in err
    assert "stranger.eml: kept aside: no subscriber has the address it names" in err
    assert statuses(site)["left@example.org"] == "unsubscribed"
    assert all(changed == "" for *_, changed in returns_rows(site))


def test_a_malformed_message_is_reported_and_changes_nothing(site: Path,
                                                            tmp_path: Path) -> None:
    from pipeline.run import run

    run(site)
    junk = tmp_path / "junk.eml"
    junk.write_bytes(b"\x00\xff not a mail message at all \x00" * 20)
    broken = tmp_path / "broken.eml"
    broken.write_bytes(b"Content-Type: multipart/report; report-type=delivery-status; "
                       b"boundary=\"x\"\r\nFrom: MAILER-DAEMON@x.org\r\n\r\n--x\r\n"
                       b"Content-Type: message/delivery-status\r\n\r\n\xff\xfe\r\n--x")
    nested = tmp_path / "nested.eml"  # MIME parts nested thousands deep
    nested.write_bytes(b"From: MAILER-DAEMON@x.org\r\n" + b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n)
        for n in range(3000)))
    odd = tmp_path / "odd.eml"  # trips one of flufl.bounce's detectors
    odd.write_bytes(b"Subject: " + b"a" * 5000 + b"\r\n\r\nbody\r\n")
    good = tmp_path / "good.eml"
    good.write_bytes(dsn("journal@example.org", "grace@example.org"))
    before = statuses(site)
    code, out, err = invoke("bounces", "process", "--site", str(site), str(junk), str(broken),
                            str(nested), str(odd), str(good))
    assert code == 1
    assert "junk.eml: kept aside: not a mail message" in err
    assert "broken.eml: kept aside:" in err
    assert "nested.eml: kept aside: not a readable mail message (RecursionError)" in err
    assert "odd.eml: kept aside: could not be read as a bounce" in err
    assert "Traceback" not in err
    assert "1 bounced, 4 kept" in out  # the rest of the run goes on
    assert statuses(site) == {**before, "grace@example.org": "bounced"}


def test_a_50_mb_message_is_refused_before_it_is_read(site: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.subscribers.returns import intake

    box = maildir(tmp_path / "Maildir")
    huge = box / "new" / "huge.eml"
    with huge.open("wb") as f:
        f.write(dsn("journal@example.org", "ada@example.org"))
        f.truncate(50 * 1024 * 1024)
    monkeypatch.setattr(intake, "classify", lambda data: pytest.fail("parsed"))
    before = statuses(site) if (site / ".newsletter").exists() else {}
    code, _, err = invoke("bounces", "process", "--site", str(site), str(box))
    assert code == 1
    assert "huge.eml:1: size: 52,428,800 bytes is over the limit of 1,048,576" in err
    assert os.listdir(box / "new") == ["huge.eml"]  # left for the operator
    assert statuses(site) == before


def test_a_missing_path_is_a_usage_error(site: Path) -> None:
    code, _, err = invoke("bounces", "process", "--site", str(site), str(site / "nope"))
    assert code == 2 and "does not exist" in err


def test_another_bounces_run_holds_the_lock(site: Path, tmp_path: Path) -> None:
    from pipeline.state.lock import site_lock

    path = tmp_path / "x.eml"
    path.write_bytes(dsn("journal@example.org", "ada@example.org"))
    with site_lock(site / ".newsletter", name="bounces.lock"):
        code, _, err = invoke("bounces", "process", "--site", str(site), "--quiet", str(path))
    assert code == 75 and "another run" in err


def test_status_shows_the_last_digests_rates_and_warns(sent_with_verp, tmp_path: Path) -> None:
    site, senders = sent_with_verp
    code, out, _ = invoke("status", "--site", str(site))
    assert code == 0
    assert "Returning mail for digest #1: 0 bounced (0.00%), 0 complaints (0.00%)" in out
    assert "warning" not in out
    bounce = tmp_path / "b.eml"
    bounce.write_bytes(dsn(senders["ada@example.org"], "ada@example.org"))
    complaint = tmp_path / "c.eml"
    complaint.write_bytes(arf("fbl@example.org", "grace@example.org",
                              return_path=senders["grace@example.org"]))
    assert invoke("bounces", "process", "--site", str(site), str(bounce), str(complaint))[0] == 0
    code, out, _ = invoke("status", "--site", str(site))
    assert code == 0
    assert "Returning mail for digest #1: 1 bounced (50.00%), 1 complaint (50.00%)" in out
    assert "warning: complaint rate 50.00% is at or over 0.1 %" in out
    assert "warning: bounce rate 50.00% is at or over 2 %" in out
    assert "1 complained" in out  # the subscribers line counts the new status


def test_a_redacted_complaint_is_tied_by_its_original_mail_from(sent_with_verp,
                                                                 tmp_path: Path) -> None:
    """Microsoft's and others' reports redact the recipient: the VERP token in the report's
    Original-Mail-From still names the subscriber."""
    site, senders = sent_with_verp
    data = arf("fbl@example.org", "redacted@example.net", return_path=senders["ada@example.org"])
    data = data.replace(f"Return-Path: <{senders['ada@example.org']}>\r\n".encode(), b"")
    assert senders["ada@example.org"].encode() in data  # only in Original-Mail-From now
    report = tmp_path / "jmrp.eml"
    report.write_bytes(data)
    code, out, _ = invoke("bounces", "process", "--site", str(site), str(report))
    assert code == 0 and "ada@example.org: complained" in out
    assert statuses(site)["grace@example.org"] == "active"


def test_a_bounced_confirmation_marks_the_pending_address(site: Path, port: int,
                                                          tmp_path: Path) -> None:
    from conftest import use_relay
    from pipeline.delivery.send import send
    from pipeline.run import run

    use_relay(site, port)
    use_verp(site)
    run(site)
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text() + "\n[subscribers]\ndouble_opt_in = true\n")
    assert invoke("subscribers", "add", "new@example.org", "--site", str(site))[0] == 0
    inbox = EnvelopeInbox()
    with smtp_server(inbox, port):
        assert send(site).sent == 1
    sender = inbox.senders["new@example.org"]
    assert sender.startswith(f"bounces+c0-{subscriber_id(site, 'new@example.org')}-")
    bounce = tmp_path / "confirm-bounce.eml"
    bounce.write_bytes(dsn(sender, "new@example.org"))
    code, out, _ = invoke("bounces", "process", "--site", str(site), str(bounce))
    assert code == 0 and "new@example.org: bounced (5.1.1)" in out
    assert statuses(site)["new@example.org"] == "bounced"


def test_with_verp_on_a_bounce_without_a_token_changes_nothing(sent_with_verp,
                                                              tmp_path: Path) -> None:
    """Anyone can mail the bounce address a DSN naming a subscriber: with VERP on, only a
    bounce that carries a valid token changes the list."""
    site, _ = sent_with_verp
    fake = tmp_path / "fake.eml"
    fake.write_bytes(dsn("bounces@example.org", "ada@example.org"))
    code, _, err = invoke("bounces", "process", "--site", str(site), str(fake))
    assert code == 1 and "a bounce without a return-path token" in err
    assert statuses(site)["ada@example.org"] == "active"


def test_untrusted_text_in_a_bounce_never_reaches_the_terminal(site: Path,
                                                                tmp_path: Path) -> None:
    from pipeline.run import run

    run(site)
    path = tmp_path / "escape.eml"
    path.write_bytes(dsn("journal@example.org", "ada\x1b]0;owned\x07@example.org"))
    code, out, err = invoke("bounces", "process", "--site", str(site), str(path))
    assert code == 1 and "kept aside" in err
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert statuses(site)["ada@example.org"] == "active"
