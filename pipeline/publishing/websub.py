"""WebSub: tell the site's hub (`feed.websub_hub`) that feeds changed, so readers subscribed
through it get new entries pushed instead of waiting for their next poll.

Best effort: the feeds are already published when the hub is told, so a hub that cannot be
reached (no network, hub down) is a warning for the operator, never a failed run.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

from pipeline import __version__
from pipeline.core.errors import Problem

TIMEOUT = 10.0  # seconds: one request per run; a cron run must not hang on a dead hub


def ping_hub(hub: str, feed_urls: Sequence[str], timeout: float = TIMEOUT) -> list[Problem]:
    """One POST of `hub.mode=publish` with a `hub.url` for each changed feed (the form that
    public hubs accept; WebSub leaves publishing to the hub). Returns warnings, if any."""
    if not hub or not feed_urls:
        return []
    form = [("hub.mode", "publish"), *(("hub.url", url) for url in feed_urls)]
    request = urllib.request.Request(
        hub, data=urllib.parse.urlencode(form).encode("ascii"), method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded",
                 "User-Agent": f"clinic-newsletter/{__version__}"})
    later = "the feeds are published; readers see the new entries at their next poll"
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(4096)
    except urllib.error.HTTPError as exc:
        return [Problem("newsletter.toml", "feed.websub_hub",
                        f"the hub {hub} answered {exc.code} {exc.reason}",
                        f"check the hub's address; {later}", warning=True)]
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return [Problem("newsletter.toml", "feed.websub_hub",
                        f"could not reach the hub {hub}: {reason}", later, warning=True)]
    return []
