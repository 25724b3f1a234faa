"""Importing leads (CSV) and activities (JSONL): good rows land, bad rows are quarantined
with a reason per row, and each batch commits on its own so a failure loses nothing.

This module reads the files, batches rows into the store (`ImportStore`), keeps the
quarantine file and the report; what makes one row good or bad lives in `lead_rows`,
`activity_rows` and `import_rows` (re-exported here for the callers of this module)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from nurture.services.activity_rows import activity_row, loads_json
from nurture.services.csv_records import Record, as_dict, csv_records, lead_header
from nurture.services.import_rows import (
    MAX_FIELD_BYTES,
    SURROGATE_RE,
    ImportFileError,
    RowError,
    checked_email,
    db_reason,
    parse_time,
)
from nurture.services.lead_rows import lead_row, whole_number
from nurture.services.ports import FieldLimits, ImportStore

__all__ = ["BATCH", "ImportFileError", "ImportReport", "RowError", "activity_row",
           "checked_email", "db_reason", "import_activities_jsonl", "import_leads_csv",
           "lead_row", "loads_json", "parse_time", "whole_number"]

BATCH = 1000


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


def _open_quarantine(path: Path, **kw: Any) -> IO[str]:
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


class _Quarantine:
    """The quarantine file, opened on the first bad row. Bytes that were not UTF-8 are
    written back as they were (surrogateescape), so the file holds the original row."""

    def __init__(self, path: Path, report: ImportReport, csv_header: list[str] | None) -> None:
        self.path, self.report, self.csv_header = path, report, csv_header
        self.fh: IO[str] | None = None
        self.writer: Any = None

    def _open(self) -> IO[str]:
        fh = _open_quarantine(self.path, newline="" if self.csv_header else None)
        if self.csv_header is not None:
            self.writer = csv.writer(fh)
            self.writer.writerow(["line", "reason", *self.csv_header])
        return fh

    def add(self, line: int, exc: RowError, values: list[Any] | None = None,
            raw: str | None = None) -> None:
        if self.fh is None:
            self.fh = self._open()
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


def _existing(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"{path}: file not found")
    return path


def _lead_rows(records: Iterator[Record], header: list[str], limits: FieldLimits,
               report: ImportReport, q: _Quarantine) -> Iterator[dict[str, Any]]:
    """The good rows of the CSV, each with its line and raw values (for the quarantine
    file if the database refuses it); bad ones go to `q` as they are met."""
    for rec in records:
        if rec.fields == []:
            continue  # a blank line, as csv.DictReader skips them
        report.read += 1
        if rec.error is not None:
            q.add(rec.line, rec.error, raw=rec.raw)
            continue
        try:
            row = lead_row(as_dict(header, rec.fields), limits)
        except RowError as exc:
            q.add(rec.line, exc, values=rec.fields)
            continue
        yield row | {"_line": rec.line, "_values": rec.fields}


def import_leads_csv(store: ImportStore, path: Path, quarantine: Path | None = None,
                     progress: Callable[[int], None] | None = None) -> ImportReport:
    """Upsert leads from a CSV by email; quarantine bad rows to `<name>.quarantine.csv`.

    Bad rows never cost good ones: each row is checked against the real columns first, and
    a batch the database still refuses is retried row by row so only the refused row is
    quarantined (with the database's reason)."""
    path = _existing(path)
    quarantine = quarantine or path.with_name(path.stem + ".quarantine.csv")
    report = ImportReport(file=str(path))
    old_limit = csv.field_size_limit(MAX_FIELD_BYTES)
    # bytes that are not UTF-8 become lone surrogates: that row is quarantined, not the file
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
            records = csv_records(fh)
            header = lead_header(path, next(records, None))
            q = _Quarantine(quarantine, report, header)
            try:
                def refused(row: dict[str, Any], exc: Exception) -> None:
                    q.add(row["_line"], db_reason(exc), values=row["_values"])

                rows = _lead_rows(records, header, store.limits, report, q)
                for batch in _batches(rows, BATCH):
                    inserted, updated = store.upsert_leads(batch, on_error=refused)
                    report.inserted += inserted
                    report.updated += updated
                    if progress:
                        progress(report.read)
            finally:
                q.close()
    finally:
        csv.field_size_limit(old_limit)
    if report.inserted or report.updated:
        store.refresh_statistics(("leads",))
    return report


def _jsonl_lines(fh: IO[str]) -> Iterator[tuple[int, str, bool]]:
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


def _activity_line(lineno: int, line: str, too_long: bool, limits: FieldLimits,
                   now: datetime) -> dict[str, Any]:
    """One JSONL line as an activity row, or the RowError that quarantines it."""
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
    return activity_row(obj, limits, now=now) | {"_line": lineno, "_raw": line}


def _activity_rows(fh: IO[str], limits: FieldLimits, report: ImportReport,
                   q: _Quarantine) -> Iterator[dict[str, Any]]:
    now = datetime.now(UTC)
    for lineno, line, too_long in _jsonl_lines(fh):
        if not line.strip():
            continue
        report.read += 1
        try:
            yield _activity_line(lineno, line, too_long, limits, now)
        except RowError as exc:
            q.add(lineno, exc, raw=line)


def import_activities_jsonl(store: ImportStore, path: Path, quarantine: Path | None = None,
                            progress: Callable[[int], None] | None = None) -> ImportReport:
    """Insert activities from JSONL; duplicates (same id) are counted, never doubled. A bad
    line (not UTF-8, not JSON, too deep, too large, bad values) is quarantined with its
    reason and the rest of the file goes on."""
    path = _existing(path)
    quarantine = quarantine or path.with_name(path.stem + ".quarantine.jsonl")
    report = ImportReport(file=str(path))
    q = _Quarantine(quarantine, report, None)

    def refused(row: dict[str, Any], exc: Exception) -> None:
        q.add(row["_line"], db_reason(exc), raw=row["_raw"])

    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            for batch in _batches(_activity_rows(fh, store.limits, report, q), BATCH * 5):
                counts = store.insert_activities(batch, on_error=refused)
                report.inserted += counts["inserted"]
                report.duplicates += counts["duplicates"]
                report.leads_created += counts["leads_created"]
                if progress:
                    progress(report.read)
    finally:
        q.close()
    if report.inserted or report.leads_created:
        store.refresh_statistics(("activities", "leads"))
    return report
