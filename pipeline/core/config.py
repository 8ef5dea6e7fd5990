"""The site's configuration: one frozen value from newsletter.toml, all problems at once."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.core.addresses import Mailbox, parse_address
from pipeline.core.bounce_settings import BOUNCES_SCHEMA, BounceSettings, bounce_settings
from pipeline.core.errors import ConfigError, Problem
from pipeline.delivery.smtp_settings import DKIM_SCHEMA, SMTP_SCHEMA, SmtpSettings, smtp_settings
from pipeline.entries.sanitise import strip_illegal

CONFIG_NAME = "newsletter.toml"
FEED_FILES = ("feed.xml", "atom.xml", "feed.json")  # the site feeds, under public/
STATE_DIR = ".newsletter"
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
    "feed": {"max_items": 50, "websub_hub": ""},
    "digest": {"max_articles": 10, "subject": "{journal}: {lead_title}", "cadence": "every run",
               "size_budget_kb": 90},
    "email": {
        "from": None,
        "reply_to": "",
        "unsubscribe_url": "{site_url}unsubscribe?token={token}",
        "unsubscribe_mailto": "",
        "reason": "",
        "confirm_url": "{site_url}confirm?token={token}",
        "logo_url": "",
        "logo_width": 160,
        "logo_height": 48,
        "return_path": "",
    },
    "subscribers": {"double_opt_in": False},
    "smtp": SMTP_SCHEMA,
    "dkim": DKIM_SCHEMA,
    "bounces": BOUNCES_SCHEMA,
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
    from_address: Mailbox
    reply_to: str
    unsubscribe_url: str
    unsubscribe_mailto: str
    reason: str
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    warnings: tuple[Problem, ...] = ()
    confirm_url: str = "{site_url}confirm?token={token}"
    double_opt_in: bool = False  # new addresses stay pending until they use the confirm link
    size_budget_kb: int = 90  # warn when a digest's HTML part is larger (Gmail clips at ~102)
    websub_hub: str = ""  # advertised in the feeds and pinged when they change
    logo_url: str = ""  # shown atop the digest, logo_width × logo_height px
    logo_width: int = 160
    logo_height: int = 48
    return_path: str = ""  # VERP envelope sender template, e.g. bounces+{token}@your.domain
    bounces: BounceSettings = field(default_factory=BounceSettings)

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
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark from Windows editors is fine
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(path, "-", f"is not UTF-8 (byte {exc.start})",
                                   "save it as UTF-8 in your editor",
                                   line=data[: exc.start].count(b"\n") + 1)]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib (before 3.14) puts the position only in its message
        at = re.search(r"at line (\d+)", str(exc))
        line = int(at.group(1)) if at else 1
        raise ConfigError([Problem(path, "-", f"not valid TOML: {exc}",
                                   "fix the syntax (strings need quotes)", line=line)]) from None
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
        found = Problem(path, key, problem, hint, line=_line_of(text, key.split(".")[-1]))
        if found not in problems:  # a value read twice is reported once
            problems.append(found)

    def string(key: str) -> str:
        value = v.get(key, "")
        if not isinstance(value, str):
            bad(key, f"must be a string, not {type(value).__name__}", "put the value in quotes")
            return ""
        if strip_illegal(value) != value:  # they break the feed's XML and the MJML compile
            bad(key, "contains a control character", "remove it (escapes like \\u0001 too)")
            return strip_illegal(value).strip()
        return value.strip()

    def link(key: str) -> str:
        """A URL or URL template: it goes into headers and XML attributes, so no spaces."""
        value = string(key)
        if any(c.isspace() for c in value):
            bad(key, "contains a space or line break", "remove it (write a space as %20)")
        return value

    def address(key: str, *, required: bool = False,
                example: str = '"Journal Name <journal@your.domain>"') -> Mailbox | None:
        value = string(key)
        found, reason = parse_address(value)
        if found is None and (value or (required and key in v)):
            bad(key, f"{value!r} is not one valid address ({reason})", f"write it as {example}")
        return found

    def count(key: str) -> int:
        value = v.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            bad(key, "must be a whole number of 1 or more", f"e.g. `{key.split('.')[-1]} = 10`")
            return 1
        return value

    url = link("site.url")
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
    from_address = address("email.from", required=True)
    reply_to = address("email.reply_to")
    mailto = address("email.unsubscribe_mailto", example='"unsubscribe@your.domain"')
    if mailto is not None and mailto.display_name:
        bad("email.unsubscribe_mailto", "must be a bare address",
            'write it as "unsubscribe@your.domain"')
    article_url = link("site.article_url")
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
        from_address=from_address or Mailbox("", "invalid@invalid.invalid"),
        reply_to=str(reply_to) if reply_to else "",
        unsubscribe_url=link("email.unsubscribe_url"),
        unsubscribe_mailto=mailto.addr_spec if mailto
        else (f"unsubscribe@{from_address.domain}" if from_address else ""),
        reason=string("email.reason")
        or f"You are receiving this because you subscribed to {string('site.title')}.",
        smtp=smtp_settings(site_dir, v, string, bad, from_address),
        warnings=tuple(p for p in problems if p.warning),
        confirm_url=string("email.confirm_url"),
        double_opt_in=v.get("subscribers.double_opt_in") is True,
        size_budget_kb=count("digest.size_budget_kb"),
        websub_hub=string("feed.websub_hub"),
        logo_url=string("email.logo_url"),
        logo_width=count("email.logo_width"),
        logo_height=count("email.logo_height"),
        return_path=string("email.return_path"),
        bounces=bounce_settings(site_dir, v, string, bad),
    )
    if not isinstance(v.get("subscribers.double_opt_in"), bool):
        bad("subscribers.double_opt_in", "must be true or false", "e.g. `double_opt_in = true`")
    for key, value in (("feed.websub_hub", config.websub_hub),
                       ("email.logo_url", config.logo_url)):
        if value and not value.startswith(("https://", "http://")):
            bad(key, f"{value!r} is not an absolute URL", "write it as https://…")
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
        ("email.confirm_url", config.confirm_url, ("site_url", "token")),
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


def _line_of(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith(f"[{key}]") or stripped.split("=")[0].strip() == key:
            return number
    return 1
