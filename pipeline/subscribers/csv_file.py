"""subscribers.csv: the format an operator edits, imports and exports (the list itself lives in
the ledger, see state/subscribers.py)."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from hashlib import blake2b
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pipeline.core.addresses import normalise_address
from pipeline.core.errors import ConfigError, Problem
from pipeline.core.models import (
    ACTIVE,
    BOUNCED,
    OPTED_OUT,
    STATUSES,
    Subscriber,
    email_key,
    parse_categories,
)
from pipeline.core.text import CONTROL, ILLEGAL, strip_illegal
from pipeline.state.subscribers import ImportRow

if TYPE_CHECKING:
    from pipeline.state.events import Consent

COLUMNS = ("email", "name", "categories", "status")
# Export only (import ignores them): the consent of a signup through the public form.
CONSENT_COLUMNS = ("consent_at", "consent_source", "consent_form", "confirmed_at")
# What spreadsheets take for the start of a formula (=, +, -, @; tab and CR before one).
_FORMULA_START = frozenset("=+-@\t\r")
# Other spellings met in real files (and "bouncing", which the send branch writes).
_STATUS_ALIASES = {"": ACTIVE, "subscribed": ACTIVE, "bouncing": BOUNCED}


def parse_status(text: str) -> str | None:
    status = text.strip().lower()
    status = _STATUS_ALIASES.get(status, status)
    return status if status in STATUSES else None


def load_subscribers(path: Path, shown: Path | str | None = None
                     ) -> tuple[list[Subscriber], list[Problem]]:
    """Every active subscriber in the CSV, and the problems with its rows."""
    problems: list[Problem] = []
    return [s for s in read_rows(path, problems, shown) if s.status == ACTIVE], problems


def read_rows(path: Path, problems: list[Problem], shown: Path | str | None = None
              ) -> Iterator[Subscriber]:
    """Every valid row of a CSV with columns email, name, categories, status, one at a time
    (a six-figure list is never held in memory); problems are appended as met.

    Copes with what spreadsheets write: a BOM, `;` or tab between columns, headers in any
    case, blank lines, the quote `export` puts before a cell a spreadsheet would run.
    Addresses are validated and de-duplicated case-insensitively: the first row wins, except
    that an opt-out (unsubscribed, bounced) wins over an active or pending row for the same
    address wherever it is, with a warning: a person who asked to leave is never mailed
    because an older row says otherwise. A bad row is reported with its line number and
    skipped; control characters in a name or categories are reported and removed. A file
    that cannot be read as a whole (not UTF-8, no `email` column, broken CSV) raises
    ConfigError: going on would build a digest that reaches no one and mark its entries as
    sent.
    """
    for _, email, name, categories, status in read_import_rows(path, problems, shown):
        yield Subscriber(email, name, categories, status)


def read_import_rows(path: Path, problems: list[Problem], shown: Path | str | None = None
                     ) -> Iterator[ImportRow]:
    """read_rows' rows as the ledger's import takes them: the same rows and problems, as
    plain tuples (email_key, email, name, categories, status): a million frozen Subscribers
    would cost a second."""
    shown = shown or path
    if not path.exists():
        problems.append(Problem(shown, "file", "not found",
                                "create it with a header line `email,name,categories,status`",
                                warning=True))
        return
    opted_out: dict[str, tuple[int, str]] = {}  # email_key → (line, status) of its opt-out
    for line, key, status in _opt_outs(path, shown):
        opted_out.setdefault(key, (line, status))
    # A 128-bit digest of each address kept, not the address: a million strings would take
    # ~100 MB, these about half; two addresses colliding (one silently taken for a duplicate)
    # is a chance of about 10^-27 at a million rows, where hash()'s 64 bits gave 10^-8.
    seen: set[int] = set()  # (an int takes 48 bytes, the digest's bytes 56)
    topics: dict[str, tuple[str, ...]] = {}  # a list repeats a few spellings of its categories
    statuses = _STATUS_SPELLINGS.copy()  # a status cell as written → its status (or None)
    illegal = ILLEGAL.search
    for line, (raw, name, text, written) in _cells(path, shown):
        status = statuses.get(written, _UNKNOWN)
        if status is _UNKNOWN:
            status = parse_status(written)
            if len(statuses) < 1000:
                statuses[written] = status
        if status is None:
            problems.append(Problem(shown, "status", f"{raw}: unknown status {written!r}",
                                    f"use one of: {', '.join(STATUSES)}", line=line))
            continue
        try:
            email = normalise_address(raw)
        except ValueError as exc:
            problems.append(Problem(shown, "email", f"{raw!r}: {exc}",
                                    "correct the address or remove the row", line=line))
            continue
        key = email_key(email)
        if opted_out and status not in OPTED_OUT and key in opted_out:
            out_line, out_status = opted_out[key]
            problems.append(Problem(
                shown, "status", f"{email} is {status} here but {out_status} on line {out_line}",
                "the opt-out wins; delete the row you do not mean", line=line, warning=True))
            continue
        hashed = int.from_bytes(blake2b(key.encode(), digest_size=16).digest(), "little")
        if hashed in seen:
            continue
        seen.add(hashed)
        if illegal(name):
            name = _stripped(problems, shown, line, email, "name", name)
        if illegal(text):
            text = _stripped(problems, shown, line, email, "categories", text)
        categories = topics.get(text)
        if categories is None:
            categories = parse_categories(text)
            if len(topics) < 10_000:
                topics[text] = categories
        yield key, email, " ".join(name.split()), categories, status


_UNKNOWN = object()
_STATUS_SPELLINGS: dict[str, str | None] = {s: s for s in STATUSES}


def _stripped(problems: list[Problem], shown: Path | str, line: int, email: str, column: str,
              cell: str) -> str:
    problems.append(Problem(shown, column, f"{email}: contains a control character",
                            "removed; check that row in the file", line=line, warning=True))
    return strip_illegal(cell)


def _opt_outs(path: Path, shown: Path | str) -> Iterator[tuple[int, str, str]]:
    """(line, email_key, status) of each opt-out row: a first pass, so that an opt-out further
    down is known before an earlier row for the same address is taken (and a file that is not
    UTF-8 is refused before any row is taken)."""
    for line, (email, written) in _cells(path, shown, ("email", "status"), opt_outs_only=True):
        status = parse_status(written)
        if status in OPTED_OUT:
            try:
                yield line, email_key(normalise_address(email)), status
            except ValueError:
                continue


def _cells(path: Path, shown: Path | str, columns: tuple[str, ...] = COLUMNS, *,
           opt_outs_only: bool = False) -> Iterator[tuple[int, list[str]]]:
    """(line, cells) of each non-blank row: the cells of `columns` in that order ("" for a
    column the file or the row lacks), stripped of spaces and of the quote that neutralised
    them on export. The file is streamed, never read whole; a row is blank when every cell
    under a header is. `opt_outs_only` passes over rows whose status cannot be an opt-out,
    cheaply (the first pass of a large import sees every row)."""
    with _open_text(path, shown) as f:
        try:
            delimiter = _delimiter(_first_line(f))
            f.seek(0)
            reader = csv.reader(f, delimiter=delimiter)
            names = _columns(reader, shown)
            if "email" not in names:
                raise ConfigError([Problem(shown, "email", "no `email` column",
                                           "start the file with `email,name,categories,status`")])
            width = len(names)
            # Where each column read is (the last of two with one name, as a dict keeps it);
            # -1: the file has no such column.
            wanted = [max((i for i, n in enumerate(names) if n == c), default=-1)
                      for c in columns]
            last = max(wanted)
            status = wanted[-1] if opt_outs_only else -1
            if opt_outs_only and status < 0:
                return
            # All present: one itemgetter takes them (the common case, a row at a time).
            take = itemgetter(*wanted) if min(wanted) >= 0 and len(wanted) > 1 else None
            # A name given twice is read from its last column, and is missing if the row is
            # shorter than that (as csv.DictReader has it): the blank test follows the same.
            distinct = sorted({n: i for i, n in enumerate(names)}.values())
            for row in reader:
                if status >= 0 and (status >= len(row) or not _may_opt_out(row[status])):
                    continue
                if take is not None and len(row) > last:
                    cells = [cell.strip() for cell in take(row)]
                else:
                    cells = [row[i].strip() if 0 <= i < len(row) else "" for i in wanted]
                if not cells[0]:  # no address (columns start with email): blank, or bad
                    if len(distinct) == width:
                        if not "".join(row[:width]).strip():
                            continue
                    elif not any(row[i].strip() for i in distinct if i < len(row)):
                        continue
                for n, cell in enumerate(cells):
                    if cell[:1] == "'":
                        cells[n] = _unquoted(cell)
                yield reader.line_num, cells
        except csv.Error as exc:
            # The reader cannot resume after a syntax error: the rest of the file is suspect.
            raise _broken(exc, reader, shown) from None
        except UnicodeDecodeError:
            _text_of(path, shown)  # raises the ConfigError that names the byte and line
            raise


def _may_opt_out(cell: str) -> bool:
    """False for a status that surely is no opt-out (every spelling of one has these)."""
    low = cell.lower()
    return "unsub" in low or "bounc" in low


def _open_text(path: Path, shown: Path | str) -> io.TextIOWrapper:
    raw = path.open("rb")
    if raw.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        raw.close()
        raise ConfigError([Problem(shown, "file", "is UTF-16, not UTF-8", _UTF8_HINT)])
    raw.seek(0)
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def _first_line(f: io.TextIOWrapper) -> str:
    """The text up to the first \\n (as the whole-file reading this replaced judged it)."""
    text = ""
    while "\n" not in text:
        more = f.read(65536)
        if not more:
            break
        text += more
    return text.partition("\n")[0]


def _unquoted(cell: str) -> str:
    return cell[1:] if cell[:1] == "'" and cell[1:2] in _FORMULA_START else cell


_UTF8_HINT = "export it as \"CSV UTF-8\" (Excel) or save it as UTF-8"


def _text_of(path: Path, shown: Path | str) -> str:
    """The whole file's text: only to locate a decoding error that streaming met."""
    data = path.read_bytes()
    hint = _UTF8_HINT
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:  # guessing (Latin-1? Windows-1252?) would garble names
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError([Problem(shown, "file", f"is not UTF-8 (byte {exc.start})", hint,
                                   line=line)]) from None


def _columns(reader: Any, shown: Path | str) -> list[str]:
    """The header line's names (none if the file is empty)."""
    try:
        return [h.strip().lower() for h in next(reader, [])]
    except csv.Error as exc:
        raise _broken(exc, reader, shown) from None


def _broken(exc: csv.Error, reader: Any, shown: Path | str) -> ConfigError:
    return ConfigError([Problem(shown, "file", f"is not valid CSV ({exc})",
                                "fix that line or export the list again", line=reader.line_num)])


def _delimiter(header: str) -> str:
    """The column separator, judged by the header line alone: csv.Sniffer guesses from data
    rows too, where `;` also separates categories, and then splits a row wrongly."""
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def write_csv(out: TextIO, subscribers: Iterable[Subscriber],
              consents: Mapping[int, Consent] | None = None) -> int:
    """Export in the import format, with the consent columns when `consents` is given
    (subscriber id → their signup's consent); returns the number of rows. Safe to open in a
    spreadsheet: control characters are dropped and a cell that would start a formula gets a
    leading quote (OWASP's advice against CSV injection), which import takes off again."""
    count = 0
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS + (CONSENT_COLUMNS if consents is not None else ()))
    for s in subscribers:
        row: tuple[str, ...] = (s.email, s.name, ";".join(s.categories), s.status)
        if consents is not None:
            c = consents.get(s.id)
            row += ((c.at.isoformat(), c.source, c.form,
                     c.confirmed.isoformat() if c.confirmed else "") if c else ("",) * 4)
        writer.writerow([_neutralised(cell) for cell in row])
        count += 1
    return count


def _neutralised(cell: str) -> str:
    cell = CONTROL.sub("", cell)
    return f"'{cell}" if cell[:1] in _FORMULA_START else cell
