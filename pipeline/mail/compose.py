"""Message assembly: a digest's messages, encoded once, filled in per subscriber.

Building each message with EmailMessage costs ~5 ms (header folding, a pure-Python
quoted-printable pass over ~50 KB, the generator). Everything but the recipient's address,
unsubscribe link and Message-ID is the same for every subscriber, so a `Composer` encodes the
headers, MIME structure and quoted-printable bodies once per digest; each message then only
encodes its few short values. Per-subscriber values are joined to the pre-encoded text with
quoted-printable soft line breaks ("=" CRLF), which decoders remove, so the decoded parts are
exactly the digest with its placeholders filled in. A digest whose HTML is ASCII in short
lines (publishing/seven_bit.py) sends its HTML part as 7bit instead: the same bytes, ~8 %
fewer than quoted-printable.
"""

from __future__ import annotations

import binascii
import hashlib
import html
import re
import textwrap
from collections.abc import Callable
from email import policy
from email.header import Header
from email.utils import format_datetime, formataddr

from pipeline.core.config import Config
from pipeline.core.models import PLACEHOLDERS, Digest, Subscriber
from pipeline.core.text import slugify
from pipeline.entries.sanitise import header_text
from pipeline.mail.tokens import subscriber_token

CRLF = b"\r\n"
SOFT_BREAK = b"=\r\n"
_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS.values()))
_KEY_OF = {placeholder: key for key, placeholder in PLACEHOLDERS.items()}
MAX_NAME = 100  # characters of a display name kept in To
SEVEN_BIT_LINE = 600  # longest static line of an HTML part sent without transfer encoding


def message_prefix(digest: Digest) -> str:
    return f"digest-{digest.id:05d}-{digest.key[:8]}-"


def message_name(digest: Digest, email: str) -> str:
    """Deterministic per (digest, subscriber): a repeated run finds the file it wrote."""
    who = hashlib.sha256(email.lower().encode()).hexdigest()[:16]
    return f"{message_prefix(digest)}{who}.eml"


class Composer:
    """Everything a digest's messages share, encoded once."""

    def __init__(self, digest: Digest, config: Config, secret: bytes) -> None:
        self.digest = digest
        self.config = config
        self.secret = secret
        self.domain = config.mail_domain
        boundary = f"=_{digest.key}".encode()
        fixed = [
            ("From", str(config.from_address)),
            ("Subject", digest.subject),
            ("Date", format_datetime(digest.created)),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]
        if config.reply_to:
            fixed.append(("Reply-To", config.reply_to))
        list_id = _list_id(header_text(config.title),
                           f"{slugify(config.journal_id)}.{self.domain}")
        self.head = b"".join(_header(name, value) for name, value in fixed[:3]) + list_id + \
            b"".join(_header(name, value) for name, value in fixed[3:]) + (
            b"MIME-Version: 1.0\r\n"
            b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\r\n\r\n')

        def part(subtype: str, encoding: str = "quoted-printable") -> bytes:
            return (b"--" + boundary + CRLF
                    + f'Content-Type: text/{subtype}; charset="utf-8"\r\n'.encode()
                    + f"Content-Transfer-Encoding: {encoding}\r\n\r\n".encode())

        self.text = _segments(digest.text)
        self.text_head = part("plain")
        # The digest's HTML is usually ASCII in short lines (publishing/seven_bit.py): then it
        # goes as it is, ~8 % smaller than quoted-printable.
        self.html_7bit = _segments(digest.html, encode=_crlf, join=b"") if _fits_7bit(
            digest.html) else None
        self.html_7bit_head = CRLF + part("html", "7bit")
        self.html = _segments(digest.html)
        self.html_head = CRLF + part("html")
        self.tail = CRLF + b"--" + boundary + b"--" + CRLF
        self.mailto = f"mailto:{config.unsubscribe_mailto}?subject=unsubscribe"
        self.url_template, self.site_url = config.unsubscribe_url, config.site_url
        self.prefix = message_prefix(digest)
        self._check_dots()

    def _check_dots(self) -> None:
        """Whether the shared pieces, with either form of the HTML part, have no line that
        starts with "." (SMTP doubles such dots: core/dot_mark.py): checked once here, so
        each message checks its values only."""
        shared = _dot_free([self.head, self.text_head, *self.text, self.tail])
        self.qp_dot_free = shared and _dot_free([self.html_head, *self.html])
        # 7bit: a value goes within its line, so only _fill_7bit knows where lines begin
        self.seven_bit_dot_free = shared and self.html_7bit is not None and _dot_free(
            [self.html_7bit_head]) and not any(
            isinstance(piece, bytes) and b"\n." in piece for piece in self.html_7bit)

    def compose(self, subscriber: Subscriber) -> bytes:
        """The subscriber's message as RFC 5322 bytes with CRLF line ends."""
        return self.compose_marked(subscriber)[0]

    def compose_marked(self, subscriber: Subscriber) -> tuple[bytes, bool]:
        """compose, and whether no line of the message starts with "." (known without
        searching the message: see core/dot_mark.py)."""
        return self.assemble_marked(subscriber.email, display_name(subscriber), token_of(
            self.secret, subscriber))

    def assemble(self, email: str, name: str, token: str, who: str = "") -> bytes:
        """The message for an address, its display name (display_name) and unsubscribe token:
        compose's work once the subscriber's values are known (the compact outbox stores them
        and assembles each message while sending, with the same bytes). `who`: the address's
        part of message_name, if the caller has it already."""
        return self.assemble_marked(email, name, token, who)[0]

    def assemble_marked(self, email: str, name: str, token: str, who: str = ""
                        ) -> tuple[bytes, bool]:
        """assemble, and whether no line of the message starts with "."."""
        url = self.url_template.format(site_url=self.site_url, token=token)
        if name.isascii():
            to_header = f"To: {formataddr((name, email))}\r\n".encode()
        else:
            to_header = f"To: {_encoded_words(name)}\r\n <{email}>\r\n".encode()
        who = who or hashlib.sha256(email.lower().encode()).hexdigest()[:16]  # message_name
        message_id = f"<{self.prefix}{who}@{self.domain}>"
        values = {"unsubscribe_url": url, "email": email}
        own_head = to_header + (f"Message-ID: {message_id}\r\n"
                                f"List-Unsubscribe: <{url}>,\r\n <{self.mailto}>\r\n").encode()
        text, text_dot_free = _fill(self.text, values, escape=False)
        html_head, html, html_dot_free = self._html_part(values)
        return b"".join((own_head, self.head, self.text_head, text, html_head, html, self.tail)
                        ), text_dot_free and html_dot_free and _dot_free([own_head])

    def frozen(self) -> dict[str, object]:
        """What assemble needs, as JSON-ready values (bytes as Latin-1 text: they are ASCII
        but for nothing); `thawed` builds an assembler from it, without config or secret."""
        def text(value: object) -> object:
            if isinstance(value, bytes):
                return {"b": value.decode("latin-1")}
            if isinstance(value, list):
                return [text(v) for v in value]
            return value
        return {key: text(getattr(self, key)) for key in _FROZEN}

    @classmethod
    def thawed(cls, state: dict[str, object]) -> Composer:
        def value(item: object) -> object:
            if isinstance(item, dict):
                return item["b"].encode("latin-1")
            if isinstance(item, list):
                return [value(v) for v in item]
            return item
        composer = cls.__new__(cls)
        for key in _FROZEN:
            setattr(composer, key, value(state[key]))
        composer._check_dots()
        return composer

    def _html_part(self, values: dict[str, str]) -> tuple[bytes, bytes, bool]:
        """(part head, body, whether the message's shared pieces and this part's values have
        no line that starts with "."): 7bit when the digest allows it and the filled-in
        values keep every line within SMTP's 998 bytes, else quoted-printable."""
        if self.html_7bit is not None:
            filled = _fill_7bit(self.html_7bit, values)
            if filled is not None:
                body, dot_free = filled
                return self.html_7bit_head, body, self.seven_bit_dot_free and dot_free
        body, dot_free = _fill(self.html, values, escape=True)
        return self.html_head, body, self.qp_dot_free and dot_free


# A Composer's state once built: everything assemble reads.
_FROZEN = ("domain", "head", "text", "text_head", "html_7bit", "html_7bit_head", "html",
           "html_head", "tail", "mailto", "url_template", "site_url", "prefix")


def display_name(subscriber: Subscriber) -> str:
    """The name as the To header shows it: one line, plain text, at most MAX_NAME characters."""
    return header_text(subscriber.name)[:MAX_NAME]


def token_of(secret: bytes, subscriber: Subscriber) -> str:
    return subscriber_token(secret, subscriber.id, subscriber.email)


def _header(name: str, value: str) -> bytes:
    """One header line, folded, non-ASCII text RFC 2047-encoded; CR or LF raise ValueError.

    `policy.SMTP.fold_binary(name, str)` alone is not enough: it passes CR/LF through (a new
    header) and leaves a short non-ASCII value raw, then fails to encode it as ASCII.
    """
    name, header = policy.SMTP.header_store_parse(name, value)
    if name == "Subject":
        # The modern folder drops the space between two encoded words where it folds
        # ("Öl — naïve" arrives as "Öl —naïve") and may start a long plain subject on a
        # continuation line (read back with a leading space); the legacy Header does neither.
        charset = "us-ascii" if value.isascii() else "utf-8"
        encoded = Header(value, charset, header_name=name).encode(linesep="\r\n")
        return f"{name}: {encoded}\r\n".encode("ascii")
    return policy.SMTP.fold_binary(name, header)


def _list_id(title: str, list_id: str) -> bytes:
    """`List-Id: Title <id.domain>` (RFC 2919), folded between words when long. The email
    package folds it right after the colon instead, which reads back with a leading space
    ("List-Id:  Title"). A non-ASCII title is RFC 2047-encoded, as the package did."""
    if not title.isascii():
        phrase = _encoded_words(title)
    else:  # folding between words: unfolding gives back the single space
        phrase = "\r\n ".join(textwrap.wrap(title, 66, break_long_words=False,
                                            break_on_hyphens=False))
    if not phrase:
        return f"List-Id: <{list_id}>\r\n".encode("ascii")
    line = f"List-Id: {phrase} <{list_id}>"
    fold = " " if len(line) <= 78 and "\r\n" not in phrase else "\r\n "
    return f"List-Id: {phrase}{fold}<{list_id}>\r\n".encode("ascii")


def _encoded_words(text: str) -> str:
    """RFC 2047 base64 words of at most 75 characters, one per folded line, split between
    characters. (The email package makes words of 76.)"""
    words, chunk = [], b""
    for char in text:
        encoded = char.encode("utf-8")
        if len(chunk) + len(encoded) > 45:  # 45 bytes → 60 base64 characters → a 72-char word
            words.append(chunk)
            chunk = b""
        chunk += encoded
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{binascii.b2a_base64(w, newline=False).decode()}?="
                         for w in words)


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends (binascii: C speed, lines of at most 76)."""
    encoded = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), istext=True)
    return encoded.replace(b"\n", CRLF)


def _fits_7bit(body: str) -> bool:
    """ASCII, and lines short enough that an address and an unsubscribe URL usually fit too
    (each message's filled-in lines are checked again by _fill_7bit)."""
    return body.isascii() and max(map(len, body.split("\n"))) <= SEVEN_BIT_LINE


def _fill_7bit(pieces: list[bytes | str], values: dict[str, str]) -> tuple[bytes, bool] | None:
    """The HTML pieces (7bit form) with the values filled in, HTML-escaped, and whether no
    line starts with "." where a piece begins one or within a value (Composer._check_dots
    checked the pieces' own lines); None if a value would make its line longer than SMTP's
    998 bytes (the static lines were checked once)."""
    out, line, dot_free = [], 0, True  # line: bytes of the line being built so far
    for piece in pieces:
        if isinstance(piece, str):
            data = _crlf(html.escape(values[piece]))
            dot_free = dot_free and b"\n." not in data
        else:
            data = piece
        if line == 0 and data.startswith(b"."):
            dot_free = False
        out.append(data)
        last = data.rfind(CRLF)
        if last < 0:
            line += len(data)
        else:
            if line + data.find(CRLF) > 998:
                return None
            line = len(data) - last - 2
        if line > 998:
            return None
    return b"".join(out), dot_free


def _crlf(text: str) -> bytes:
    """ASCII text as it goes on the wire in a 7bit part; anything else as `&#N;` (HTML)."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("ascii", "xmlcharrefreplace")


def _segments(body: str, encode: Callable[[str], bytes] = _qp, join: bytes = SOFT_BREAK
              ) -> list[bytes | str]:
    """The body split at placeholders: static parts pre-encoded (ending in `join`: for
    quoted-printable a soft break, so the next piece joins without a line end), placeholders
    kept as their keys."""
    pieces: list[bytes | str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(body):
        pieces.append(encode(body[position:match.start()]) + join)
        pieces.append(_KEY_OF[match.group(0)])
        position = match.end()
    pieces.append(encode(body[position:]))
    return pieces


def _fill(pieces: list[bytes | str], values: dict[str, str], *, escape: bool
          ) -> tuple[bytes, bool]:
    """The pieces with the values filled in, quoted-printable, and whether no value starts a
    line with "." (each begins one: it follows a soft line break)."""
    out, dot_free = [], True
    for piece in pieces:
        if isinstance(piece, bytes):
            out.append(piece)
        else:
            value = _qp(html.escape(values[piece]) if escape else values[piece])
            dot_free = dot_free and _dot_free([value])
            out.append(value + SOFT_BREAK)
    return b"".join(out), dot_free


def _dot_free(pieces: list[bytes | str]) -> bool:
    """No line in these pieces starts with "." (each piece counted as beginning a line: a
    cautious answer where one only ends another, never a wrong one)."""
    return not any(isinstance(p, bytes) and (p.startswith(b".") or b"\n." in p)
                   for p in pieces)
