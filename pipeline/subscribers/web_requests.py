"""Reading a request: its form (urlencoded, multipart or JSON), bounded in size, and the one
thing a log line may show of its target."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs

from pipeline.core.languages import N_
from pipeline.subscribers.web_pages import Page

MAX_BODY = 64 * 1024
Form = dict[str, list[str]]


def read_form(environ: dict) -> tuple[Form, bool]:
    """The POST body's fields, and whether it came as JSON (the answer then is JSON too).
    RFC 8058 recommends multipart/form-data for one-click unsubscribes."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        raise Page(413, "too_large")
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    kind = environ.get("CONTENT_TYPE", "").lower()
    if kind.startswith("application/json"):
        return _json_form(raw), True
    if kind.startswith("multipart/form-data"):
        return _multipart(raw, environ.get("CONTENT_TYPE", "")), False
    return parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True), False


def _json_form(raw: bytes) -> Form:
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        raise Page(400, "subscribe_invalid", message=N_("The request is not valid JSON."),
                   data={"ok": False, "error": "not valid JSON"}) from None
    if not isinstance(data, dict):
        raise Page(400, "subscribe_invalid", message=N_("The request is not a JSON object."),
                   data={"ok": False, "error": "expected a JSON object"})
    form: Form = {}
    for key, value in data.items():
        values = value if isinstance(value, list) else [value]
        form[str(key)] = [v for v in values if isinstance(v, str)]
    return form


def _multipart(raw: bytes, kind: str) -> Form:
    from email import message_from_bytes, policy

    message = message_from_bytes(f"Content-Type: {kind}\r\n\r\n".encode("latin-1", "replace")
                                 + raw, policy=policy.HTTP)
    fields: Form = {}
    for part in message.iter_parts() if message.is_multipart() else ():
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True) or b""
            fields.setdefault(str(name), []).append(payload.decode("utf-8", "replace"))
    return fields


def loggable_target(environ: dict) -> str:
    """The path, and the query's parameter names only (a token's value never reaches a log);
    a path segment that holds an @ is hidden too (no addresses in the log)."""
    path = environ.get("PATH_INFO", "") or "/"
    path = "/".join("…@…" if "@" in part else part for part in path.split("/"))
    query = environ.get("QUERY_STRING", "")
    if not query:
        return path
    names = (part.split("=", 1)[0] for part in query.split("&"))
    return path + "?" + "&".join(
        f"{n}=…" if re.fullmatch(r"[A-Za-z0-9_-]{1,32}", n) else "…" for n in names)
