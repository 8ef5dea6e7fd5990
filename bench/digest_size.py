"""The size of a 10-entry digest's message, as `newsletter run` writes it to outbox/new/.

    python bench/digest_size.py [--entries 10]

Target: ≤ 45 KB for the whole message (headers, text part, HTML part), with nothing a
reader sees lost: compare `newsletter preview --png FILE --width 600` and `--width 375`
before and after any change to the template or the inliner. Two sites: the benchmark's
generated entries (bench/generate.py) and the repository's own sample articles.
"""

from __future__ import annotations

import argparse
import email
import shutil
import tempfile
from email import policy
from pathlib import Path

from generate import make_site
from measure import REPO, run_cli


def message_sizes(site: Path) -> tuple[int, int, int, str]:
    """(message bytes, HTML bytes decoded, text bytes decoded, HTML transfer encoding)."""
    run_cli("run", "--site", str(site), "--quiet")
    raw = next((site / "outbox" / "new").glob("*.eml")).read_bytes()
    message = email.message_from_bytes(raw, policy=policy.default)
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    assert html_part is not None and text_part is not None
    return (len(raw), len(html_part.get_content().encode()),
            len(text_part.get_content().encode()), str(html_part["Content-Transfer-Encoding"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-digest-size-") as tmp:
        generated = make_site(Path(tmp) / "generated", args.entries)
        sample = make_site(Path(tmp) / "sample", 0)
        shutil.copytree(REPO / "articles", sample / "articles", dirs_exist_ok=True)
        worst = 0
        for label, site in (("generated entries", generated), ("sample articles", sample)):
            size, html, text, encoding = message_sizes(site)
            worst = max(worst, size)
            print(f"{label}: message {size:,} bytes (HTML part {html:,} bytes, {encoding}; "
                  f"text part {text:,} bytes)")
    print(f"largest message {worst / 1000:.1f} KB; target 45 KB: "
          f"{'meets' if worst <= 45_000 else 'MISSES'}")


if __name__ == "__main__":
    main()
