"""Whose fault an SMTP refusal is: the recipient's address, this one message, or the relay's.

Only a refusal that says the address is bad (an enhanced status 5.1.x or 5.2.x, or, without
one, words to that effect) marks a subscriber. A refusal by the relay's own policy (5.7.x at
MAIL or RCPT: "Relay access denied", "Client host rejected") or of the message's size (5.3.4)
would be the same for every message: it stops the send with everything still queued. A
relay-wide rate limit (any 4xx to MAIL FROM, or words to that effect) pauses the whole send.
"""

from __future__ import annotations

import re

from pipeline.delivery.transport import (
    Outcome,
    TransportBusy,
    TransportDown,
    TransportSetupError,
)

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?=[\s:;,.]|$)")
# Said by relays that give no enhanced status code (or an unhelpful 5.0.0).
_MAILBOX_WORDS = re.compile(
    r"user unknown|unknown (user|recipient|mailbox)|no such (user|mailbox|recipient|address)"
    r"|mailbox (unavailable|not found|does not exist|is disabled|disabled|full)"
    r"|(address|recipient|user|mailbox|account) (does not exist|doesn't exist|not found"
    r"|is disabled|disabled)|invalid (recipient|mailbox)|unrouteable address"
    r"|undeliverable address|over ?quota", re.I)
_POLICY_WORDS = re.compile(
    r"relay(ing)? (access )?(denied|not permitted|prohibited)|not permitted to relay"
    r"|client host rejected|access denied|authentication required|must authenticate"
    r"|sender address rejected", re.I)
_BUSY_WORDS = re.compile(
    r"too (much mail|many (messages|mails|recipients|connections))|rate.?limit|throttl"
    r"|sending (rate|quota)|slow down", re.I)
POLICY_HINT = ("the relay does not let this host send through it as configured: allow this "
               "host on the relay (Postfix: mynetworks) or log in (smtp.user and "
               "NEWSLETTER_SMTP_PASSWORD, usually on port 587)")


class RelayDown(TransportDown):
    """The relay cannot be reached or refuses every connection: stop, try again later."""


class RelaySetupError(TransportSetupError):
    """The relay refuses us as configured (login, TLS, sender, policy, size)."""


class RelayBusy(TransportBusy):
    """The relay limits our rate as a whole: pause the send, then go on."""


def reply_text(code: int, text: bytes | str) -> str:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {' '.join(text.split())}"


def enhanced_status(reply: str) -> tuple[int, int, int] | None:
    """The RFC 3463 status at the start of a reply's text ("550 5.1.1 …" → (5, 1, 1))."""
    found = _ENHANCED.match(reply, 4)
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


def refusal(code: int, text: bytes | str, stage: str) -> Outcome:
    """The outcome of a refusal at MAIL, RCPT, DATA or the end of DATA; raises RelayBusy or
    RelaySetupError when the refusal is the relay's, not this message's."""
    reply = reply_text(code, text)
    status = enhanced_status(reply)
    words = reply[4:]
    if 400 <= code < 500:
        if stage == "MAIL" or _BUSY_WORDS.search(words):
            raise RelayBusy(f"the relay limits our rate: {reply}")
        return Outcome("deferred", reply)
    if (status is not None and status[1] == 3 and status[2] == 4) or (
            code == 552 and stage != "RCPT" and status is None):
        raise RelaySetupError(f"the relay refused a message as too big: {reply} — raise the "
                              "relay's size limit, or lower digest.max_articles")
    if stage in ("MAIL", "RCPT") and (
            (status is not None and status[1] == 7)
            or ((status is None or status[1] == 0) and _POLICY_WORDS.search(words))):
        raise RelaySetupError(f"the relay refused to take mail at {stage}: {reply} — "
                              f"{POLICY_HINT}")
    if status is not None and status[1] != 0:
        mailbox = status[0] == 5 and status[1] in (1, 2)
    else:
        mailbox = bool(_MAILBOX_WORDS.search(words))
    return Outcome("failed", f"{reply} (at {stage})", bouncing=mailbox)
