"""Reading a lead CSV record by record without ever stopping early: each record keeps its
line number and raw text, so a record the csv module cannot read is quarantined as it was
and the rows after it are still imported."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nurture.services.import_rows import MAX_FIELD_BYTES, SURROGATE_RE, ImportFileError, RowError

REQUIRED_LEAD_COLUMNS = ("email",)


class Lines:
    """The physical lines a csv reader consumes, remembered per record: a record the
    reader cannot parse is quarantined as its raw text, and lines that an unterminated
    quote swallowed are given back to be read again as the rows they are."""

    def __init__(self, fh: Iterable[str]) -> None:
        self._fh = iter(fh)
        self._back: list[str] = []  # pushed-back lines, last is next
        self.taken: list[str] = []
        self.consumed = 0  # physical lines handed to the reader so far
        self.hit_eof = False

    def __iter__(self) -> Lines:
        return self

    def __next__(self) -> str:
        if self._back:
            line = self._back.pop()
        else:
            try:
                line = next(self._fh)
            except StopIteration:
                self.hit_eof = True
                raise
        self.taken.append(line)
        self.consumed += 1
        return line

    def take(self) -> list[str]:
        out, self.taken = self.taken, []
        self.hit_eof = False
        return out

    def give_back(self, lines: list[str]) -> None:
        self._back.extend(reversed(lines))
        self.consumed -= len(lines)


@dataclass(slots=True)
class Record:
    line: int                   # first physical line of the record
    fields: list[str] | None    # None: unreadable (see error)
    raw: str
    error: RowError | None = None


def _unreadable(first: int, exc: csv.Error) -> RowError:
    msg = str(exc)
    if "field larger than field limit" in msg:
        return RowError("field_too_large", f"line {first}: a field is larger than "
                        f"{MAX_FIELD_BYTES // 1024} KiB")
    return RowError("unreadable_csv", f"line {first}: unreadable CSV ({msg})")


def csv_records(fh: Iterable[str]) -> Iterator[Record]:
    """CSV records with their line numbers. Never stops early: a record the csv module
    cannot read (a field over MAX_FIELD_BYTES) and a quote that is never closed are
    yielded as errors naming their line, and reading goes on with the next line."""
    lines = Lines(fh)
    reader = csv.reader(lines)
    while True:
        first = lines.consumed + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            taken = lines.take()
            # the rest of a multi-line record is read again as records of its own
            lines.give_back(taken[1:])
            yield Record(first, None, taken[0] if taken else "", _unreadable(first, exc))
            continue
        eof, taken = lines.hit_eof, lines.take()
        if eof:
            # a quote opened on `first` and never closed swallowed every later line:
            # quarantine that line, read the rest again as the rows they are
            lines.give_back(taken[1:])
            yield Record(first, None, taken[0], RowError(
                "unterminated_quote", f"line {first}: a quoted field is never closed "
                "(unbalanced \")"))
            continue
        yield Record(first, fields, "".join(taken))


def lead_header(path: Path, record: Record | None) -> list[str]:
    """The header row's column names, or `ImportFileError` when the file cannot be read as
    leads at all (empty, unreadable header, a column twice, no email column)."""
    if record is None or not record.fields or not any(h.strip() for h in record.fields):
        raise ImportFileError(f"{path}: empty file or no header row")
    if record.error is not None:
        raise ImportFileError(f"{path}: the header row cannot be read: {record.error}")
    if SURROGATE_RE.search(record.raw) or "\x00" in record.raw:
        raise ImportFileError(f"{path}: the header row is not valid UTF-8 text")
    header = [h.strip() for h in record.fields]
    seen: dict[str, int] = {}
    for i, name in enumerate(header, 1):
        if name and name in seen:
            raise ImportFileError(f"{path}: column {name!r} appears twice in the header row "
                                  f"(columns {seen[name]} and {i}); remove one and retry")
        seen.setdefault(name, i)
    missing = [c for c in REQUIRED_LEAD_COLUMNS if c not in header]
    if missing:
        raise ImportFileError(f"{path}: missing required column(s) {', '.join(missing)} in "
                              f"the header row (found: {', '.join(header)})")
    return header


def as_dict(header: list[str], fields: list[str]) -> dict[str | None, Any]:
    """Like csv.DictReader: missing values are None, surplus ones are under None."""
    row: dict[str | None, Any] = dict(zip(header, fields, strict=False))
    for name in header[len(fields):]:
        row[name] = None
    if len(fields) > len(header):
        row[None] = fields[len(header):]
    return row
