"""The envelope sender of each message: one fixed address (the backend's envelope_from), or with
`email.return_path` set a VERP address that names the message and its subscriber, so what comes
back is tied to them without reading the bounce's prose (see mail/return_path.py)."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.core.config import Config
from pipeline.core.deliveries import QueuedMessage
from pipeline.mail.confirmation import CONFIRMATION_FILE
from pipeline.state.ledger import Ledger


def envelope_senders(config: Config, ledger: Ledger, plain: str
                     ) -> Callable[[QueuedMessage], str]:
    """A function giving each queued message its MAIL FROM (`plain`, the backend's envelope
    sender, unless email.return_path is set). Called in sending threads: it reads only what is
    loaded here, never the ledger."""
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
            made_for = CONFIRMATION_FILE.fullmatch(message.filename)
            subscriber_id = int(made_for[1]) if made_for else None
        if subscriber_id is None:  # not on the list: such a message is withdrawn, not sent
            return plain
        return return_path(config.return_path, secret, message.digest_id, subscriber_id,
                           message.address)

    return sender
