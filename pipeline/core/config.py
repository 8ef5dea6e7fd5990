"""The site's configuration: one frozen value from newsletter.toml, all problems at once."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.core import languages
from pipeline.core.addresses import Mailbox, parse_address
from pipeline.core.bounce_settings import BOUNCES_SCHEMA, BounceSettings, bounce_settings
from pipeline.core.errors import ConfigError, Problem
from pipeline.core.schedule import EXAMPLES, Schedule, ScheduleError, parse_cadence
from pipeline.core.text import strip_illegal

CONFIG_NAME = "newsletter.toml"
STATE_DIR = ".newsletter"

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
        "postal_address": "",
        "return_path": "",
    },
    "subscribers": {"double_opt_in": False, "signup": True, "confirm_days": 7,
                    "allowed_origins": [], "signups_per_client_hour": 20},
    # The job's delivery policy, whatever carries the mail: which backend (its own table, e.g.
    # [smtp], is checked by pipeline.delivery) and how many refusals a send tolerates.
    "delivery": {"backend": "smtp", "fail_threshold": 5},
    "retention": {"days": 30},
    # "maildir": one .eml per subscriber (outbox/new/); "compact": a digest stored once per
    # rendition, its recipients beside it, each message assembled while it is sent
    "outbox": {"mode": "maildir"},
    "bounces": BOUNCES_SCHEMA,
}
OUTBOX_MODES = ("maildir", "compact")
# Every other table ([dkim], a delivery backend's such as [smtp]) belongs to a
# later stage: its raw values are kept in Config.tables and checked by the code that owns it
# when it is used (pipeline.delivery.settings), which also warns about unknown tables.


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
    cadence: str  # "every run", "daily at 06:30"…: when a digest may go out (core/schedule.py)
    from_address: Mailbox
    reply_to: str
    unsubscribe_url: str
    unsubscribe_mailto: str
    reason: str
    warnings: tuple[Problem, ...] = ()
    confirm_url: str = "{site_url}confirm?token={token}"
    double_opt_in: bool = False  # new addresses stay pending until they use the confirm link
    size_budget_kb: int = 90  # warn when a digest's HTML part is larger (Gmail clips at ~102)
    websub_hub: str = ""  # advertised in the feeds and pinged when they change
    logo_url: str = ""  # shown atop the digest, logo_width × logo_height px
    logo_width: int = 160
    logo_height: int = 48
    signup: bool = True  # `serve` offers the public signup form (GET/POST /subscribe)
    confirm_days: int = 7  # a confirmation link works this many days after it was sent
    allowed_origins: tuple[str, ...] = ()  # other sites whose pages may post the signup form
    signups_per_client_hour: int = 20  # signup posts one client (IP address) may make an hour
    # `send` exits 1 only when more than this percentage of the messages it tried failed for
    # good: a hard bounce or two is normal in a large list (providers act at ~5%).
    fail_threshold: float = 5.0
    postal_address: str = ""  # the sender's, in every digest's footer (one line)
    # Sent, withdrawn and failed messages and their delivery details are kept this long.
    retention_days: int = 30
    outbox_mode: str = "maildir"  # or "compact" (pipeline/mail/compact.py)
    delivery_backend: str = "smtp"  # a name in pipeline.delivery.transport.BACKENDS
    return_path: str = ""  # VERP envelope sender template, e.g. bounces+{token}@your.domain
    bounces: BounceSettings = field(default_factory=BounceSettings)
    # The raw values of the tables the core does not own ({table: {key: value}}), and the
    # file's text, so that their owners can name the line of a problem.
    tables: dict[str, dict[str, object]] = field(default_factory=dict, compare=False)
    source: str = field(default="", repr=False, compare=False)

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

    @property
    def schedule(self) -> Schedule:
        return parse_cadence(self.cadence)

    def url_for(self, slug: str) -> str:
        return self.article_url.format(site_url=self.site_url, slug=slug)

    def problem(self, key: str, problem: str, hint: str, warning: bool = False) -> Problem:
        """A problem with `key` ("table.key" or "table") of newsletter.toml, at its line."""
        return Problem(self.site_dir / CONFIG_NAME, key, problem, hint,
                       line=_line_of(self.source, key.split(".")[-1]), warning=warning)


def load_config(site_dir: Path) -> Config:
    """Read `newsletter.toml` in site_dir; raise ConfigError listing every problem found."""
    path = site_dir / CONFIG_NAME
    if not path.is_file():
        raise ConfigError([Problem(
            path, "", "not found, so this folder is not a site",
            "pass --site with the site's folder, or create a site with `newsletter init DIR`",
            line=0)])
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark from Windows editors is fine
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(path, "", f"is not UTF-8 (byte {exc.start})",
                                   "save it as UTF-8 in your editor",
                                   line=data[: exc.start].count(b"\n") + 1)]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib (before 3.14) puts the position only in its message
        at = re.search(r"at line (\d+)", str(exc))
        line = int(at.group(1)) if at else 1
        raise ConfigError([Problem(path, "", f"not valid TOML: {exc}",
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
    tables = {table: section for table, section in raw.items() if table not in SCHEMA}
    config = _build(site_dir, path, text, values, problems)
    errors = [p for p in problems if not p.warning]
    if errors or config is None:
        raise ConfigError(problems)
    return replace(config, tables=tables, source=text)


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

    def percentage(key: str) -> float:
        value = v.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
            bad(key, "must be a percentage from 0 to 100",
                f"e.g. `{key.split('.')[-1]} = 5` (0: any failure fails the send)")
            return 0.0
        return float(value)

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
    language = string("site.language") or "en"
    if not languages.known(language, site_dir):
        problems.append(Problem(
            path, "site.language", f"no catalogue for {language!r}: readers get English",
            f"use one of {', '.join(languages.available(site_dir))}, or add "
            f"{languages.SITE_LOCALES}/{languages.candidates(language)[0]}/LC_MESSAGES/"
            "messages.po (README: Languages)", line=_line_of(text, "language"), warning=True))
    config = Config(
        site_dir=site_dir,
        title=string("site.title"),
        site_url=site_url,
        journal_id=string("site.id"),
        description=string("site.description"),
        language=language,
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
        reason=string("email.reason"),  # empty: the digest says it in the site's language
        warnings=tuple(p for p in problems if p.warning),
        confirm_url=string("email.confirm_url"),
        double_opt_in=v.get("subscribers.double_opt_in") is True,
        size_budget_kb=count("digest.size_budget_kb"),
        websub_hub=string("feed.websub_hub"),
        logo_url=string("email.logo_url"),
        logo_width=count("email.logo_width"),
        logo_height=count("email.logo_height"),
        fail_threshold=percentage("delivery.fail_threshold"),
        delivery_backend=string("delivery.backend").lower() or "smtp",
        # Written over several lines in the TOML, shown on one in the footer.
        postal_address=", ".join(line.strip().rstrip(",") for line in
                                 string("email.postal_address").splitlines() if line.strip()),
        retention_days=count("retention.days"),
        outbox_mode=string("outbox.mode").lower() or "maildir",
        return_path=string("email.return_path"),
        bounces=bounce_settings(site_dir, v, string, bad),
    )
    config = _signup_settings(config, v, bad)
    if not isinstance(v.get("subscribers.double_opt_in"), bool):
        bad("subscribers.double_opt_in", "must be true or false", "e.g. `double_opt_in = true`")
    for key, value in (("feed.websub_hub", config.websub_hub),
                       ("email.logo_url", config.logo_url)):
        if value and not value.startswith(("https://", "http://")):
            bad(key, f"{value!r} is not an absolute URL", "write it as https://…")
    if config.outbox_mode not in OUTBOX_MODES:
        bad("outbox.mode", f"{config.outbox_mode!r} is not an outbox mode",
            'use "maildir" (one .eml per subscriber) or "compact" (for large lists)')
    try:
        parse_cadence(config.cadence)
    except ScheduleError as exc:
        bad("digest.cadence", str(exc), f"use one of: {', '.join(EXAMPLES)}")
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


def _signup_settings(config: Config, v: dict[str, object], bad: Callable[[str, str, str], None]
                     ) -> Config:
    from dataclasses import replace

    signup = v.get("subscribers.signup")
    if not isinstance(signup, bool):
        bad("subscribers.signup", "must be true or false", "e.g. `signup = true`")
    numbers = {}
    for key, default in (("confirm_days", 7), ("signups_per_client_hour", 20)):
        value = v.get(f"subscribers.{key}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            bad(f"subscribers.{key}", "must be a whole number of 1 or more",
                f"e.g. `{key} = {default}`")
            value = default
        numbers[key] = value
    origins = v.get("subscribers.allowed_origins")
    found: list[str] = []
    if not isinstance(origins, list):
        origins = []
        bad("subscribers.allowed_origins", "must be a list of strings",
            'e.g. `allowed_origins = ["https://www.clinic.example"]`')
    for origin in origins:
        text = origin.rstrip("/") if isinstance(origin, str) else ""
        if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d+)?", text):
            bad("subscribers.allowed_origins", f"{origin!r} is not an origin",
                'write scheme and host only, e.g. "https://www.clinic.example"')
            continue
        found.append(text.lower())
    return replace(config, signup=signup is not False, allowed_origins=tuple(found), **numbers)


def _line_of(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith(f"[{key}]") or stripped.split("=")[0].strip() == key:
            return number
    return 1
