"""The envelope sender of each message: one fixed address (`smtp.envelope_from`), or with
`email.return_path` set a VERP address that names the message and its subscriber, so what comes
back is tied to them without reading the bounce's prose (see mail/return_path.py)."""

from __future__ import annotations

import re
from collections.abc import Callable

from pipeline.core.config import Config
from pipeline.core.deliveries import QueuedMessage
from pipeline.state.ledger import Ledger

_CONFIRMATION = re.compile(r"confirm-(\d{6,})-[0-9a-f]{16}\.eml")  # manage.confirmation_name


def envelope_senders(config: Config, ledger: Ledger) -> Callable[[QueuedMessage], str]:
    """A function giving each queued message its MAIL FROM. Called in sending threads: it reads
    only what is loaded here, never the ledger."""
    plain = config.smtp.envelope_from
    if not config.return_path:
        return lambda message: plain
    from pipeline.mail.return_path import return_path
    from pipeline.state.secret import load_secret
    from pipeline.state.subscribers import SubscriberBook

    secret = load_secret(config.state_dir)
    ids = {key: sid for key, (sid, _) in SubscriberBook(ledger).statuses().items()}

    def sender(message: QueuedMessage) -> str:
        subscriber_id = ids.get(message.address.lower())
        if message.digest_id is None:
            made_for = _CONFIRMATION.fullmatch(message.filename)
            subscriber_id = int(made_for[1]) if made_for else None
        if subscriber_id is None:  # not on the list: such a message is withdrawn, not sent
            return plain
        return return_path(config.return_path, secret, message.digest_id, subscriber_id,
                           message.address)

    return sender
