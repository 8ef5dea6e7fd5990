"""`newsletter init --systemd`: the service and timer units for `run` and `serve`, filled in
for one site, written to its deploy/ folder for the operator to install (never into /etc:
that needs root and a look first). The unit texts ship in pipeline/commands/units/."""

from __future__ import annotations

import os
import sys
from importlib.resources import files
from pathlib import Path

UNITS = ("newsletter.service", "newsletter.timer", "newsletter-serve.service")
ENV_FILE = "newsletter.env"  # placeholders only; installed as /etc/newsletter/newsletter.env
DEPLOY = "deploy"


def newsletter_command() -> str:
    """How systemd should start this installation's `newsletter`."""
    script = Path(sys.executable).parent / "newsletter"  # the virtualenv's entry point
    return str(script) if script.exists() else f"{sys.executable} -m pipeline"


def _escaped(path: str) -> str:
    """A path as systemd reads it in ExecStart= and WorkingDirectory=: % doubled, quoted if
    it has a space."""
    path = path.replace("%", "%%")
    return f'"{path}"' if any(c.isspace() for c in path) else path


def write_units(site: Path, user: str, newsletter: str | None = None
                ) -> list[tuple[Path, bool]]:
    """Write the units and the environment file's template into SITE/deploy/; returns
    (path, written), False for a file that was already there (never overwritten)."""
    site = site.resolve()
    deploy = site / DEPLOY
    deploy.mkdir(parents=True, exist_ok=True)
    values = {"site": _escaped(str(site)), "workdir": str(site).replace("%", "%%"),
              "deploy": str(deploy), "user": user,
              "newsletter": newsletter or newsletter_command()}
    done = []
    for name in (*UNITS, ENV_FILE):
        path = deploy / name
        if path.exists():
            done.append((path, False))
            continue
        text = (files("pipeline.commands") / "units" / name).read_text(encoding="utf-8")
        # The env file may hold secrets once edited: 0600 from its first byte.
        mode = 0o600 if name == ENV_FILE else 0o644
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text.format(**values))
        done.append((path, True))
    return done
