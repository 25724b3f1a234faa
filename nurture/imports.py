"""Importing leads (CSV) and activities (JSONL): good rows land, bad rows are quarantined
with a reason per row, and each batch commits on its own so a failure loses nothing."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nurture.domain import LEAD_FIELDS, normalise_email

EMAIL_RE = re.compile(r"^[a-z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
                      r"(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$")
TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
REQUIRED_LEAD_COLUMNS = ("email",)
BATCH = 1000


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


def valid_email(value: str) -> bool:
    return len(value) <= 320 and EMAIL_RE.match(value) is not None


def parse_time(value: Any) -> datetime:
    """ISO 8601 to aware UTC; a time without offset is taken as UTC."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("missing timestamp")
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    dt = datetime.fromisoformat(text)
    return (dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt).astimezone(UTC)


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def lead_row(raw: dict[str, str | None]) -> dict[str, Any]:
    """Validate and normalise one CSV row; raises ValueError with the reason."""
    email = normalise_email(raw.get("email") or "")
    if not email:
        raise RowError("missing_email", "email is empty")
    if not valid_email(email):
        raise RowError("invalid_email", f"invalid email {email!r}")
    row: dict[str, Any] = {"email": email, "attributes": {}}
    for key, value in raw.items():
        if key is None:
            raise RowError("extra_values", "more values than header columns")
        key = key.strip()
        value = _clean(value)
        if key == "email" or not key:
            continue
        if key == "company_size":
            if value is not None:
                try:
                    size = int(float(value.replace(",", "")))
                except ValueError:
                    raise RowError("bad_company_size",
                                   f"company_size {value!r} is not a whole number") from None
                if size < 0:
                    raise RowError("bad_company_size", "company_size is negative")
                row["company_size"] = size
            continue
        if key == "timezone":
            if value is not None:
                try:
                    ZoneInfo(value)
                except (ZoneInfoNotFoundError, ValueError):
                    raise RowError("bad_timezone", f"unknown time zone {value!r}") from None
                row["timezone"] = value
            continue
        if key == "created_at":
            if value is not None:
                try:
                    row["created_at"] = parse_time(value)
                except ValueError:
                    raise RowError("bad_created_at",
                                   f"created_at {value!r} is not ISO 8601") from None
            continue
        if key in LEAD_FIELDS:
            row[key] = value
        elif value is not None:
            row["attributes"][key] = value
    return row


def _open_quarantine(path: Path, **kw: Any):
    """Open the quarantine file, creating its directory; a path that cannot be written is
    one clear error rather than a traceback."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", encoding="utf-8", **kw)
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


def import_leads_csv(store, path: Path, quarantine: Path | None = None,
                     progress: Callable[[int], None] | None = None) -> ImportReport:
    """Upsert leads from a CSV by email; quarantine bad rows to `<name>.quarantine.csv`."""
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"{path}: file not found")
    quarantine = quarantine or path.with_name(path.stem + ".quarantine.csv")
    report = ImportReport(file=str(path))
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if not header:
            raise ImportFileError(f"{path}: empty file or no header row")
        missing = [c for c in REQUIRED_LEAD_COLUMNS if c not in header]
        if missing:
            raise ImportFileError(f"{path}: missing required column(s) {', '.join(missing)} in "
                                  f"the header row (found: {', '.join(header)})")
        qwriter = None
        qfile = None
        try:
            def rows() -> Iterator[dict[str, Any]]:
                nonlocal qwriter, qfile
                for raw in reader:
                    report.read += 1
                    try:
                        yield lead_row(raw)
                    except RowError as exc:
                        if qwriter is None:
                            qfile = _open_quarantine(quarantine, newline="")
                            qwriter = csv.writer(qfile)
                            qwriter.writerow(["line", "reason", *header])
                        reason = str(exc)
                        report.quarantined += 1
                        report.reasons[exc.code] = report.reasons.get(exc.code, 0) + 1
                        qwriter.writerow([reader.line_num, reason,
                                          *[raw.get(h, "") for h in (reader.fieldnames or [])]])

            for batch in _batches(rows(), BATCH):
                inserted, updated = store.upsert_leads(batch)
                report.inserted += inserted
                report.updated += updated
                if progress:
                    progress(report.read)
        finally:
            if qfile is not None:
                qfile.close()
                report.quarantine_file = str(quarantine)
    return report


def activity_row(obj: Any) -> dict[str, Any]:
    """Validate one activity object; raises ValueError with the reason."""
    if not isinstance(obj, dict):
        raise RowError("not_an_object", "not a JSON object")
    unknown = set(obj) - {"id", "email", "type", "occurred_at", "properties"}
    if unknown:
        raise RowError("unknown_keys", f"unknown key(s) {', '.join(sorted(unknown))}")
    ext = obj.get("id")
    if not isinstance(ext, str | int) or not str(ext).strip():
        raise RowError("missing_id", "id (external id) is missing")
    email = normalise_email(str(obj.get("email") or ""))
    if not valid_email(email):
        raise RowError("invalid_email", f"invalid email {obj.get('email')!r}")
    typ = obj.get("type")
    if not isinstance(typ, str) or not TYPE_RE.match(typ):
        raise RowError("invalid_type", f"invalid type {typ!r} (lower_snake_case expected)")
    try:
        at = parse_time(obj.get("occurred_at"))
    except (ValueError, TypeError):
        raise RowError("bad_occurred_at",
                       f"occurred_at {obj.get('occurred_at')!r} is not ISO 8601") from None
    props = obj.get("properties") or {}
    if not isinstance(props, dict):
        raise RowError("bad_properties", "properties must be an object")
    return {"id": str(ext).strip()[:200], "email": email, "type": typ, "occurred_at": at,
            "properties": props}


def import_activities_jsonl(store, path: Path, quarantine: Path | None = None,
                            progress: Callable[[int], None] | None = None) -> ImportReport:
    """Insert activities from JSONL; duplicates (same id) are counted, never doubled."""
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"{path}: file not found")
    quarantine = quarantine or path.with_name(path.stem + ".quarantine.jsonl")
    report = ImportReport(file=str(path))
    qfile = None
    try:
        with open(path, encoding="utf-8") as fh:
            def rows() -> Iterator[dict[str, Any]]:
                nonlocal qfile
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    report.read += 1
                    try:
                        try:
                            obj = json.loads(line)
                        except ValueError as exc:
                            raise RowError("invalid_json", f"invalid JSON: {exc.msg}") from None
                        yield activity_row(obj)
                    except RowError as exc:
                        if qfile is None:
                            qfile = _open_quarantine(quarantine)
                        report.quarantined += 1
                        reason = str(exc)
                        report.reasons[exc.code] = report.reasons.get(exc.code, 0) + 1
                        qfile.write(json.dumps({"line": lineno, "reason": reason,
                                                "raw": line.rstrip("\n")}) + "\n")

            for batch in _batches(rows(), BATCH * 5):
                counts = store.insert_activities(batch)
                report.inserted += counts["inserted"]
                report.duplicates += counts["duplicates"]
                report.leads_created += counts["leads_created"]
                if progress:
                    progress(report.read)
    finally:
        if qfile is not None:
            qfile.close()
            report.quarantine_file = str(quarantine)
    return report
