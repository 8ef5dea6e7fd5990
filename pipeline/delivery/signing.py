"""The [dkim] table of newsletter.toml, checked; the signer itself is pipeline/mail/dkim.py
(below delivery, because `newsletter run` signs each message as it writes it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.mail.dkim import DkimKey, DkimSettings, DkimSigner

if TYPE_CHECKING:
    from pipeline.core.config import Config
    from pipeline.delivery.settings import Values

__all__ = ["DKIM_SCHEMA", "DkimKey", "DkimSettings", "DkimSigner", "dkim_settings"]

DKIM_SCHEMA: dict[str, object] = {"selector": "", "domain": "", "private_key": "",
                                  "second_selector": "", "second_private_key": ""}


def dkim_settings(values: Values, config: Config) -> DkimSettings | None:
    """The [dkim] table, checked: None when signing is off (no selector and no key set)."""
    keys = []
    for prefix in ("", "second_"):
        selector_key, path_key = f"dkim.{prefix}selector", f"dkim.{prefix}private_key"
        selector, key_name = values.string(selector_key), values.string(path_key)
        if bool(selector) != bool(key_name):
            values.bad(selector_key if key_name else path_key, "is missing",
                       f"DKIM needs both {selector_key} and {path_key} (or neither)")
        if selector and any(c in selector for c in " ;=\\\"'"):
            values.bad(selector_key, f"{selector!r} is not a selector",
                       'use the label of the DNS name, e.g. "news2026"')
        path = values.file(path_key, "the PEM private key")
        if selector and path:
            keys.append(DkimKey(selector, path))
    if values.string("dkim.second_selector") and not values.string("dkim.selector"):
        values.bad("dkim.selector", "is missing", "set the first key before the second")
    domain = values.string("dkim.domain") or config.from_address.domain
    return DkimSettings(domain, tuple(keys)) if keys else None
