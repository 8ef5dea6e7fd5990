"""`newsletter check`: validate the config, every entry, the subscriber list and the
templates. Writes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline.core.config import CONFIG_NAME, Config, load_config
from pipeline.core.errors import ConfigError, Problem, TemplateError
from pipeline.delivery.settings import delivery_settings
from pipeline.entries.collect import collect_articles
from pipeline.mail.outbox_folders import HISTORY, Outbox
from pipeline.publishing.digest import render_digest, size_problems
from pipeline.state.ledger import open_ledger
from pipeline.state.secret import SECRET_FILE, secret_warnings
from pipeline.subscribers.csv_file import load_subscribers


@dataclass
class CheckReport:
    ready: int  # entries that would be published
    problems: list[Problem] = field(default_factory=list)
    upcoming: list[datetime] = field(default_factory=list)  # entries waiting for their date

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]


def check_site(site: Path, now: datetime | None = None) -> CheckReport:
    """Every problem a run would meet; raises ConfigError when the config itself is unusable."""
    now = now or datetime.now(UTC)
    config = load_config(site)
    upcoming: list[datetime] = []
    articles, problems = collect_articles(config, now, upcoming=upcoming)
    try:
        _, subscriber_problems = load_subscribers(config.subscribers_file,
                                                  config.subscribers_file.relative_to(site))
    except ConfigError as exc:  # an unreadable list stops a run; here it is one more problem
        subscriber_problems = exc.problems
    problems = [*config.warnings, *problems, *subscriber_problems, *sending_problems(config),
                *secret_warnings(config.state_dir, config.state_dir.relative_to(site) /
                                 SECRET_FILE, _mailed_before(config))]
    if articles:
        try:
            html, _ = render_digest(articles[: config.max_articles], now, config)
            problems += size_problems(html, config)
        except TemplateError as exc:
            problems.append(exc.problem)
    return CheckReport(len(articles), problems, sorted(upcoming))


def sending_problems(config: Config) -> list[Problem]:
    """The delivery tables' problems (sending is not needed to publish, so they are reported
    with the rest), and what bulk mail needs that a site that only publishes feeds does not."""
    try:
        problems = list(delivery_settings(config).warnings)
    except ConfigError as exc:
        problems = list(exc.problems)
    what = "smtp.host" if config.delivery_backend == "smtp" else "delivery.backend"
    sending = what != "smtp.host" or bool(config.tables.get("smtp", {}).get("host"))
    if sending and not config.postal_address:
        problems.append(Problem(
            config.site_dir / CONFIG_NAME, "email.postal_address",
            f"is not set, but sending is ({what})",
            'add `postal_address = "Clinic name, street, town, postcode"` under [email]: '
            "CAN-SPAM and many national rules ask bulk mail to carry the sender's postal "
            "address in its footer", warning=True))
    return problems


def _mailed_before(config: Config) -> bool:
    """Whether links signed with the site secret have gone out (or wait in the outbox)."""
    outbox = Outbox(config.outbox_dir)
    if any(outbox.count(state) for state in ("new", *HISTORY)):
        return True
    if any((config.public_dir / "digests").glob("*.html")):
        return True
    with open_ledger(config.state_dir, read_only=True) as ledger:
        return bool(ledger.digest_count())
