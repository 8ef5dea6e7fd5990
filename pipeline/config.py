"""The site's configuration: one frozen value from newsletter.toml, all problems at once."""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.utils import parseaddr
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.errors import ConfigError, Problem
from pipeline.smtp_settings import DKIM_SCHEMA, SMTP_SCHEMA, SmtpSettings, smtp_settings

CONFIG_NAME = "newsletter.toml"
STATE_DIR = ".newsletter"
SECRET_ENV = "NEWSLETTER_SECRET"
CADENCES = ("every run", "daily", "weekly")

# Every known key, its default (None: required) and what it is for; unknown keys are warned about.
SCHEMA: dict[str, dict[str, object]] = {
    "site": {
        "title": None,
        "url": None,
        "id": None,
        "description": "",
        "language": "en",
        "timezone": "UTC",
        "author": "",
        "article_url": "{site_url}journal/{slug}/",
    },
    "feed": {"max_items": 50},
    "digest": {"max_articles": 10, "subject": "{journal}: {lead_title}", "cadence": "every run"},
    "email": {
        "from": None,
        "reply_to": "",
        "unsubscribe_url": "{site_url}unsubscribe?token={token}",
        "unsubscribe_mailto": "",
        "reason": "",
    },
    "smtp": SMTP_SCHEMA,
    "dkim": DKIM_SCHEMA,
}


@dataclass(frozen=True)
class Config:
    site_dir: Path
    title: str
    site_url: str  # always ends with "/"
    journal_id: str  # never changes with the domain: feed and entry ids are built from it
    description: str
    language: str
    timezone: ZoneInfo
    author: str
    article_url: str
    feed_max_items: int
    max_articles: int
    subject: str
    cadence: str  # "every run", "daily" or "weekly": how often a digest may go out
    from_address: Address
    reply_to: str
    unsubscribe_url: str
    unsubscribe_mailto: str
    reason: str
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    warnings: tuple[Problem, ...] = ()

    @property
    def articles_dir(self) -> Path:
        return self.site_dir / "articles"

    @property
    def public_dir(self) -> Path:
        return self.site_dir / "public"

    @property
    def outbox_dir(self) -> Path:
        return self.site_dir / "outbox"

    @property
    def state_dir(self) -> Path:
        return self.site_dir / STATE_DIR

    @property
    def templates_dir(self) -> Path:
        return self.site_dir / "templates"

    @property
    def subscribers_file(self) -> Path:
        return self.site_dir / "subscribers.csv"

    @property
    def mail_domain(self) -> str:
        return self.from_address.domain

    def url_for(self, slug: str) -> str:
        return self.article_url.format(site_url=self.site_url, slug=slug)


def load_config(site_dir: Path) -> Config:
    """Read `newsletter.toml` in site_dir; raise ConfigError listing every problem found."""
    path = site_dir / CONFIG_NAME
    if not path.is_file():
        raise ConfigError([Problem(path, "-", "no configuration file",
                                   "run `newsletter init DIR` or pass --site to a site folder")])
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", 1) or 1
        raise ConfigError([Problem(path, "-", f"not valid TOML: {exc}",
                                   "fix the syntax (strings need quotes)", line=line)]) from None
    text = path.read_text(encoding="utf-8")
    problems: list[Problem] = []
    values: dict[str, object] = {}
    for table, keys in SCHEMA.items():
        section = raw.get(table, {})
        if not isinstance(section, dict):
            problems.append(Problem(path, table, "must be a table",
                                    f"write it as [{table}]", line=_line_of(text, table)))
            section = {}
        for key, default in keys.items():
            if key in section:
                values[f"{table}.{key}"] = section[key]
            elif default is None:
                problems.append(Problem(path, f"{table}.{key}", "is required",
                                        f"add `{key} = ...` under [{table}]"))
            else:
                values[f"{table}.{key}"] = default
        for key in section:
            if key not in keys:
                known = ", ".join(keys)
                problems.append(Problem(path, f"{table}.{key}", "unknown key",
                                        f"remove it or check its spelling; known: {known}",
                                        line=_line_of(text, key), warning=True))
    for table in raw:
        if table not in SCHEMA:
            problems.append(Problem(path, table, "unknown table",
                                    f"remove it; known: {', '.join(SCHEMA)}",
                                    line=_line_of(text, table), warning=True))
    config = _build(site_dir, path, text, values, problems)
    errors = [p for p in problems if not p.warning]
    if errors or config is None:
        raise ConfigError(problems)
    return config


def _build(site_dir: Path, path: Path, text: str, v: dict[str, object],
           problems: list[Problem]) -> Config | None:
    def bad(key: str, problem: str, hint: str) -> None:
        problems.append(Problem(path, key, problem, hint, line=_line_of(text, key.split(".")[-1])))

    def string(key: str) -> str:
        value = v.get(key, "")
        if not isinstance(value, str):
            bad(key, f"must be a string, not {type(value).__name__}", "put the value in quotes")
            return ""
        return value.strip()

    def count(key: str) -> int:
        value = v.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            bad(key, "must be a whole number of 1 or more", f"e.g. `{key.split('.')[-1]} = 10`")
            return 1
        return value

    url = string("site.url")
    if url and not url.startswith(("https://", "http://")):
        bad("site.url", f"{url!r} is not an absolute URL", "write it as https://your.domain/")
    site_url = url.rstrip("/") + "/"
    tz_name = string("site.timezone")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        bad("site.timezone", f"unknown timezone {tz_name!r}",
            "use an IANA name like Europe/London")
        tz = ZoneInfo("UTC")
    from_address = _parse_from(string("email.from"))
    if from_address is None and "email.from" in v:
        bad("email.from", "is not a valid address",
            'write it as "Journal Name <journal@your.domain>"')
    article_url = string("site.article_url")
    if "{slug}" not in article_url:
        bad("site.article_url", "has no {slug}", 'e.g. "{site_url}journal/{slug}/"')
    for key in ("site.title", "site.id"):
        if not string(key) and key in v:
            bad(key, "is empty", "give it a value")
    config = Config(
        site_dir=site_dir,
        title=string("site.title"),
        site_url=site_url,
        journal_id=string("site.id"),
        description=string("site.description"),
        language=string("site.language") or "en",
        timezone=tz,
        author=string("site.author"),
        article_url=article_url,
        feed_max_items=count("feed.max_items"),
        max_articles=count("digest.max_articles"),
        subject=string("digest.subject"),
        cadence=string("digest.cadence"),
        from_address=from_address or Address("", "invalid", "invalid.invalid"),
        reply_to=string("email.reply_to"),
        unsubscribe_url=string("email.unsubscribe_url"),
        unsubscribe_mailto=string("email.unsubscribe_mailto")
        or (f"unsubscribe@{from_address.domain}" if from_address else ""),
        reason=string("email.reason")
        or f"You are receiving this because you subscribed to {string('site.title')}.",
        smtp=smtp_settings(site_dir, v, string, bad, from_address),
        warnings=tuple(p for p in problems if p.warning),
    )
    if config.cadence not in CADENCES:
        bad("digest.cadence", f"{config.cadence!r} is not a cadence",
            f"use one of: {', '.join(repr(c) for c in CADENCES)}")
    try:
        config.subject.format(journal="", date="", lead_title="", count=0)
    except (KeyError, IndexError, ValueError) as exc:
        bad("digest.subject", f"unknown field {exc}",
            "use only {journal}, {date}, {lead_title} and {count}")
    for key, template, fields in (
        ("email.unsubscribe_url", config.unsubscribe_url, ("site_url", "token")),
        ("site.article_url", config.article_url, ("site_url", "slug")),
    ):
        try:
            template.format(**dict.fromkeys(fields, ""))
        except (KeyError, IndexError, ValueError) as exc:
            bad(key, f"unknown field {exc}", f"use only {{{'}, {'.join(fields)}}}")
    if "{token}" not in config.unsubscribe_url:
        bad("email.unsubscribe_url", "has no {token}",
            'e.g. "{site_url}unsubscribe?token={token}"')
    return config


def _parse_from(value: str) -> Address | None:
    if not value or "\n" in value or "\r" in value:
        return None
    name, addr = parseaddr(value)
    if addr.count("@") != 1:
        return None
    local, domain = addr.split("@")
    if not local or "." not in domain:
        return None
    return Address(name, local, domain)


def _line_of(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith(f"[{key}]") or stripped.split("=")[0].strip() == key:
            return number
    return 1


def load_secret(state_dir: Path) -> bytes:
    """The site secret for unsubscribe tokens: from the environment, else generated once and kept
    in the state folder (never in the repository)."""
    from_env = os.environ.get(SECRET_ENV, "")
    if from_env:
        return from_env.encode()
    path = state_dir / "secret"
    if path.exists():
        return path.read_bytes().strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(value)
    return value
