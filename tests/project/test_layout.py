"""The package's layout keeps its promises: imports run one way, each concern has one home."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline"

# Lowest first. A module may import from its own subpackage and from any lower layer, never
# from a higher one or a sibling of the same rank: so there can be no cycle between them.
LAYERS = {
    "core": 0,  # values, errors, config, atomic files: what every stage needs
    "state": 1,  # the ledger (the only SQLite), the site lock, the secret
    "entries": 2,  # collect, readers, summarise, sanitise
    "publishing": 3,  # feeds, the digest, web copies, WebSub
    "mail": 4,  # composing messages, segments, the Outbox
    "subscribers": 5,  # the list's rules, signup, the web app
    "delivery": 5,  # transports and sending
    "run": 6,  # one run, top to bottom
    "commands": 7,  # status, check, preview, init
    "cli": 8,  # click commands only
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _group(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "pipeline" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def _modules() -> list[tuple[str, Path]]:
    return [(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts), p)
            for p in sorted(PACKAGE.rglob("*.py"))]


def test_every_module_belongs_to_a_layer() -> None:
    loose = [name for name, _ in _modules()
             if _group(name) is None and name not in ("pipeline.__init__", "pipeline.__main__")]
    assert loose == []


def test_imports_run_one_way() -> None:
    wrong = []
    for name, path in _modules():
        here = _group(name)
        if here is None:
            continue
        for target in _imports(path):
            there = _group(target)
            if there is None or there == here:
                continue
            if LAYERS[there] >= LAYERS[here]:
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def _importers(library: str) -> set[str]:
    return {name for name, path in _modules()
            if any(t == library or t.startswith(library + ".") for t in _imports(path))}


def test_only_the_state_package_touches_sqlite() -> None:
    assert {_group(name) for name in _importers("sqlite3")} == {"state"}


def test_only_the_smtp_transport_speaks_smtp() -> None:
    assert _importers("smtplib") == {"pipeline.delivery.smtp"}
