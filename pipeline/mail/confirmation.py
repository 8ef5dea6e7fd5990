"""The double opt-in confirmation message: composed from `confirmation.txt.j2` (a site's own
templates/ folder overrides it, as for the digest), written by name into the outbox.

The template's first line is `Subject: …`, then a blank line, then the body. Untrusted text
(the subscriber's name from a public form) goes only into the To header's display name, which
the email package encodes, and into the body as plain text: never into a header of its own.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from pipeline.core.config import Config
from pipeline.core.errors import Problem, TemplateError
from pipeline.core.models import Subscriber

TEMPLATE = "confirmation.txt.j2"
# What confirmation_name() makes: the subscriber's id, a hash of the address, and for a
# confirmation sent again (a signup, a link that expired) the time it was made.
CONFIRMATION_FILE = re.compile(r"confirm-(\d{6,})-[0-9a-f]{16}(?:-\d{10})?\.eml")


def confirmation_name(subscriber: Subscriber, issued: datetime | None = None) -> str:
    """The first confirmation's name is fixed per subscriber (written once, however often a
    run meets them); a later one carries its issue time."""
    who = hashlib.sha256(subscriber.email.lower().encode()).hexdigest()[:16]
    again = f"-{int(issued.timestamp()):010d}" if issued else ""
    return f"confirm-{subscriber.id:06d}-{who}{again}.eml"


def compose_confirmation(config: Config, subscriber: Subscriber, url: str, name: str,
                         now: datetime) -> bytes:
    """The message's bytes; TemplateError names a site's template that does not render."""
    from pipeline.publishing.digest import render_template, template_environment

    text = render_template(template_environment(config), TEMPLATE, {
        "journal": {"title": config.title, "url": config.site_url},
        "name": subscriber.name,
        "email": subscriber.email,
        "confirm_url": url,
        "confirm_days": config.confirm_days,
    })
    head, _, body = text.partition("\n\n")
    if not head.startswith("Subject:") or "\n" in head.strip():
        raise TemplateError(Problem(TEMPLATE, "template", "does not start with one "
                                    "`Subject: …` line and a blank line",
                                    "keep the first two lines as in the default template"))
    message = EmailMessage()
    message["From"] = str(config.from_address)
    message["To"] = formataddr((" ".join(subscriber.name.split()), subscriber.email))
    message["Subject"] = " ".join(head.removeprefix("Subject:").split())
    message["Date"] = format_datetime(now)
    message["Message-ID"] = f"<{name[:-4]}@{config.mail_domain}>"
    message.set_content(body.lstrip("\n"))
    return message.as_bytes(policy=policy.SMTP)
