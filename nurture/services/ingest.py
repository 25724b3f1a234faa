"""Importing leads (CSV) and activities (JSONL): good rows land, bad rows are quarantined
with a reason per row, and each batch commits on its own so a failure loses nothing."""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Column

from nurture.core.domain import LEAD_FIELDS
from nurture.core.emails import InvalidEmail, normalize_email
from nurture.store.limits import (
    EARLIEST,
    int_range,
    json_problem,
    string_problem,
    time_problem,
    type_name,
)
from nurture.store.tables import activities as ACTIVITIES
from nurture.store.tables import leads as LEADS

TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
REQUIRED_LEAD_COLUMNS = ("email",)
BATCH = 1000
# one CSV field or JSONL line at most (csv's own default limit, made explicit)
MAX_FIELD_BYTES = 128 * 1024
# bytes that were not UTF-8, as decoded with errors="surrogateescape"
SURROGATE_RE = re.compile("[\udc80-\udcff]")


class RowError(ValueError):
    """One row is bad; `code` groups the quarantine counts, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ImportFileError(Exception):
    """The file as a whole cannot be imported (missing, no header, no email column)."""


@dataclass
class ImportReport:
    file: str
    read: int = 0
    inserted: int = 0
    updated: int = 0
    duplicates: int = 0
    leads_created: int = 0
    quarantined: int = 0
    quarantine_file: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def checked_email(value: str) -> str:
    """The lead key for an imported address (`nurture.core.emails`), or `RowError`."""
    try:
        return normalize_email(value)
    except InvalidEmail as exc:
        raise RowError("invalid_email", f"invalid email {_show(value.strip())}: "
                                        f"{exc.reason}") from None


def parse_time(value: Any) -> datetime:
    """ISO 8601 to aware UTC; a time without offset is taken as UTC. Any value Python cannot
    hold in UTC (year 1 with a positive offset, year 9999 with a negative one) is a
    ValueError like any other bad time, never an OverflowError."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("missing timestamp")
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        dt = datetime.fromisoformat(text)
        return (dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt).astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value!r} is outside the range of dates") from None


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _show(value: Any, limit: int = 60) -> str:
    """A value for a message: short, whatever was sent."""
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[:limit] + "…")
    if isinstance(value, bool | int | float) or value is None:
        text = repr(value)
        return text if len(text) <= limit else text[:limit] + "…"
    return type_name(value)


def whole_number(value: str, column: Column) -> int:
    """A count such as company_size: digits (thousands commas allowed) or an integral
    decimal like `12.0`; non-negative and small enough for `column`. Raises ValueError."""
    text = value.replace(",", "").strip()
    if len(text) > 40:
        raise ValueError("is too large")
    if re.fullmatch(r"[+-]?\d+", text):
        number = int(text)
    else:
        f = float(text)  # ValueError for words
        if not math.isfinite(f) or not f.is_integer():
            raise ValueError("is not a whole number")
        number = int(f)
    _, hi = int_range(column)
    if number < 0:
        raise ValueError("is negative")
    if number > hi:
        raise ValueError(f"is larger than {hi:,}")
    return number


def _time_message(what: str, value: Any, exc: ValueError) -> str:
    if "range of dates" in str(exc):
        return f"{what} {_show(value)} is outside the range of dates"
    return f"{what} {_show(value)} is not ISO 8601"


def _time_field(value: str, what: str, code: str) -> datetime:
    try:
        at = parse_time(value)
    except ValueError as exc:
        raise RowError(code, _time_message(what, value, exc)) from None
    problem = time_problem(at, what)
    if problem:
        raise RowError(code, problem)
    return at


def lead_row(raw: dict[str, str | None]) -> dict[str, Any]:
    """Validate and normalise one CSV row; raises RowError with the reason. Every value is
    checked against the real column (length, range, NUL) so the database never refuses it."""
    for key, value in raw.items():
        if key is None:
            raise RowError("extra_values", "more values than header columns")
        if value is not None and SURROGATE_RE.search(value):
            raise RowError("not_utf8", f"{key or 'a value'} is not valid UTF-8 text")
        if value is not None and "\x00" in value:
            raise RowError("nul_character", f"{key or 'a value'} contains a NUL character")
    raw_email = raw.get("email") or ""
    if not raw_email.strip():
        raise RowError("missing_email", "email is empty")
    email = checked_email(raw_email)
    row: dict[str, Any] = {"email": email, "attributes": {}}
    for key, value in raw.items():
        key = key.strip()
        value = _clean(value)
        if key == "email" or not key:
            continue
        if key == "company_size":
            if value is not None:
                try:
                    row["company_size"] = whole_number(value, LEADS.c.company_size)
                except ValueError as exc:
                    msg = str(exc) if str(exc).startswith("is ") else "is not a whole number"
                    raise RowError("bad_company_size",
                                   f"company_size {_show(value)} {msg}") from None
            continue
        if key == "timezone":
            if value is not None:
                too_long = string_problem(value, LEADS.c.timezone)
                try:
                    if too_long:
                        raise ValueError(too_long)
                    ZoneInfo(value)
                except (ZoneInfoNotFoundError, ValueError, OSError):
                    raise RowError("bad_timezone", f"unknown time zone {_show(value)}") from None
                row["timezone"] = value
            continue
        if key == "created_at":
            if value is not None:
                row["created_at"] = _time_field(value, "created_at", "bad_created_at")
            continue
        if key in LEAD_FIELDS:
            if value is not None and key in LEADS.c:
                problem = string_problem(value, LEADS.c[key])
                if problem:
                    raise RowError("too_long", problem)
            row[key] = value
        elif value is not None:
            row["attributes"][key] = value
    return row


def _open_quarantine(path: Path, **kw: Any):
    """Open the quarantine file, creating its directory; a path that cannot be written is
    one clear error rather than a traceback."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", encoding="utf-8", errors="surrogateescape", **kw)
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot write the quarantine file "
                              f"({exc.strerror or exc})") from None


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Lines:
    """The physical lines a csv reader consumes, remembered per record: a record the
    reader cannot parse is quarantined as its raw text, and lines that an unterminated
    quote swallowed are given back to be read again as the rows they are."""

    def __init__(self, fh: Iterable[str]) -> None:
        self._fh = iter(fh)
        self._back: list[str] = []  # pushed-back lines, last is next
        self.taken: list[str] = []
        self.consumed = 0  # physical lines handed to the reader so far
        self.hit_eof = False

    def __iter__(self) -> _Lines:
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
class _Record:
    line: int                   # first physical line of the record
    fields: list[str] | None    # None: unreadable (see error)
    raw: str
    error: RowError | None = None


def _csv_records(fh: Iterable[str]) -> Iterator[_Record]:
    """CSV records with their line numbers. Never stops early: a record the csv module
    cannot read (a field over MAX_FIELD_BYTES) and a quote that is never closed are
    yielded as errors naming their line, and reading goes on with the next line."""
    lines = _Lines(fh)
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
            msg = str(exc)
            if "field larger than field limit" in msg:
                err = RowError("field_too_large", f"line {first}: a field is larger than "
                               f"{MAX_FIELD_BYTES // 1024} KiB")
            else:
                err = RowError("unreadable_csv", f"line {first}: unreadable CSV ({msg})")
            yield _Record(first, None, taken[0] if taken else "", err)
            continue
        eof, taken = lines.hit_eof, lines.take()
        if eof:
            # a quote opened on `first` and never closed swallowed every later line:
            # quarantine that line, read the rest again as the rows they are
            lines.give_back(taken[1:])
            yield _Record(first, None, taken[0], RowError(
                "unterminated_quote", f"line {first}: a quoted field is never closed "
                "(unbalanced \")"))
            continue
        yield _Record(first, fields, "".join(taken))


def _header(path: Path, record: _Record | None) -> list[str]:
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


def _as_dict(header: list[str], fields: list[str]) -> dict[str | None, Any]:
    """Like csv.DictReader: missing values are None, surplus ones are under None."""
    row: dict[str | None, Any] = dict(zip(header, fields, strict=False))
    for name in header[len(fields):]:
        row[name] = None
    if len(fields) > len(header):
        row[None] = fields[len(header):]
    return row


class _Quarantine:
    """The quarantine file, opened on the first bad row. Bytes that were not UTF-8 are
    written back as they were (surrogateescape), so the file holds the original row."""

    def __init__(self, path: Path, report: ImportReport, csv_header: list[str] | None) -> None:
        self.path, self.report, self.csv_header = path, report, csv_header
        self.fh = None
        self.writer = None

    def add(self, line: int, exc: RowError, values: list[Any] | None = None,
            raw: str | None = None) -> None:
        if self.fh is None:
            self.fh = _open_quarantine(self.path, newline="" if self.csv_header else None)
            if self.csv_header is not None:
                self.writer = csv.writer(self.fh)
                self.writer.writerow(["line", "reason", *self.csv_header])
        self.report.quarantined += 1
        self.report.reasons[exc.code] = self.report.reasons.get(exc.code, 0) + 1
        if self.writer is not None:
            self.writer.writerow([line, str(exc), *(values if values is not None
                                                    else [(raw or "").rstrip("\r\n")])])
        else:
            self.fh.write(json.dumps({"line": line, "reason": str(exc),
                                      "raw": (raw or "").rstrip("\r\n")}) + "\n")

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.report.quarantine_file = str(self.path)


def db_reason(exc: Exception) -> RowError:
    """The database's own reason for refusing a row, as one line."""
    orig = getattr(exc, "orig", None) or exc
    text = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return RowError("database_refused", f"the database refused the row: {text[:300]}")


def import_leads_csv(store, path: Path, quarantine: Path | None = None,
                     progress: Callable[[int], None] | None = None) -> ImportReport:
    """Upsert leads from a CSV by email; quarantine bad rows to `<name>.quarantine.csv`.

    Bad rows never cost good ones: each row is checked against the real columns first, and
    a batch the database still refuses is retried row by row so only the refused row is
    quarantined (with the database's reason)."""
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"{path}: file not found")
    quarantine = quarantine or path.with_name(path.stem + ".quarantine.csv")
    report = ImportReport(file=str(path))
    old_limit = csv.field_size_limit(MAX_FIELD_BYTES)
    # bytes that are not UTF-8 become lone surrogates: that row is quarantined, not the file
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
        try:
            records = _csv_records(fh)
            header = _header(path, next(records, None))
            q = _Quarantine(quarantine, report, header)
            try:
                def rows() -> Iterator[dict[str, Any]]:
                    for rec in records:
                        if rec.fields == []:
                            continue  # a blank line, as csv.DictReader skips them
                        report.read += 1
                        if rec.error is not None:
                            q.add(rec.line, rec.error, raw=rec.raw)
                            continue
                        raw = _as_dict(header, rec.fields)
                        try:
                            yield lead_row(raw) | {"_line": rec.line, "_values": rec.fields}
                        except RowError as exc:
                            q.add(rec.line, exc, values=rec.fields)

                def refused(row: dict[str, Any], exc: Exception) -> None:
                    q.add(row["_line"], db_reason(exc), values=row["_values"])

                for batch in _batches(rows(), BATCH):
                    inserted, updated = store.upsert_leads(batch, on_error=refused)
                    report.inserted += inserted
                    report.updated += updated
                    if progress:
                        progress(report.read)
            finally:
                q.close()
        finally:
            csv.field_size_limit(old_limit)
    return report


def loads_json(text: str) -> Any:
    """json.loads, with nesting too deep for Python's parser as a ValueError like any other
    bad JSON (NaN/Infinity are parsed and refused later, naming the field)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def activity_row(obj: Any, now: datetime | None = None) -> dict[str, Any]:
    """Validate one activity object (every door: JSONL import and the API); raises
    RowError with the reason. Ids longer than the column are refused, never truncated:
    truncation would make distinct ids collide."""
    if not isinstance(obj, dict):
        raise RowError("not_an_object", "not a JSON object")
    unknown = set(obj) - {"id", "email", "type", "occurred_at", "properties"}
    if unknown:
        names = ", ".join(sorted(_show(k, 40) for k in unknown)[:10])
        raise RowError("unknown_keys", f"unknown key(s) {names}")
    ext = obj.get("id")
    # bool is an int subclass: `"id": true` is not an id
    if isinstance(ext, bool) or not isinstance(ext, str | int):
        raise RowError("missing_id" if ext is None else "bad_id",
                       "id (external id) is missing" if ext is None
                       else f"id must be a string or an integer, not {type_name(ext)}")
    ext = str(ext).strip()
    if not ext:
        raise RowError("missing_id", "id (external id) is missing")
    problem = string_problem(ext, ACTIVITIES.c.external_id, "id")
    if problem:
        raise RowError("bad_id", problem)
    raw_email = obj.get("email")
    if not isinstance(raw_email, str):
        raise RowError("invalid_email", f"email must be a string, not {type_name(raw_email)}")
    email = checked_email(raw_email)
    typ = obj.get("type")
    if not isinstance(typ, str) or not TYPE_RE.match(typ) or \
            string_problem(typ, ACTIVITIES.c.type):
        raise RowError("invalid_type", f"invalid type {_show(typ)} (lower_snake_case expected)")
    occurred = obj.get("occurred_at")
    try:
        at = parse_time(occurred)
    except ValueError as exc:
        raise RowError("bad_occurred_at", _time_message("occurred_at", occurred, exc)) from None
    problem = time_problem(at, "occurred_at", now=now)
    if problem:
        raise RowError("future" if at > EARLIEST else "bad_occurred_at", problem)
    props = obj.get("properties")
    props = {} if props is None else props
    if not isinstance(props, dict):
        raise RowError("bad_properties", "properties must be an object")
    problem = json_problem(props, "properties")
    if problem:
        raise RowError("bad_properties", problem)
    return {"id": ext, "email": email, "type": typ, "occurred_at": at, "properties": props}


def _jsonl_lines(fh) -> Iterator[tuple[int, str, bool]]:
    """(line number, text, too_long) per line; a line over MAX_FIELD_BYTES is skipped to
    its end without holding it in memory."""
    lineno = 0
    while True:
        line = fh.readline(MAX_FIELD_BYTES + 1)
        if not line:
            return
        lineno += 1
        if len(line) > MAX_FIELD_BYTES and not line.endswith("\n"):
            head = line[:200]
            while line and not line.endswith("\n"):
                line = fh.readline(1 << 20)
            yield lineno, head, True
            continue
        yield lineno, line, False


def import_activities_jsonl(store, path: Path, quarantine: Path | None = None,
                            progress: Callable[[int], None] | None = None) -> ImportReport:
    """Insert activities from JSONL; duplicates (same id) are counted, never doubled. A bad
    line (not UTF-8, not JSON, too deep, too large, bad values) is quarantined with its
    reason and the rest of the file goes on."""
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"{path}: file not found")
    quarantine = quarantine or path.with_name(path.stem + ".quarantine.jsonl")
    report = ImportReport(file=str(path))
    q = _Quarantine(quarantine, report, None)
    now = datetime.now(UTC)
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            def rows() -> Iterator[dict[str, Any]]:
                for lineno, line, too_long in _jsonl_lines(fh):
                    if not line.strip():
                        continue
                    report.read += 1
                    try:
                        if too_long:
                            raise RowError("line_too_large", f"line {lineno} is larger than "
                                           f"{MAX_FIELD_BYTES // 1024} KiB")
                        if SURROGATE_RE.search(line):
                            raise RowError("not_utf8", f"line {lineno} is not valid UTF-8")
                        try:
                            obj = loads_json(line)
                        except ValueError as exc:
                            msg = getattr(exc, "msg", None) or str(exc)
                            raise RowError("invalid_json", f"invalid JSON: {msg}") from None
                        yield activity_row(obj, now=now) | {"_line": lineno, "_raw": line}
                    except RowError as exc:
                        q.add(lineno, exc, raw=line)

            def refused(row: dict[str, Any], exc: Exception) -> None:
                q.add(row["_line"], db_reason(exc), raw=row["_raw"])

            for batch in _batches(rows(), BATCH * 5):
                counts = store.insert_activities(batch, on_error=refused)
                report.inserted += counts["inserted"]
                report.duplicates += counts["duplicates"]
                report.leads_created += counts["leads_created"]
                if progress:
                    progress(report.read)
    finally:
        q.close()
    return report
