"""The entry files under articles/: names, sizes and mtimes, all a no-op run looks at."""

from __future__ import annotations

import os

from pipeline.core.config import Config
from pipeline.core.errors import Problem
from pipeline.entries.readers import READERS


def scan(config: Config, problems: list[Problem] | None = None
         ) -> list[tuple[str, os.stat_result]]:
    """(path relative to the site, stat) of each entry file under articles/, sorted; hidden
    files and folders and other formats ignored. os.scandir rather than
    pathlib: on a 1,000-entry site this walk is a good part of a no-op run.

    A symbolic link is followed only while it stays inside articles/: one that leads out of
    it (its content would be published) or round in a loop is left out, and a problem added
    to `problems`, if given."""
    found: list[tuple[str, os.stat_result]] = []
    refused = problems if problems is not None else []
    root = os.path.realpath(config.site_dir / "articles")
    pending = [("articles", root)]
    seen = {root}  # folders read, by real path: a link back to one would never end
    suffixes = tuple(READERS)  # each a dot and a word: what os.path.splitext would give
    while pending:
        folder, real = pending.pop()
        try:
            entries = list(os.scandir(config.site_dir / folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            name = entry.name
            if name.startswith((".", "_")):
                continue
            target = None
            if entry.is_symlink():
                target = _link_target(entry.path, f"{folder}/{name}", root, refused)
                if target is None:
                    continue
            if entry.is_dir():
                shown = f"{folder}/{name}"
                target = target or os.path.join(real, name)
                if target in seen:
                    refused.append(Problem(shown, "file", "links to a folder already read (a "
                                           "loop)", "remove the link"))
                    continue
                seen.add(target)
                pending.append((shown, target))
            # The name's extension, as os.path.splitext has it (a name never starts with a
            # dot here), in a third of the time: 5,000 names are looked at on every run.
            elif name.lower().endswith(suffixes) and entry.is_file():
                found.append((f"{folder}/{name}", entry.stat()))
    found.sort()
    return found


def _link_target(path: str, shown: str, root: str, problems: list[Problem]) -> str | None:
    """Where a symbolic link under articles/ leads, if it may be followed."""
    try:
        target = os.path.realpath(path, strict=True)
    except FileNotFoundError:
        return None  # leads nowhere: like any other missing file, nothing to read
    except OSError as exc:
        problems.append(Problem(shown, "file", f"is a symbolic link that cannot be followed "
                                f"({exc.strerror}: a loop?)",
                                "remove the link or fix its target"))
        return None
    if os.path.commonpath((root, target)) != root:
        problems.append(Problem(shown, "file", "is a symbolic link that leads outside "
                                "articles/; refused, so nothing outside it is published",
                                "move the file into articles/ instead of linking to it"))
        return None
    return target
