"""The digest as a reader sees it, this checkout against another: screenshots at 600 and 375 px,
light and dark, of the next digest of the two sites bench/digest_size.py measures, compared
pixel by pixel (needs Chromium, and Pillow from the test extra).

    git archive main | tar -x -C /tmp/before          # the code to compare against
    python bench/digest_screens.py /tmp/before [--keep DIR]

Each checkout renders the same sites (`newsletter preview --png`, which records nothing), so
the only difference is the code. Prints, per screenshot, whether the sizes match and how many
pixels differ; exits 1 when any does. --keep DIR leaves the PNGs and HTML there to look at.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from generate import make_site
from measure import ENV, NEWSLETTER, REPO
from PIL import Image, ImageChops

SHOTS = [(width, dark) for width in (600, 375) for dark in (False, True)]


def screenshots(checkout: Path, site: Path, out: Path) -> None:
    env = dict(ENV, PYTHONPATH=str(checkout))
    for width, dark in SHOTS:
        png = out / f"{site.name}-{width}-{'dark' if dark else 'light'}.png"
        done = subprocess.run([*NEWSLETTER, "preview", "--site", str(site), "--png", str(png),
                               "--width", str(width), *(["--dark"] if dark else [])],
                              cwd=checkout, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"preview with {checkout} failed:\n{done.stderr}")
    shutil.copy(site / "preview" / "digest.html", out / f"{site.name}.html")


def differing(one: Path, two: Path) -> str | None:
    """None when the two images are the same pixels, else what differs."""
    a, b = Image.open(one).convert("RGB"), Image.open(two).convert("RGB")
    if a.size != b.size:
        return f"size {a.size[0]}x{a.size[1]} against {b.size[0]}x{b.size[1]}"
    box = ImageChops.difference(a, b).getbbox()
    if box is None:
        return None
    diff = ImageChops.difference(a, b).crop(box)
    count = sum(1 for y in range(diff.height) for x in range(diff.width)
                if diff.getpixel((x, y)) != (0, 0, 0))
    return f"{count} pixels differ, within {box}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", type=Path, help="the checkout to compare against")
    parser.add_argument("--keep", type=Path, help="leave the screenshots in this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-digest-screens-") as tmp:
        root = Path(tmp)
        sites = [make_site(root / "generated", 10), make_site(root / "sample", 0)]
        shutil.copytree(REPO / "articles", sites[1] / "articles", dirs_exist_ok=True)
        shots = args.keep or root / "shots"
        for label, checkout in (("other", args.other.resolve()), ("this", REPO)):
            (shots / label).mkdir(parents=True, exist_ok=True)
            for site in sites:
                screenshots(checkout, site, shots / label)
        changed = 0
        for png in sorted((shots / "other").glob("*.png")):
            what = differing(png, shots / "this" / png.name)
            changed += what is not None
            size = "x".join(map(str, Image.open(png).size))
            print(f"{png.stem} ({size}): {what or 'the same pixels'}")
    print(f"{len(SHOTS) * 2 - changed} of {len(SHOTS) * 2} screenshots unchanged")
    sys.exit(1 if changed else 0)


if __name__ == "__main__":
    main()
