"""Checks `newsletter check` makes beyond reading the config, entries and templates."""

from __future__ import annotations

from pipeline.core.config import CONFIG_NAME, Config
from pipeline.core.errors import Problem


def sending_problems(config: Config) -> list[Problem]:
    """What bulk mail needs that a site that only publishes feeds does not."""
    problems = []
    if config.smtp.host and not config.postal_address:
        problems.append(Problem(
            config.site_dir / CONFIG_NAME, "email.postal_address",
            "is not set, but sending is (smtp.host)",
            'add `postal_address = "Clinic name, street, town, postcode"` under [email]: '
            "CAN-SPAM and many national rules ask bulk mail to carry the sender's postal "
            "address in its footer", warning=True))
    return problems
