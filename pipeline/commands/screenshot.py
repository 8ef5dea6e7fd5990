"""A full-page screenshot of an HTML file, taken by the system's headless Chromium.

Chromium's own `--screenshot` flag captures only the window, and its windows are never narrower
than 500 px, so it cannot show a phone-width email. Instead we drive it over the DevTools
protocol on a pipe (`--remote-debugging-pipe`: JSON messages ending in NUL on fds 3 and 4; no
port, no extra library): emulate the width, load the page, measure it, capture all of it.

Host names never resolve: a preview fetches nothing (a remote logo shows as its alt text in a
box of its own size, as in a mail client that blocks images), and it cannot reach the network.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM_ENV = "NEWSLETTER_CHROMIUM"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
INSTALL_HINT = (
    "install Chromium from your OS packages (Debian: `sudo apt-get install chromium`, Ubuntu: "
    "`sudo apt-get install chromium-browser`, Fedora: `sudo dnf install chromium`), or set "
    "NEWSLETTER_CHROMIUM to a Chrome or Chromium binary")
MAX_HEIGHT = 16_000  # px; a 10-entry digest at 320 px is ~6,000
FLAGS = (
    "--headless", "--disable-gpu", "--disable-quic", "--no-first-run", "--no-default-browser-check",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--hide-scrollbars", "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


class ChromiumMissing(Exception):
    def __init__(self) -> None:
        super().__init__(f"no Chromium found for the screenshot: {INSTALL_HINT}")


class ScreenshotError(Exception):
    """Chromium started but the screenshot failed (message carries its last words)."""


@dataclass(frozen=True)
class Shot:
    png: bytes
    width: int  # the viewport width the page was laid out at
    height: int  # the whole page's height: the PNG is width × height
    content_width: int  # wider than `width` means something did not shrink to fit


def find_chromium() -> str | None:
    """NEWSLETTER_CHROMIUM if set (and runnable), else the first browser on PATH."""
    chosen = os.environ.get(CHROMIUM_ENV, "")
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else shutil.which(chosen)
    return next(filter(None, (shutil.which(name) for name in CANDIDATES)), None)


def screenshot(page: Path, width: int, *, dark: bool = False, timeout: float = 90.0) -> Shot:
    """Lay `page` out `width` px wide (in dark mode if asked) and capture the whole of it."""
    binary = find_chromium()
    if binary is None:
        raise ChromiumMissing()
    with (tempfile.TemporaryDirectory(prefix="newsletter-chromium-") as profile,
          _Browser(binary, Path(profile), time.monotonic() + timeout) as browser):
        return _capture(browser, page.resolve().as_uri(), width, dark)


def _capture(browser: _Browser, url: str, width: int, dark: bool) -> Shot:
    target = browser.call("Target.createTarget", url="about:blank")["targetId"]
    session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def page(method: str, **params: Any) -> dict[str, Any]:
        return browser.call(method, session=session, **params)

    def viewport(height: int) -> None:
        page("Emulation.setDeviceMetricsOverride", width=width, height=height,
             deviceScaleFactor=1, mobile=False)

    page("Page.enable")
    viewport(800)
    if dark:
        page("Emulation.setEmulatedMedia",
             features=[{"name": "prefers-color-scheme", "value": "dark"}])
    page("Page.navigate", url=url)
    browser.wait_for("Page.loadEventFired", session)
    measured = page("Runtime.evaluate", returnByValue=True, expression=(
        "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"))
    content_width, height = measured["result"]["value"]
    height = max(1, min(int(height), MAX_HEIGHT))
    viewport(height)  # the whole page in the viewport: nothing sized by vh moves
    shot = page("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
    return Shot(base64.b64decode(shot["data"]), width, height, int(content_width))


class _Browser:
    """One headless Chromium, spoken to over the DevTools pipe."""

    def __init__(self, binary: str, profile: Path, deadline: float) -> None:
        self.deadline = deadline
        self.next_id = 0
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        to_browser, self.commands = os.pipe()
        self.replies, from_browser = os.pipe()

        def give_fds() -> None:  # in the child: our pipe ends become its fds 3 and 4
            read_end = fcntl.fcntl(to_browser, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_browser, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        # Chromium refuses to start its sandbox as root; elsewhere keep it.
        sandbox = ("--no-sandbox",) if os.geteuid() == 0 else ()
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        self.process = subprocess.Popen(
            [binary, *FLAGS, *sandbox, f"--user-data-dir={profile}", "--remote-debugging-pipe",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr,
            # Not close_fds: it would run after give_fds and close 3 and 4 again. Python opens
            # every other fd close-on-exec, so nothing else leaks into the browser.
            preexec_fn=give_fds, close_fds=False)
        os.close(to_browser)
        os.close(from_browser)

    def __enter__(self) -> _Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            os.write(self.commands, b'{"id":0,"method":"Browser.close"}\0')
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self.commands)
            os.close(self.replies)
            self.stderr.close()

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        try:
            os.write(self.commands, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise self._failed(f"{method}: Chromium exited") from None
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise ScreenshotError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, event: str, session: str) -> None:
        while True:
            for seen in self.events:
                if seen["method"] == event and seen.get("sessionId") == session:
                    self.events.remove(seen)
                    return
            self.events.append(self._read())

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.replies], [], [], left)[0]:
                raise self._failed("Chromium did not answer in time")
            chunk = os.read(self.replies, 1 << 20)
            if not chunk:
                raise self._failed("Chromium exited")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def _failed(self, what: str) -> ScreenshotError:
        self.stderr.seek(0)
        lines = [line for line in self.stderr.read().decode(errors="replace").splitlines()
                 if line.strip() and "dbus" not in line.lower()]
        return ScreenshotError(f"{what}" + (f": {lines[-1]}" if lines else ""))

