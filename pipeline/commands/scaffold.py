"""`newsletter init`: a new site that runs as it is, with example.org values to replace."""

from __future__ import annotations

import secrets
from datetime import date
from pathlib import Path

from pipeline.publishing.feed_types import FEEDS

CONFIG = """\
# newsletter.toml: the site's settings. Secrets never go here: the unsubscribe secret comes
# from the NEWSLETTER_SECRET environment variable (or is generated once into .newsletter/).

[site]
title = "Example Clinic Health Journal"
# Where public/ is served: feeds are at {{url}}{feeds}.
url = "https://journal.example.org/"
# Never change this: feed and entry ids are built from it, so readers see no duplicates
# even when the domain changes.
id = "{journal_id}"
description = "Evidence-minded health notes from the Example Clinic."
# The readers' language: the digest's, the web pages' and the confirmation's words and dates
# ("en" or "de" are shipped; see "Languages" in the README to add one).
language = "en"
# The site's clock (an IANA name such as "Europe/London"; UTC is also the default): dates
# without a time or offset, and the times in digest.cadence, are on it.
timezone = "UTC"
author = "Example Clinic"
# Where each article lives on the web site; {{site_url}} and {{slug}} are filled in.
article_url = "{{site_url}}journal/{{slug}}/"

[feed]
max_items = 50

[digest]
# At most this many entries in one digest, newest first.
max_articles = 10
# Fields: {{journal}}, {{date}}, {{lead_title}}, {{count}}.
subject = "{{journal}}: {{lead_title}}"
# When a digest may go out: "every run", "daily", "weekly", "daily at 06:30",
# "weekly on Tuesday at 07:00" or "monthly on the 1st at 08:00" (on site.timezone's clock).
cadence = "every run"

[email]
from = "Example Clinic Journal <journal@example.org>"
reply_to = ""
# The unsubscribe link in every message; {{token}} identifies the subscriber without their address.
unsubscribe_url = "{{site_url}}unsubscribe?token={{token}}"
unsubscribe_mailto = "unsubscribe@example.org"
# The footer's line on why the reader gets this. Unset, it is "You are receiving this because
# you subscribed to <site.title>." in site.language; set, it is shown as written.
# reason = "You are receiving this because you asked for the Example Clinic Health Journal."
# The sender's postal address, shown in every digest's footer (bulk-mail rules ask for one).
# postal_address = "Example Clinic, 1 High Street, Exampletown EX1 1AA, United Kingdom"

# `newsletter send` hands the outbox to your SMTP relay. The password comes only from the
# NEWSLETTER_SMTP_PASSWORD environment variable. Try it with `newsletter send --test you@…`.
# [smtp]
# host = "smtp.example-provider.net"
# tls = "starttls"        # port 587; "implicit" for 465; "none" only for a relay on this machine
# user = "journal@example.org"
# rate = 0                # messages per second (0: as fast as the relay takes them)
# max_per_run = 0         # cap per send, for daily quotas (0: none)
#
# DKIM signing, with the public key published at <selector>._domainkey.<your domain>:
# [dkim]
# selector = "news2026"
# private_key = ".newsletter/dkim.pem"
"""

ARTICLE = """\
---
title: "Welcome to the journal"
date: {today}
category: News
summary: A first entry to show how articles are written.
author: Example Clinic
tags: [welcome]
takeaways:
  - Each entry is a Markdown file in articles/ with a few fields at the top.
  - The digest shows these takeaways; without them it uses the entry's own words.
---

Write the article here in **Markdown**. Headings, lists and links all work.

## What happens next?

Run `newsletter run`: the feeds go to `public/`, and one message per subscriber to `outbox/new/`.
"""

SUBSCRIBERS = "email,name,categories,status\nreader@example.org,Example Reader,,active\n"

GITIGNORE = "public/\noutbox/\npreview/\n.newsletter/\ndeploy/newsletter.env\n"


def scaffold(directory: Path) -> list[Path]:
    """Write the new site's files; refuses to overwrite an existing config."""
    config_path = directory / "newsletter.toml"
    if config_path.exists():
        raise FileExistsError(config_path)
    files = {
        config_path: CONFIG.format(journal_id=f"example-clinic-journal-{secrets.token_hex(4)}",
                                   feeds=_feed_names()),
        directory / "articles" / "welcome.md": ARTICLE.format(today=date.today().isoformat()),
        directory / "subscribers.csv": SUBSCRIBERS,
        directory / ".gitignore": GITIGNORE,
    }
    for path, text in files.items():
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)


def _feed_names() -> str:
    """The feed files as a sentence ("a, b and c"), as the feed table has them."""
    *rest, last = (feed.name for feed in FEEDS)
    return f"{', '.join(rest)} and {last}" if rest else last
