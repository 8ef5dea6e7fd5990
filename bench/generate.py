"""Deterministic benchmark data: a site with N realistic entries and M subscribers.

Entries are ~1,000-word Markdown files with front matter and a Key takeaway section, built
from a fixed vocabulary by a seeded generator, so every run of a benchmark sees the same bytes.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

CATEGORIES = ["Heart Health", "Nutrition", "Bones & Joints", "Children's Health", "Neurology",
              "Ageing Well", "Medicines", "Digestive Health", "Sleep", "Mental Health"]
WORDS = """\
patients study blood pressure sleep risk trial evidence clinic doctor exercise
vitamin dose weeks months daily people adults children older heart brain muscle joint pain
treatment medicine review results effect benefit harm symptoms diet fibre sugar salt water
walking reading measure check nurse advice care health common rare small large early late
careful modest strong weak clear unclear useful simple regular safe""".split()  # noqa: SIM905

CONFIG = """\
[site]
title = "Benchmark Clinic Journal"
url = "https://journal.example.org/"
id = "bench-journal"
timezone = "Europe/London"

[digest]
max_articles = {max_articles}

[email]
from = "Benchmark Journal <journal@example.org>"
"""


def sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def paragraph(rng: random.Random) -> str:
    return " ".join(sentence(rng, rng.randint(12, 24)) for _ in range(rng.randint(3, 5)))


def entry(n: int, rng: random.Random, day: date) -> str:
    title = sentence(rng, rng.randint(5, 9))[:-1].title()
    sections = []
    words = 0
    while words < 950:
        heading = sentence(rng, rng.randint(4, 7))[:-1] + "?"
        paragraphs = [paragraph(rng) for _ in range(rng.randint(2, 3))]
        if rng.random() < 0.3:
            paragraphs.append("\n".join(f"- {sentence(rng, 8)}" for _ in range(3)))
        if rng.random() < 0.3:
            paragraphs.append(f"Read [our guide](/guides/{n % 17}/) or "
                              f"[the study](https://example.org/study/{n}).")
        sections.append(f"## {heading}\n\n" + "\n\n".join(paragraphs))
        words += sum(len(p.split()) for p in paragraphs)
    return (
        "---\n"
        f'title: "{title}"\n'
        f"date: {day.isoformat()}\n"
        f'category: "{CATEGORIES[n % len(CATEGORIES)]}"\n'
        f'summary: "{sentence(rng, 18)}"\n'
        f"author: Dr Bench {n % 7}\n"
        f"tags: [{rng.choice(WORDS)}, {rng.choice(WORDS)}]\n"
        "sources:\n"
        f'  - {{title: "Study {n}", url: "https://example.org/studies/{n}"}}\n'
        "---\n\n"
        + "\n\n".join(sections)
        + f"\n\n## Key takeaway\n\n{sentence(rng, 20)} {sentence(rng, 16)}\n"
    )


def make_site(root: Path, entries: int, subscribers: int = 3, max_articles: int = 10) -> Path:
    """Write a site with `entries` entries (one a day back from 2026-11-01) into root."""
    rng = random.Random(20261125)
    articles = root / "articles"
    articles.mkdir(parents=True, exist_ok=True)
    (root / "newsletter.toml").write_text(CONFIG.format(max_articles=max_articles))
    first = date(2026, 11, 1)
    for n in range(entries):
        day = first - timedelta(days=n)
        (articles / f"{day.isoformat()}-entry-{n:05d}.md").write_text(entry(n, rng, day))
    write_subscribers(root / "subscribers.csv", subscribers)
    return root


def write_subscribers(path: Path, count: int) -> None:
    with path.open("w") as f:
        f.write("email,name,categories,status\n")
        for n in range(count):
            f.write(f"reader{n:06d}@example.org,Reader {n},,active\n")


def add_entry(root: Path, n: int, day: date) -> Path:
    path = root / "articles" / f"{day.isoformat()}-new-{n:05d}.md"
    path.write_text(entry(n, random.Random(n), day))
    return path
