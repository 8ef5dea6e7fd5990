"""The site secret that signs unsubscribe and confirmation tokens, and the ones it replaced.

A weak key makes every subscriber's link forgeable, so a secret that is short, a placeholder
or an empty file stops the command (ConfigError: exit 78) rather than being used."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from pipeline.core.errors import ConfigError, Problem
from pipeline.state.connection import PRIVATE_FILE, private_dir

SECRET_ENV = "NEWSLETTER_SECRET"
# During a rotation: the secrets used before, whitespace-separated; tokens made with them still
# work, new mail uses NEWSLETTER_SECRET.
PREVIOUS_SECRETS_ENV = "NEWSLETTER_PREVIOUS_SECRETS"
SECRET_FILE = "secret"
MIN_BYTES = 32
# Words that mark an example value copied from documentation, not a secret.
PLACEHOLDERS = ("change-me", "changeme", "change_me", "replace-me", "replaceme", "your-secret",
                "placeholder", "example", "secret-here")
MAKE_ONE = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def load_secret(state_dir: Path) -> bytes:
    """The site secret for tokens: from the environment, else generated once and kept in the
    state folder (never in the repository). Raises ConfigError for a weak one."""
    from_env = os.environ.get(SECRET_ENV, "")
    if from_env:
        value = from_env.strip().encode()
        _check(value, "environment", SECRET_ENV,
               f"put a random value of {MIN_BYTES}+ bytes in the job's 0600 environment file, "
               f"e.g. from `{MAKE_ONE}`")
        return value
    path = state_dir / SECRET_FILE
    if not path.exists():
        _generate(path)
    value = path.read_bytes().strip()
    _check(value, path, "secret",
           "the file was cut short (a full disk or a power cut while it was written?): restore "
           "it from your backup; or delete it and run again to generate a new one (links in "
           "messages already sent then stop working)")
    return value


def load_secrets(state_dir: Path) -> list[bytes]:
    """Every secret a token may have been made with: the current one first."""
    previous = os.environ.get(PREVIOUS_SECRETS_ENV, "").split()
    return [load_secret(state_dir), *(s.encode() for s in previous)]


def secret_problem(value: bytes) -> str | None:
    """Why the value must not sign tokens, or None."""
    if not value:
        return "is empty"
    lowered = value.decode(errors="replace").lower()
    if any(word in lowered for word in PLACEHOLDERS):
        return "is a placeholder copied from an example, not a secret"
    if len(value) < MIN_BYTES:
        return f"is {len(value)} bytes long; at least {MIN_BYTES} are needed"
    return None


def secret_warnings(state_dir: Path, shown_as: Path, mailed_before: bool) -> list[Problem]:
    """What `check` says about the secret the next command would use, without making one:
    a weak NEWSLETTER_SECRET or secret file (every command that needs it stops with exit 78),
    or no secret at all on a site that has mailed links signed with one (the next run would
    make a new one and every link already sent would stop working). `shown_as` is the secret
    file's path as the operator sees it (relative to the site)."""
    stops = "every command that signs or checks links (run, send, serve, bounces, subscribers) " \
            "stops with exit 78 until then"
    from_env = os.environ.get(SECRET_ENV, "")
    if from_env:
        problem = secret_problem(from_env.strip().encode())
        return [] if problem is None else [Problem(
            "environment", SECRET_ENV, problem,
            f"put a random value of {MIN_BYTES}+ bytes in the job's 0600 environment file "
            f"(e.g. from `{MAKE_ONE}`), or unset it to use {shown_as}; {stops}",
            line=0, warning=True)]
    path = state_dir / SECRET_FILE
    try:
        value = path.read_bytes().strip()
    except FileNotFoundError:
        if not mailed_before:
            return []  # the first command that needs one makes it
        return [Problem(
            shown_as, "", f"is missing and {SECRET_ENV} is not set, but this site has mailed "
            "links signed with a secret",
            f"restore {shown_as} from your backup, or set {SECRET_ENV} to the value the site "
            "used: the next run would make a new secret, and every unsubscribe and "
            "confirmation link already sent would stop working", line=0, warning=True)]
    except OSError as exc:
        return [Problem(shown_as, "", f"cannot be read ({exc.strerror})",
                        f"give the user the commands run as read access (mode 0600); {stops}",
                        line=0, warning=True)]
    problem = secret_problem(value)
    return [] if problem is None else [Problem(
        shown_as, "", problem,
        "restore it from your backup, or delete it to have a new one made (links in mail "
        f"already sent then stop working), or set {SECRET_ENV}; {stops}",
        line=0, warning=True)]


def _check(value: bytes, where: Path | str, field: str, hint: str) -> None:
    problem = secret_problem(value)
    if problem is not None:
        raise ConfigError([Problem(where, field, problem, hint)])


def _generate(path: Path) -> None:
    """Write a new secret whole or not at all: a temporary file, synced, then linked into
    place (a second process that got there first wins, and both use its secret)."""
    import secrets

    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=".secret.", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_urlsafe(32).encode())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, PRIVATE_FILE)
        with contextlib.suppress(FileExistsError):  # another process made one first
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
