"""A real IMAP server for the tests: Debian's Dovecot, started on 127.0.0.1 with a throwaway
configuration in a temporary folder (plain auth from a passwd-file, Maildir storage in the same
folder); no system configuration or service is touched. `.ci/run` installs `dovecot-imapd`."""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

USER, PASSWORD = "bounces", "imap-test-password"

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = {uid}
{users}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
mail_location = maildir:{root}/mail/%u/Maildir
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.path.exists(p)), None)


@dataclass
class ImapServer:
    port: int
    root: Path

    def client(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.login(USER, PASSWORD)
        return client

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        client = self.client()
        try:
            for data in messages:
                kind, answer = client.append(f'"{folder}"', None, None, data)
                assert kind == "OK", answer
        finally:
            client.logout()

    def count(self, name: str) -> int:
        """How many messages a folder holds (0 if it does not exist)."""
        client = self.client()
        try:
            kind, data = client.select(f'"{name}"', readonly=True)
            return int(data[0]) if kind == "OK" else 0
        finally:
            client.logout()

    def folder(self, name: str) -> list[bytes]:
        """The messages in a folder, oldest first ([] if it does not exist)."""
        client = self.client()
        try:
            kind, _ = client.select(f'"{name}"', readonly=True)
            if kind != "OK":
                return []
            _, found = client.uid("SEARCH", None, "ALL")  # type: ignore[arg-type]
            messages = []
            for uid in (found[0] or b"").split():
                _, data = client.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
                messages += [part[1] for part in data if isinstance(part, tuple)]
            return messages
        finally:
            client.logout()


@contextmanager
def dovecot(port: int, tls: tuple[Path, Path, int] | None = None) -> Iterator[ImapServer]:
    """Dovecot on 127.0.0.1:port until the block ends; with tls (certificate, key, port) it
    also offers STARTTLS on port and implicit TLS on that port."""
    binary = dovecot_binary()
    assert binary is not None
    root = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
    root.chmod(0o755)  # the mail processes run as an unprivileged user when we are root
    (root / "mail").mkdir()
    if os.getuid() == 0:  # Dovecot refuses uid 0 for mail; its own users run the logins
        uid, gid, users = 65534, 65534, ""
        os.chown(root / "mail", uid, gid)
    else:
        uid, gid = os.getuid(), os.getgid()
        name = pwd.getpwuid(uid).pw_name
        users = f"default_login_user = {name}\ndefault_internal_user = {name}"
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    ssl = "ssl = no"
    if tls is not None:
        ssl = f"ssl = yes\nssl_cert = <{tls[0]}\nssl_key = <{tls[1]}"
    (root / "dovecot.conf").write_text(CONFIG.format(
        root=root, port=port, uid=uid, gid=gid, users=users, ssl=ssl,
        tls_port=tls[2] if tls else 0))
    process = subprocess.Popen([binary, "-F", "-c", str(root / "dovecot.conf")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() \
                        else ""
                    output = process.stdout.read().decode() if process.stdout else ""
                    raise RuntimeError(f"dovecot did not start: {output}{log}") from None
                time.sleep(0.05)
        yield ImapServer(port, root)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)
