"""Helpers for the returning-mail tests: real DSNs and ARF reports as a Postfix or a mailbox
provider's feedback loop writes them, and a relay that records each envelope sender."""

from __future__ import annotations

import re
from pathlib import Path

from aiosmtpd.smtp import Envelope

from conftest import Inbox, invoke
from pipeline.state.ledger import open_ledger
from pipeline.state.returns import ReturnsBook
from pipeline.state.subscribers import SubscriberBook


class EnvelopeInbox(Inbox):
    """An Inbox that also keeps each message's MAIL FROM."""

    def __init__(self) -> None:
        super().__init__()
        self.senders: dict[str, str] = {}  # recipient → envelope sender

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        self.senders[envelope.rcpt_tos[0]] = envelope.mail_from or ""
        return await super().handle_DATA(server, session, envelope)


def dsn(to: str, failed: str, status: str = "5.1.1", action: str = "failed",
        diagnostic: str = "550 5.1.1 <{failed}>: Recipient address rejected: User unknown",
        original_id: str = "<digest-00001-abcdefab-0123456789abcdef@example.org>",
        message_id: str = "<20261125120000.AB12C3@mx.example.net>") -> bytes:
    """A delivery status notification as Postfix writes it (RFC 3464)."""
    return f"""\
Return-Path: <>
Delivered-To: {to}
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {to}
Auto-Submitted: auto-replied
Message-Id: {message_id}
Date: Wed, 25 Nov 2026 12:00:00 +0000 (UTC)
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="B0UNDARY"

--B0UNDARY
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{failed}>: host mx.example.net said: {diagnostic.format(failed=failed)}

--B0UNDARY
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: AB12C3
Arrival-Date: Wed, 25 Nov 2026 11:59:58 +0000 (UTC)

Final-Recipient: rfc822; {failed}
Original-Recipient: rfc822;{failed}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; {diagnostic.format(failed=failed)}

--B0UNDARY
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: Test Clinic Journal <journal@example.org>
To: <{failed}>
Subject: Test Clinic Journal: Sleep and blood pressure
Message-ID: {original_id}

--B0UNDARY--
""".replace("\n", "\r\n").encode()


def arf(to: str, complainer: str, return_path: str = "journal@example.org",
        feedback: str = "abuse", message_id: str = "<fbl-1@feedback.example.net>") -> bytes:
    """An RFC 5965 abuse report from a feedback loop."""
    return f"""\
From: <staff@feedback.example.net>
Date: Thu, 26 Nov 2026 08:00:00 +0000
Subject: FW: Test Clinic Journal
To: {to}
Message-ID: {message_id}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
     boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Thu, 26 Nov 2026 07:59:00 +0000.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: {feedback}
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <{return_path}>
Arrival-Date: Thu, 26 Nov 2026 07:59:00 +0000
Reported-Domain: example.org
Source-IP: 192.0.2.1

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

Return-Path: <{return_path}>
From: Test Clinic Journal <journal@example.org>
To: <{complainer}>
Subject: Test Clinic Journal: Sleep and blood pressure
Message-ID: <digest-00001-abcdefab-0123456789abcdef@example.org>

The digest.

--part1_13d.2e68ed54_boundary--
""".replace("\n", "\r\n").encode()


def vacation(to: str, sender: str = "ada@example.org") -> bytes:
    return f"""\
From: Ada Lovelace <{sender}>
To: {to}
Subject: Out of office: Test Clinic Journal
Auto-Submitted: auto-replied
Message-ID: <ooo-1@example.org>
Date: Thu, 26 Nov 2026 08:00:00 +0000

I am away until Monday and will read your message when I am back.
""".replace("\n", "\r\n").encode()


def statuses(site: Path) -> dict[str, str]:
    """address → status on the list, as the ledger has it."""
    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        return {s.email: s.status for s in SubscriberBook(ledger).everyone()}


def subscriber_id(site: Path, email: str) -> int:
    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        who = SubscriberBook(ledger).get(email)
    assert who is not None, f"{email} is not on the list"
    return who.id


def returns_rows(site: Path) -> list[tuple]:
    """(address, kind, status code, digest id, previous status, status set) of each subscriber
    row the ledger recorded from returning mail, oldest first."""
    with open_ledger(site / ".newsletter", read_only=True) as ledger:
        return [(r.address, r.kind, r.status_code, r.digest_id, r.previous, r.changed)
                for r in ReturnsBook(ledger).rows()]


def history(site: Path, address: str) -> list[tuple[str, str]]:
    """(source, what) per line of `newsletter subscribers history ADDRESS`."""
    code, out, err = invoke("subscribers", "history", address, "--site", str(site))
    assert code == 0, out + err
    return [(m[1], m[2]) for m in re.finditer(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC  (\S+(?: request)?)\s+(.+)$", out, re.M)]


def maildir(root: Path) -> Path:
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def deliver_to(folder: Path, name: str, data: bytes) -> Path:
    path = folder / "new" / name
    path.write_bytes(data)
    return path
