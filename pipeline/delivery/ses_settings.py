"""The [ses] table of newsletter.toml: how `newsletter send` reaches Amazon SES. Apart from
ses.py so that checking the settings never imports boto3.

No credentials here, ever: boto3 finds them in the standard AWS chain (the environment's
AWS_ACCESS_KEY_ID…, a profile named by AWS_PROFILE, or the instance's role). A key that looks
like one in any table of newsletter.toml is an error, so a secret pasted there is noticed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.core.errors import Problem

if TYPE_CHECKING:
    from pipeline.core.config import Config
    from pipeline.delivery.settings import Values

SES_SCHEMA: dict[str, object] = {
    "region": "",
    "configuration_set": "",
    "envelope_from": "",  # where SES forwards bounces and complaints by email
    "connections": 4,
    "rate": 0,  # 0: the account's own maximum send rate, read from SES at each send
    "max_per_run": 0,
    "timeout": 30,
    "retry_after": 60,
    "max_attempts": 10,
}
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")  # eu-west-1, us-gov-west-1, ap-southeast-3
# A configuration set's name: letters, digits, "_" and "-", at most 64 (SES's own rule).
CONFIGURATION_SET = re.compile(r"[A-Za-z0-9_-]{1,64}")
# In [ses], [aws] or [delivery] any of these words; elsewhere, names only AWS would use.
SECRET_KEY = re.compile(r"access|secret|session|token|password|credential", re.IGNORECASE)
AWS_KEY = re.compile(r"aws_|access_key|secret_access", re.IGNORECASE)
CREDENTIALS_HINT = ("remove it (and replace that key, since it sat in a file): give AWS "
                    "credentials through the environment (AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY), a profile (AWS_PROFILE) or the instance's role")


@dataclass(frozen=True)
class SesSettings:
    """How `newsletter send` reaches SES. The credentials are not here: boto3 reads them
    from the AWS chain when the first message is sent."""

    region: str = ""
    configuration_set: str = ""
    from_address: str = ""  # FromEmailAddress: a verified identity (the From header's address)
    envelope_from: str = ""  # FeedbackForwardingEmailAddress: where bounce emails go
    connections: int = 4
    rate: float = 0.0  # our own cap, under the account's rate; 0: the account's rate
    max_per_run: int = 0
    timeout: float = 30.0
    retry_after: float = 60.0
    max_attempts: int = 10


def ses_settings(values: Values, config: Config) -> SesSettings:
    """The [ses] table, checked; problems go to `values.bad` with the rest of the config's."""
    bad = values.bad
    for table, section in config.tables.items():
        for key in section if isinstance(section, dict) else ():
            pattern = SECRET_KEY if table in ("ses", "aws", "delivery") else AWS_KEY
            if pattern.search(key):
                # The unknown-key warning would only repeat this, more mildly.
                values.problems[:] = [p for p in values.problems
                                      if not (p.warning and p.field == f"{table}.{key}")]
                bad(f"{table}.{key}", "AWS credentials never go in newsletter.toml",
                    CREDENTIALS_HINT)
    region = values.string("ses.region").lower()
    if region and not REGION.fullmatch(region):
        bad("ses.region", f"{region!r} is not an AWS region",
            'write the region where your SES identity is verified, e.g. "eu-west-1"')
    configuration_set = values.string("ses.configuration_set")
    if configuration_set and not CONFIGURATION_SET.fullmatch(configuration_set):
        bad("ses.configuration_set", f"{configuration_set!r} is not a configuration set name",
            "use the name shown in the SES console (letters, digits, _ and -)")
    envelope = values.string("ses.envelope_from") or config.from_address.addr_spec
    if envelope and (envelope.count("@") != 1 or any(c in envelope for c in " <>\r\n")):
        bad("ses.envelope_from", f"{envelope!r} is not a bare address",
            'write it as "bounces@your.domain" (no name, no <>)')
    return SesSettings(
        region=region, configuration_set=configuration_set,
        from_address=config.from_address.addr_spec, envelope_from=envelope,
        connections=int(values.number("ses.connections", 1)),
        rate=values.number("ses.rate", 0, False),
        max_per_run=int(values.number("ses.max_per_run", 0)),
        timeout=values.number("ses.timeout", 1, False),
        retry_after=values.number("ses.retry_after", 0, False),
        max_attempts=int(values.number("ses.max_attempts", 1)))


def ses_problems(settings: SesSettings, config: Config) -> list[Problem]:
    """What is missing before anything can be sent through SES."""
    if settings.region:
        return []
    return [config.problem("ses.region", "is not set",
                           'add [ses] with region = "eu-west-1" (where your identity is '
                           "verified)")]
