"""Deeply nested entries: reading and sanitising any entry up to the size limit in ≤ 1 s.

    python bench/nesting.py [--repeat 3]

Each case is one entry file just under the 1 MB limit, read as a run reads it (read_entry)
and then its body rendered and sanitised (what a feed or digest that shows it does). CPU time
and wall time, medians. Cases: 199,000 nested `<div>`s (the issue's 155 s; refused now, with
a problem line), and entries nested exactly as deep as allowed (MAX_DEPTH) all the way
through, with the elements the HTML parser handles slowest (formatting elements, list items,
plain blocks), which are read and shown. Then Markdown that is nearly all markup (images,
list items, brackets, table rows; 2-14 s each for markdown-it-py at 1 MB: refused past
MAX_MARKUP), the same shapes filled up to just under MAX_MARKUP and padded with prose to 1 MB
(the slowest entries that are shown), and a megabyte of prose.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generate import CONFIG

from pipeline.core.config import load_config
from pipeline.core.errors import EntryError
from pipeline.entries.entry_file import MAX_ENTRY_BYTES, read_entry
from pipeline.entries.markup_budget import MAX_MARKUP, markup_count
from pipeline.entries.nesting import MAX_DEPTH

HEAD = "---\ntitle: Nested\ndate: 2026-11-01\n---\n\n"


def filled(unit: str) -> str:
    room = MAX_ENTRY_BYTES - len(HEAD) - 10
    return HEAD + unit * (room // len(unit))


def at_budget(unit: str) -> str:
    """`unit` repeated to just under MAX_MARKUP markup characters, then prose to 1 MB."""
    per_unit = markup_count(unit)
    body = unit * ((MAX_MARKUP - 10) // per_unit) + "\n\n"
    room = MAX_ENTRY_BYTES - len(HEAD) - 10 - len(body)
    return HEAD + body + "word " * (room // 5)


def nested(open_: str, close: str, depth: int) -> str:
    return open_ * depth + "x" + close * depth + "\n"


CASES = {
    "199,000 nested <div> (refused)": HEAD + "<div>" * 199_000 + "x",
    f"<div> {MAX_DEPTH} deep, repeated": filled(nested("<div>", "</div>", MAX_DEPTH)),
    f"<b> {MAX_DEPTH} deep, repeated": filled(nested("<b>", "</b>", MAX_DEPTH)),
    f"<b><i> {MAX_DEPTH} deep, repeated": filled(nested("<b><i>", "</i></b>", MAX_DEPTH // 2)),
    f"<ul><li> {MAX_DEPTH} deep, repeated": filled(nested("<ul><li>", "</li></ul>",
                                                          MAX_DEPTH // 2)),
    f"<span> {MAX_DEPTH} deep, repeated": filled(nested("<span>", "</span>", MAX_DEPTH)),
    "unclosed <p> and <li>, 1 MB": filled("<p>x<li>y"),
    "images ![a](b), 1 MB (refused)": filled("![a](b) "),
    "list items, 1 MB (refused)": filled("- a\n"),
    "brackets, 1 MB (refused)": filled("["),
    "table rows, 1 MB (refused)": filled("|a|b|\n|-|-|\n"),
    "images up to the markup budget, then prose": at_budget("![a](b) "),
    "list items up to the markup budget, then prose": at_budget("- a\n"),
    "brackets up to the markup budget, then prose": at_budget("[a "),
    "table rows up to the markup budget, then prose": at_budget("|a|b|\n|-|-|\n"),
    f"<b> {MAX_DEPTH} deep up to the markup budget, then prose":
        at_budget(nested("<b>", "</b>", MAX_DEPTH)),
    "prose, 1 MB": filled("word "),
}


def once(site: Path, path: Path) -> tuple[float, float, str]:
    config = load_config(site)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        article, _ = read_entry(path, Path(path.name), config)
        outcome = f"shown, {len(article.body_html):,} bytes of HTML" if article else "draft"
    except EntryError as exc:
        outcome = f"refused: {exc.problem}"
    return time.perf_counter() - wall, time.process_time() - cpu, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-nesting-") as tmp:
        site = Path(tmp)
        (site / "newsletter.toml").write_text(CONFIG.format(max_articles=10))
        (site / "articles").mkdir()
        worst = 0.0
        for n, (label, text) in enumerate(CASES.items()):
            path = site / "articles" / f"case-{n}.md"
            path.write_text(text)
            runs = [once(site, path) for _ in range(args.repeat)]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            worst = max(worst, cpu)
            print(f"{label} ({len(text.encode()):,} bytes): median {wall:.3f} s wall, "
                  f"{cpu:.3f} s CPU (n={args.repeat}); {runs[0][2]}")
    print(f"slowest case: {worst:.3f} s CPU; target 1 s: {'meets' if worst <= 1 else 'MISSES'}")


if __name__ == "__main__":
    main()
