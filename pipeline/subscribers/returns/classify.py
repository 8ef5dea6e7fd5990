"""What a piece of returning mail says: a bounce (which addresses failed, for good or for now),
a spam complaint (an RFC 5965 ARF report), an automatic reply to ignore, or nothing we know.

The failed addresses come from flufl.bounce (Mailman's detectors for RFC 3464 DSNs and for the
home-made formats of many real MTAs); permanence comes from the RFC 3464 Action and the RFC 3463
status code of each recipient, or from the first status code in the bounce's text.
Nothing here reads the list: apply.py ties what is found to subscribers.
"""

from __future__ import annotations

import email
import hashlib
import logging
import re
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses, parseaddr

from pipeline.subscribers.returns.parts import (
    STATUS,
    delivered_to,
    find_part,
    header_blocks,
    original_headers,
    own_text,
    recipient_of,
    status_of,
)

BOUNCE, COMPLAINT, AUTO_REPLY, DELIVERED, UNRECOGNISED, MALFORMED = (
    "bounce", "complaint", "auto-reply", "delivered", "unrecognised", "malformed")
PERMANENT, TEMPORARY, POLICY = "permanent", "temporary", "policy"

PRINTABLE = re.compile(r"[!-~]{0,254}")  # an address as reports may show it: printable ASCII
# Our own Message-IDs (mail/compose.message_name, manage.confirmation_name).
OUR_DIGEST_ID = re.compile(rb"<digest-(\d{5,})-[0-9a-f]{8}-([0-9a-f]{16})@")
# Texts that say the address itself does not exist, whatever the status code.
_NO_SUCH_ADDRESS = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient|account|address)"
    r"|(mailbox|account|user|address|recipient) (does not|doesn'?t) exist"
    r"|recipient not found|address not found|mailbox not found|invalid (recipient|mailbox)"
    r"|account (has been |is )?disabled|host or domain name not found|domain not found"
    r"|not listed in (the )?(domino )?directory", re.I)
_MAILBOX_FULL = re.compile(r"mailbox (is )?full|over ?quota|quota exceeded|exceed(s|ed)? "
                           r"(the |its |storage )*(quota|allocation)|insufficient (system )?"
                           r"storage|mailbox size limit", re.I)
# Texts that say the message (or its sender) was refused, not the address.
# Header lines quoted from the returned message ("X-Spam-Status:", a subject about viruses)
# say nothing about why it was refused.
_QUOTED_HEADER = re.compile(
    r"(?im)^[ \t>]*(x-[\w-]+|subject|received|from|to|cc|date|message-id|content-[\w-]+"
    r"|mime-version|return-path|dkim-signature|authentication-results|arc-[\w-]+"
    r"|list-[\w-]+|thread-[\w-]+|references|in-reply-to):.*(\n[ \t]+.*)*")
_REFUSED_MESSAGE = re.compile(
    r"spam|junk mail|unsolicited|blocked|block ?list|black ?list|\brbl\b"
    r"|spamhaus|reputation|policy|dmarc|\bspf\b|dkim|content (was )?rejected|virus|malware"
    r"|message (is )?too (big|large)|size limit", re.I)
# RFC 3834 and the usual de-facto headers and subjects of automatic replies, vacation notices
# and challenge-response systems.
_AUTO_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-vacation",
                 "x-boxtrapper", "x-tmda-confirm", "x-challenge")
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic|matische)?[ -]?(reply|response|antwort|svar|risposta|respuesta)"
    r"|out of (the )?office|ooo\b|on vacation|vacation|away from|abwesen|absence"
    r"|r[ée]ponse automatique|risposta automatica|respuesta autom[aá]tica|fuera de la oficina"
    r"|please confirm|confirm your (message|email)|verify your (message|email)|"
    r"your (email|message) requires verification|sender verification)", re.I)
# flufl.bounce logs a traceback when one of its detectors trips over odd mail; the verdict
# says what went wrong instead, and cron's mail stays quiet.
logging.getLogger("flufl.bounce").addHandler(logging.NullHandler())
logging.getLogger("flufl.bounce").propagate = False
_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail delivery|mdaemon|mail administrator)",
                     re.I)


@dataclass(frozen=True)
class Failure:
    address: str  # as the report names it
    kind: str  # permanent, temporary, policy (a refusal of the message, not the address),
    # or complaint
    status: str = ""  # RFC 3463, e.g. 5.1.1
    detail: str = ""  # the diagnostic, shortened
    report: str = ""  # the report's own label where it gives no status code (SES's bounce
    # type, a feedback type): for the audit trail, so never an address


@dataclass
class Verdict:
    kind: str  # bounce, complaint, auto-reply, delivered, unrecognised, malformed
    key: str  # the mail's Message-ID, else a hash of its bytes: handled once
    failures: list[Failure] = field(default_factory=list)
    sent_to: list[str] = field(default_factory=list)  # where it was delivered: VERP candidates
    digest_id: int | None = None  # the digest it answers, from our Message-ID in it
    digest_for: str = ""  # ... and the hash of the address that digest message went to
    reason: str = ""
    from_provider: bool = False  # a notification the sending provider signed (SES via SNS)


def mail_key(data: bytes, message: Message | None = None) -> str:
    """How a piece of mail is known in the ledger: its Message-ID if it has a sane one, else
    a hash of its bytes (line endings made alike, so the same mail from IMAP and from a
    Maildir is one)."""
    if message is not None:
        # str(): a header with raw 8-bit bytes comes back as an email.header.Header
        found = str(message.get("message-id") or "").strip()
        if 3 <= len(found) <= 250 and found.isascii() and "\n" not in found:
            return "message-id:" + found
    return "sha256:" + hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def classify(data: bytes) -> Verdict:
    """What this returning mail says (never raises for bad input: a verdict says so)."""
    if b":" not in data[:2000]:
        return Verdict(MALFORMED, mail_key(data), reason="not a mail message (no header lines)")
    try:
        message = email.message_from_bytes(data)
    except (RecursionError, Exception) as exc:  # MIME nested thousands deep, and the like
        return Verdict(MALFORMED, mail_key(data),
                       reason=f"not a readable mail message ({type(exc).__name__})")
    key = mail_key(data, message)
    if not message.keys():
        return Verdict(MALFORMED, key, reason="not a mail message (no header lines)")
    verdict = Verdict(UNRECOGNISED, key)
    found = OUR_DIGEST_ID.search(data)
    if found:
        verdict.digest_id, verdict.digest_for = int(found[1]), found[2].decode()
    try:
        verdict.sent_to = delivered_to(message)
        _classify(message, verdict)
        # Addresses go into reports and cron's mail: nothing unprintable, nothing overlong.
        verdict.failures = [f for f in verdict.failures if PRINTABLE.fullmatch(f.address)]
        if verdict.kind in (BOUNCE, COMPLAINT) and not verdict.failures:
            verdict.kind = UNRECOGNISED
            verdict.reason = "names no address that could be a subscriber's"
    except Exception as exc:  # a detector tripped over broken MIME: report, change nothing
        verdict.kind, verdict.failures = MALFORMED, []
        verdict.reason = f"could not be read as a bounce ({type(exc).__name__}: {exc!r})"[:300]
    return verdict


def _classify(message: Message, verdict: Verdict) -> None:
    report_type = (message.get_param("report-type") or "").lower() \
        if message.get_content_type() == "multipart/report" else ""
    if report_type == "feedback-report" or find_part(message, "message/feedback-report"):
        _complaint(message, verdict)
    elif report_type == "delivery-status" or find_part(message, "message/delivery-status"):
        _dsn(message, verdict)
        if not verdict.failures and verdict.kind != DELIVERED:
            _heuristic(message, verdict)
    elif _auto_reply(message):
        # A mail system's bounce may carry RFC 3834 headers too: believe it when it says why.
        _heuristic(message, verdict)
        text = own_text(message)
        if not (verdict.failures and (STATUS.search(text) or _NO_SUCH_ADDRESS.search(text)
                                      or _MAILBOX_FULL.search(text))):
            verdict.kind, verdict.failures = AUTO_REPLY, []
            verdict.reason = "an automatic reply (RFC 3834 headers or its subject)"
    else:
        _heuristic(message, verdict)
        if not verdict.failures and _AUTO_SUBJECT.search(str(message.get("subject", ""))):
            verdict.kind, verdict.reason = AUTO_REPLY, "an automatic reply (its subject)"
    if verdict.kind == UNRECOGNISED and not verdict.reason:
        verdict.reason = "not a bounce, complaint or automatic reply that we recognise"




def _complaint(message: Message, verdict: Verdict) -> None:
    """RFC 5965: the machine-readable part names the feedback type and, often, the original
    recipient; the returned original (or its headers) holds our return path and Message-ID."""
    report = find_part(message, "message/feedback-report")
    fields = header_blocks(report)[0] if report is not None and header_blocks(report) else Message()
    feedback = str(fields.get("feedback-type", "abuse")).strip().lower()
    if feedback not in ("abuse", "fraud", "other"):  # not-spam, virus, auth-failure: no opinion
        verdict.kind, verdict.reason = UNRECOGNISED, f"a feedback report of type {feedback!r}"
        return
    original = original_headers(message)
    recipients = [a for _, a in getaddresses(fields.get_all("original-rcpt-to", []))]
    if not recipients and original is not None:
        recipients = [a for _, a in getaddresses(original.get_all("to", []))]
    # Where the reported message came from: our VERP address, if it had one.
    verdict.sent_to += [a for _, a in getaddresses(fields.get_all("original-mail-from", []))]
    if original is not None:
        verdict.sent_to += [a for _, a in getaddresses(original.get_all("return-path", []))]
    verdict.kind = COMPLAINT
    label = f"feedback type {feedback}"
    verdict.failures = [Failure(a, "complaint", "", label, label)
                        for a in dict.fromkeys(r.strip("<>") for r in recipients if "@" in r)]
    if not verdict.failures:
        verdict.failures = [Failure("", "complaint", "", label, label)]
    verdict.reason = f"a spam complaint (feedback type {feedback})"


def _dsn(message: Message, verdict: Verdict) -> None:
    """RFC 3464: one block per recipient with its Action and Status."""
    from flufl.bounce import all_failures

    temporary, permanent = all_failures(message)
    named = {a.decode("ascii", "replace").lower() for a in temporary | permanent}
    delivered, seen = False, set()
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in header_blocks(part)[1:]:
            action = str(block.get("action", "")).strip().lower()
            address = recipient_of(block)
            status = status_of(str(block.get("status", "")))
            diagnostic = " ".join(str(block.get("diagnostic-code", "")).split())
            diagnostic = diagnostic.partition(";")[2].strip() or diagnostic
            if action.startswith(("delivered", "relayed", "expanded")):
                delivered = True
                continue
            if not address or not action.startswith(("fail", "error", "delayed")):
                continue
            if address.lower() in seen:
                continue  # one recipient reported twice
            seen.add(address.lower())
            named.discard(address.lower())
            default = TEMPORARY if action.startswith("delayed") else PERMANENT
            found = failure_kind(status, diagnostic, default)
            verdict.failures.append(Failure(address, found, status, diagnostic[:200]))
    text = own_text(message)
    for address in sorted(named):  # found by flufl but in no block we could read
        default = TEMPORARY if address.encode() in temporary else PERMANENT
        status = status_of(text)
        verdict.failures.append(Failure(address, failure_kind(status, text, default), status))
    if verdict.failures:
        verdict.kind, verdict.reason = BOUNCE, _reason(verdict.failures)
    elif delivered:
        verdict.kind, verdict.reason = DELIVERED, "a delivery (or relay) notice, not a failure"


def _heuristic(message: Message, verdict: Verdict) -> None:
    """A bounce in one of the many non-standard formats real MTAs send (flufl.bounce)."""
    from flufl.bounce import all_failures

    temporary, permanent = all_failures(message)
    text = own_text(message)
    status = status_of(text)
    for raw in sorted(temporary | permanent):
        address = raw.decode("ascii", "replace")
        default = TEMPORARY if raw in temporary else PERMANENT
        verdict.failures.append(Failure(address, failure_kind(status, text, default), status))
    if verdict.failures:
        verdict.kind, verdict.reason = BOUNCE, _reason(verdict.failures)


def failure_kind(status: str, text: str, default: str) -> str:
    """Permanent (the address is bad), temporary (try again: counted) or policy (this message
    was refused, not the address: recorded, changes nothing), by RFC 3463's status classes;
    the text decides where the code is missing or generic (x.0.0)."""
    if _NO_SUCH_ADDRESS.search(text) and not status.startswith("4"):
        return PERMANENT
    if _MAILBOX_FULL.search(text) or status in ("5.2.2", "4.2.2"):
        return TEMPORARY
    klass, subject, _ = status.split(".") if status else ("", "", "")
    if klass == "4":
        return TEMPORARY
    if subject in ("", "0"):
        refused = _REFUSED_MESSAGE.search(_QUOTED_HEADER.sub("", text))
        return POLICY if refused else default
    if subject == "1" or status in ("5.2.1", "5.4.1", "5.4.4", "5.4.310"):
        return PERMANENT  # addressing; mailbox disabled; no such domain (and Exchange's)
    if subject in ("3", "5", "6", "7") or status == "5.2.3":
        return POLICY  # the receiving system, the protocol, the content, security or policy
    if subject == "4":
        return TEMPORARY  # routing trouble other than a missing domain
    return default


def _reason(failures: list[Failure]) -> str:
    kinds = sorted({f.kind for f in failures})
    return f"a bounce ({', '.join(kinds)})"


def _auto_reply(message: Message) -> bool:
    """RFC 3834 and friends, unless the mail is plainly a mail system's bounce."""
    sender = parseaddr(str(message.get("from", "")))
    if _DAEMON.match(sender[1]) or _DAEMON.match(sender[0]) or message.get("x-failed-recipients"):
        return False
    submitted = str(message.get("auto-submitted", "no")).strip().lower()
    precedence = str(message.get("precedence", "")).strip().lower()
    return (submitted not in ("", "no") or precedence == "auto_reply"
            or any(message.get(h) is not None for h in _AUTO_HEADERS)
            or bool(_AUTO_SUBJECT.search(str(message.get("subject", "")))))













