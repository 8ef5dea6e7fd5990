"""The site secret that signs unsubscribe and confirmation tokens, and the ones it replaced."""

from __future__ import annotations

import os
from pathlib import Path

SECRET_ENV = "NEWSLETTER_SECRET"
# During a rotation: the secrets used before, whitespace-separated; tokens made with them still
# work, new mail uses NEWSLETTER_SECRET.
PREVIOUS_SECRETS_ENV = "NEWSLETTER_PREVIOUS_SECRETS"


def load_secret(state_dir: Path) -> bytes:
    """The site secret for unsubscribe tokens: from the environment, else generated once and kept
    in the state folder (never in the repository)."""
    from_env = os.environ.get(SECRET_ENV, "")
    if from_env:
        return from_env.encode()
    path = state_dir / "secret"
    if path.exists():
        return path.read_bytes().strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    import secrets

    value = secrets.token_urlsafe(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(value)
    return value


def load_secrets(state_dir: Path) -> list[bytes]:
    """Every secret a token may have been made with: the current one first."""
    previous = os.environ.get(PREVIOUS_SECRETS_ENV, "").split()
    return [load_secret(state_dir), *(s.encode() for s in previous)]
