"""Imports: leads upserted by email and activities stored once each (unique external id).

Every write that could be repeated — a re-imported file, two importers at once — is made safe
by a unique constraint (ON CONFLICT), never by a read-then-write race. A batch the database
refuses for one row's sake is retried row by row when the caller can report refused rows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Engine, case, cast, exists, func, literal, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import InterfaceError, OperationalError, StatementError

from nurture.store import tables as t
from nurture.store.db import write_tx
from nurture.store.pg_copy import ACTIVITIES_STAGE, LEADS_STAGE, copy_rows
from nurture.store.rows import IN_BATCH, LEAD_COLUMNS, chunks, insert_ignore, upsert

# A batch the database refuses for one row's sake (a value it cannot store, a constraint)
# is retried row by row; connection trouble (OperationalError) is not a row's fault.
_ROW_ERRORS = StatementError
RowRefused = Callable[[dict[str, Any], Exception], None]


def upsert_leads(engine: Engine, rows: list[dict[str, Any]],
                 on_error: RowRefused | None = None) -> tuple[int, int]:
    """Insert or update leads by normalised email in one transaction (one batch).

    One INSERT … ON CONFLICT (email) DO UPDATE: a lead another process creates at the
    same moment is updated, never a unique violation that aborts the batch. Empty values
    never erase what is stored; custom attributes are merged; updated leads are flagged
    for the next cycle and their `version` bumped. When the database refuses the batch
    anyway and `on_error` is given, rows are retried one by one and each refused row is
    passed to `on_error(row, exc)` instead of failing the rest. Returns (inserted,
    updated)."""
    by_email: dict[str, dict[str, Any]] = {}
    sources: dict[str, list[dict[str, Any]]] = {}
    for row in rows:  # the same email twice in one batch: later values win
        merged = by_email.setdefault(row["email"], {"attributes": {}})
        attrs = merged["attributes"] | (row.get("attributes") or {})
        merged.update({k: v for k, v in row.items()
                       if v is not None and not k.startswith("_")})
        merged["attributes"] = attrs
        sources.setdefault(row["email"], []).append(row)
    if not by_email:
        return 0, 0
    try:
        with write_tx(engine) as conn:
            return _upsert_leads(engine, conn, list(by_email.values()))
    except _ROW_ERRORS as exc:
        if on_error is None or isinstance(exc, OperationalError | InterfaceError):
            raise
    inserted = updated = 0
    for email, row in by_email.items():
        try:
            with write_tx(engine) as conn:
                i, u = _upsert_leads(engine, conn, [row])
        except _ROW_ERRORS as exc:
            if isinstance(exc, OperationalError | InterfaceError):
                raise
            for source in sources[email]:
                on_error(source, exc)
            continue
        inserted, updated = inserted + i, updated + u
    return inserted, updated

def _upsert_leads(engine: Engine, conn, rows: list[dict[str, Any]]) -> tuple[int, int]:
    now = datetime.now(UTC)
    L = t.leads
    if engine.dialect.name == "postgresql" and len(rows) > 1:
        # a batch: COPY into the staging table, merged by one INSERT … SELECT below
        stmt, values = postgresql.insert(L).from_select(*_staged_leads(conn, rows, now)), None
    else:
        stmt, values = upsert(engine, L), [_lead_values(row, now) for row in rows]
    ex = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[L.c.email],
        set_={**{c: func.coalesce(ex[c], L.c[c]) for c in LEAD_COLUMNS if c != "email"},
              "attributes": _merged_attributes(engine, ex.attributes),
              "updated_at": ex.updated_at, "next_check_at": None,
              "version": L.c.version + 1})
    # a fresh row has version 0; an updated one was just bumped to 1 or more
    stmt = stmt.returning(L.c.version)
    result = conn.execute(stmt) if values is None else conn.execute(stmt, values)
    versions = result.scalars().all()
    inserted = sum(1 for v in versions if v == 0)
    return inserted, len(versions) - inserted


def _lead_values(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    created = row.get("created_at") or now
    return {**{c: row.get(c) for c in LEAD_COLUMNS}, "attributes": row.get("attributes") or {},
            "created_at": created, "updated_at": now, "lifecycle_stage": "new",
            "stage_entered_at": created, "recycle_count": 0}


_FIRST_TOUCH = {"first_source": "source", "first_utm_source": "utm_source",
                "first_utm_medium": "utm_medium", "first_utm_campaign": "utm_campaign"}


def _staged_leads(conn, rows: list[dict[str, Any]], now: datetime) -> tuple[list[str], Any]:
    """COPY the batch into the staging table; (columns, SELECT) for the same values as
    `_lead_values`, first-touch fields included (a column default cannot read an INSERT …
    SELECT's rows)."""
    S = LEADS_STAGE
    copy_rows(conn, S, ([*(row.get(c) for c in LEAD_COLUMNS), row.get("attributes") or {},
                         row.get("created_at")] for row in rows))
    at = literal(now, t.leads.c.updated_at.type)
    created = func.coalesce(S.c.created_at, at)
    cols = {**{c: S.c[c] for c in LEAD_COLUMNS},
            **{first: S.c[c] for first, c in _FIRST_TOUCH.items()},
            "attributes": S.c.attributes, "created_at": created, "updated_at": at,
            "lifecycle_stage": literal("new"), "stage_entered_at": created,
            "recycle_count": literal(0)}
    return list(cols), select(*cols.values())


def _merged_attributes(engine: Engine, new):
    """Stored custom attributes with the new ones on top (a shallow merge, in SQL)."""
    L = t.leads
    if engine.dialect.name == "postgresql":
        old = cast(L.c.attributes, postgresql.JSONB)
        return cast(case((func.jsonb_typeof(old) == "object",
                          old.op("||")(cast(new, postgresql.JSONB))),
                         else_=cast(new, postgresql.JSONB)), JSON)
    return case((func.json_type(L.c.attributes) == "object",
                 func.json_patch(L.c.attributes, new)), else_=new)

def lead_ids_for(conn, emails: list[str]) -> dict[str, int]:
    L = t.leads
    out: dict[str, int] = {}
    for part in chunks(emails, IN_BATCH):
        out.update((e, i) for i, e in conn.execute(
            select(L.c.id, L.c.email).where(L.c.email.in_(part))))
    return out

def insert_activities(engine: Engine, rows: list[dict[str, Any]], source: str = "import",
                      on_error: RowRefused | None = None) -> dict[str, int]:
    """Store activities once each (unique external id), creating leads for unknown
    emails so no valid event is dropped. Both inserts are ON CONFLICT DO NOTHING, so a
    lead or activity another process creates at the same moment is used, not an error.
    When the database refuses the batch anyway and `on_error` is given, rows are retried
    one by one and each refused row goes to `on_error(row, exc)`. Returns counts:
    inserted, duplicates, leads_created."""
    try:
        with write_tx(engine) as conn:
            if engine.dialect.name == "postgresql" and len(rows) > 1:
                return _copy_activities(conn, rows, source)
            return _insert_activities(engine, conn, rows, source)
    except _ROW_ERRORS as exc:
        if on_error is None or isinstance(exc, OperationalError | InterfaceError):
            raise
    total = {"inserted": 0, "duplicates": 0, "leads_created": 0}
    for row in rows:
        try:
            with write_tx(engine) as conn:
                counts = _insert_activities(engine, conn, [row], source)
        except _ROW_ERRORS as exc:
            if isinstance(exc, OperationalError | InterfaceError):
                raise
            on_error(row, exc)
            continue
        for k, v in counts.items():
            total[k] += v
    return total

def _insert_activities(engine: Engine, conn, rows: list[dict[str, Any]], source: str
                       ) -> dict[str, int]:
    now = datetime.now(UTC)
    A, L = t.activities, t.leads
    emails = sorted({r["email"] for r in rows})
    ids = lead_ids_for(conn, emails)
    missing = [e for e in emails if e not in ids]
    created = 0
    if missing:
        made = conn.execute(insert_ignore(engine, L).returning(L.c.id, L.c.email), [{
            "email": e, "attributes": {}, "created_at": now, "updated_at": now,
            "lifecycle_stage": "new", "stage_entered_at": now, "recycle_count": 0}
            for e in missing]).all()
        created = len(made)
        ids.update((e, i) for i, e in made)
        # created by someone else since our look-up: theirs is the lead
        ids.update(lead_ids_for(conn, [e for e in missing if e not in ids]))
    fresh, seen = [], set()
    for r in rows:
        if r["id"] in seen:
            continue
        seen.add(r["id"])
        fresh.append({"external_id": r["id"], "lead_id": ids[r["email"]],
                      "type": r["type"], "occurred_at": r["occurred_at"],
                      "properties": r.get("properties") or {}, "source": source,
                      "received_at": now})
    stored: list[int] = []
    if fresh:
        stored = conn.execute(insert_ignore(engine, A).returning(A.c.lead_id),
                              fresh).scalars().all()
        touched = sorted(set(stored))
        for part in chunks(touched, IN_BATCH):
            conn.execute(update(L).where(L.c.id.in_(part))
                         .values(next_check_at=None, activity_pending=True,
                                 version=L.c.version + 1))
    return {"inserted": len(stored), "duplicates": len(rows) - len(stored),
            "leads_created": created}


def _copy_activities(conn, rows: list[dict[str, Any]], source: str) -> dict[str, int]:
    """`_insert_activities` for a PostgreSQL batch: COPY into the staging table, then three
    set statements — create the unknown leads (in email order), store each new external id
    once (its first row in the batch, in file order), flag the touched leads."""
    now = datetime.now(UTC)
    A, L, S = t.activities, t.leads, ACTIVITIES_STAGE
    copy_rows(conn, S, ((i, r["id"], r["email"], r["type"], r["occurred_at"],
                         r.get("properties") or {}) for i, r in enumerate(rows)))
    at = literal(now, L.c.updated_at.type)
    made = conn.execute(
        postgresql.insert(L).from_select(
            ["email", "attributes", "created_at", "updated_at", "lifecycle_stage",
             "stage_entered_at", "recycle_count"],
            select(S.c.email, literal({}, L.c.attributes.type), at, at, literal("new"), at,
                   literal(0))
            # only the unknown ones: a conflict would still spend a sequence value
            .where(~exists().where(L.c.email == S.c.email))
            .group_by(S.c.email).order_by(S.c.email))
        .on_conflict_do_nothing().returning(L.c.id)).all()
    first = (select(S.c.ord, S.c.external_id, L.c.id.label("lead_id"), S.c.type,
                    S.c.occurred_at, S.c.properties)
             .join(L, L.c.email == S.c.email)
             .distinct(S.c.external_id).order_by(S.c.external_id, S.c.ord).subquery())
    stored = conn.execute(
        postgresql.insert(A).from_select(
            ["external_id", "lead_id", "type", "occurred_at", "properties", "source",
             "received_at"],
            select(first.c.external_id, first.c.lead_id, first.c.type, first.c.occurred_at,
                   first.c.properties, literal(source), literal(now, A.c.received_at.type))
            .order_by(first.c.ord))
        .on_conflict_do_nothing().returning(A.c.lead_id)).scalars().all()
    for part in chunks(sorted(set(stored)), IN_BATCH):
        conn.execute(update(L).where(L.c.id.in_(part))
                     .values(next_check_at=None, activity_pending=True,
                             version=L.c.version + 1))
    return {"inserted": len(stored), "duplicates": len(rows) - len(stored),
            "leads_created": len(made)}
