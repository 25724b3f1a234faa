"""Provider events, recorded: the raw webhook batch (kept before anything else happens) and
one `provider_events` row per event, unique per provider + event id, with attempts counted.

Part of `EventStore` (see `nurture.store.events`); nothing here decides what an event means.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, literal, select, update
from sqlalchemy.engine import Connection, Engine

from nurture.core.engagement import (
    LeadRef,
)
from nurture.core.provider_events import (
    MAX_ATTEMPTS,
    ApplyReport,
    EventOutcome,
    Parsed,
    clean_text,
)
from nurture.store import tables as t
from nurture.store.db import (
    TimeBinder,
    executemany,
    fetch,
    is_sqlite,
    json_text,
    write_tx,
)
from nurture.store.pg_copy import EVENTS_STAGE, copy_then
from nurture.store.rows import IN_BATCH, chunks, insert_ignore

PENDING, ERROR = EventOutcome.PENDING, EventOutcome.ERROR
_EVENT_COLS = ("provider", "event_id", "batch_id", "event", "email", "touch_id", "lead_id",
               "occurred_at", "outcome", "error", "attempts", "payload")
_NAMES = ", ".join(_EVENT_COLS)
# SQLite: ids given explicitly (see `record_event_rows`); PostgreSQL: from the staging table
_INSERT_SQLITE = (f"INSERT INTO provider_events (id, {_NAMES}) "
                  f"VALUES ({', '.join('?' * (len(_EVENT_COLS) + 1))}) "
                  "ON CONFLICT (provider, event_id) DO NOTHING")
# (in key order: two batches sharing events, a retry beside the first post, may wait on
# each other but never deadlock)
_INSERT_PG = (f"INSERT INTO provider_events ({_NAMES}) SELECT "
              f"{_NAMES.replace('payload', 'payload::json')} FROM "
              f"{EVENTS_STAGE.name} ORDER BY event_id ON CONFLICT DO NOTHING "
              "RETURNING event_id, id")
_AT, _PAYLOAD = _EVENT_COLS.index("occurred_at"), _EVENT_COLS.index("payload")
UNAPPLIED = (PENDING, ERROR)  # in SQL lookups: tables.UNAPPLIED_SQL (its partial index)


class BatchRecords:
    """Raw batches and event rows: store, list, count attempts, give up, report failures."""

    engine: Engine
    provider: str

    # -- the raw batch -------------------------------------------------------------------
    def store_batch(self, body: str, signed: bool, n_events: int) -> int:
        """Keep the raw body before anything else happens (its own transaction). It counts
        as the first attempt: attempts are counted before trying, so a batch that kills
        the process every time is still given up after the limit."""
        with write_tx(self.engine) as conn:
            return self.insert_batch(conn, body, signed, n_events)

    def insert_batch(self, conn: Connection, body: str, signed: bool, n_events: int) -> int:
        """The raw batch's row, in the caller's transaction (first attempt counted)."""
        return conn.execute(t.webhook_batches.insert().values(
            provider=self.provider, received_at=datetime.now(UTC), body=body,
            signed=signed, events=n_events, attempts=1
        ).returning(t.webhook_batches.c.id)).scalar_one()

    def mark_failed(self, batch_id: int, error: str) -> None:
        """The batch could not even be recorded event by event: say why (retried later)."""
        B = t.webhook_batches
        with write_tx(self.engine) as conn:
            conn.execute(update(B).where(B.c.id == batch_id, B.c.applied_at.is_(None))
                         .values(error=clean_text(error, 2000)))

    def unapplied_batches(self, max_attempts: int = MAX_ATTEMPTS) -> list[tuple[int, str]]:
        B = t.webhook_batches
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                select(B.c.id, B.c.body).where(B.c.applied_at.is_(None),
                                               B.c.attempts < max_attempts)
                .order_by(B.c.id))]

    def count_batch_attempt(self, batch_id: int) -> None:
        """One more attempt, counted before trying (see `store_batch`)."""
        B = t.webhook_batches
        with write_tx(self.engine) as conn:
            conn.execute(update(B).where(B.c.id == batch_id, B.c.applied_at.is_(None))
                         .values(attempts=B.c.attempts + 1))

    def give_up_batch(self, batch_id: int, max_attempts: int, why: str) -> None:
        """A batch that can never apply (an unreadable body): listed, not retried."""
        B = t.webhook_batches
        with write_tx(self.engine) as conn:
            conn.execute(update(B).where(B.c.id == batch_id).values(
                attempts=max_attempts, error=clean_text(why, 2000)))

    def batch_body(self, batch_id: int) -> str | None:
        B = t.webhook_batches
        with self.engine.connect() as conn:
            return conn.execute(select(B.c.body).where(B.c.id == batch_id)).scalar()

    def finish_batch(self, conn: Connection, batch_id: int, rep: ApplyReport,
                     note: str | None, now: datetime, body: str | None = None) -> None:
        """Mark the batch applied (with `body`: its raw body too, see `EventStore.ingest`)."""
        B = t.webhook_batches
        error = note or (f"{rep.errors} event(s) could not be applied: see provider_events "
                         "(outcome 'error')" if rep.errors else None)
        conn.execute(update(B).where(B.c.id == batch_id).values(
            applied_at=now, new_events=rep.new,
            error=clean_text(error, 2000) if error else None,
            **({"body": body} if body is not None else {})))

    def set_body(self, conn: Connection, batch_id: int, body: str) -> None:
        B = t.webhook_batches
        conn.execute(update(B).where(B.c.id == batch_id).values(body=body))

    # -- event rows ------------------------------------------------------------------------
    def event_rows(self, batch_id: int, parsed: Sequence[Parsed], now: datetime,
                   lead_of: dict[str, LeadRef | None] | None = None,
                   outcome_of: Any = None) -> list[tuple]:
        """Rows for `provider_events` (tuples in `_EVENT_COLS` order): a bad event as `error`
        with its reason, a good one `pending` — or, with `outcome_of(event)`, recorded with
        that outcome and one attempt (its touch and lead resolved: `lead_of` by event id)."""
        rows = []
        provider = self.provider
        for p in parsed:
            e = p.effect
            if e is None:
                rows.append((provider, p.key, batch_id, p.raw_kind or "?", p.raw_email, None,
                             None, now, ERROR, p.error, 1, {"i": p.index}))
                continue
            lead = lead_of.get(e.event_id) if lead_of is not None else None
            rows.append((provider, e.event_id, batch_id, e.event, e.email,
                         e.touch_id if lead_of is not None else None,
                         lead.id if lead is not None else None, e.occurred_at,
                         PENDING if outcome_of is None else outcome_of(e), None,
                         0 if outcome_of is None else 1,
                         {"i": p.index, "properties": e.properties, "detail": e.detail}))
        return rows

    def insert_event_rows(self, conn: Connection, rows: list[tuple]) -> None:
        """The slow, careful path (SQLAlchemy binds and checks every value)."""
        if rows:
            conn.execute(insert_ignore(self.engine, t.provider_events),
                         [dict(zip(_EVENT_COLS, r, strict=True)) for r in rows])

    def record_event_rows(self, conn: Connection, rows: list[tuple]) -> dict[str, int]:
        """Insert the rows (a repeated event id is skipped: the unique constraint decides);
        event id -> row id of those inserted here. PostgreSQL: COPY into a staging table,
        then one INSERT … ON CONFLICT DO NOTHING RETURNING (only the rows it inserted, so a
        concurrent applier's row is never taken for ours). SQLite: the write transaction
        holds the database's one write lock, so the rows go in with executemany and ids
        from MAX(id) + 1 (what SQLite would pick), an event id already stored skipped by
        the unique constraint, and the rows in that id range are the ones inserted here."""
        seen: set[str] = set()
        first = [r for r in rows if not (r[1] in seen or seen.add(r[1]))]
        if not first:
            return {}
        if not is_sqlite(conn):
            return dict(copy_then(conn, EVENTS_STAGE, [(*r[:_PAYLOAD], json_text(r[_PAYLOAD]))
                                                       for r in first], _INSERT_PG))
        start = fetch(conn, "SELECT COALESCE(MAX(id), 0) + 1 FROM provider_events")[0][0]
        when = TimeBinder(True)
        executemany(conn, _INSERT_SQLITE, [
            (start + i, *r[:_AT], when[r[_AT]], *r[_AT + 1:_PAYLOAD], json_text(r[_PAYLOAD]))
            for i, r in enumerate(first)])
        # the ids are ours and contiguous: what landed is one range scan of the primary key,
        # not a probe of the unique index per event (a stored event id left a gap)
        return dict(fetch(conn, "SELECT event_id, id FROM provider_events WHERE id BETWEEN ? "
                          "AND ?", (start, start + len(first) - 1)))

    def rows_of_batch(self, conn: Connection, batch_id: int, keys: Iterable[str],
                      outcomes: Sequence[str] = (PENDING,)) -> dict[str, tuple[int, int]]:
        """event id -> (row id, attempts) of this batch's rows still in `outcomes`."""
        PE, out = t.provider_events, {}
        for part in chunks(sorted(set(keys)), IN_BATCH):
            for r in conn.execute(select(PE.c.event_id, PE.c.id, PE.c.attempts).where(
                    PE.c.provider == self.provider, PE.c.batch_id == batch_id,
                    PE.c.event_id.in_(part), PE.c.outcome.in_(outcomes))):
                out[r.event_id] = (r.id, r.attempts)
        return out

    def unapplied_events(self, max_attempts: int, limit: int) -> list[Any]:
        """Rows still `pending`/`error` with attempts left (id, batch_id, payload, outcome)."""
        PE = t.provider_events
        with self.engine.connect() as conn:
            return conn.execute(
                select(PE.c.id, PE.c.batch_id, PE.c.payload, PE.c.outcome)
                .where(PE.c.provider == self.provider, t.UNAPPLIED_SQL,
                       PE.c.attempts < max_attempts).order_by(PE.c.id).limit(limit)).all()

    def fail_event(self, row_id: int, expected: Sequence[str], why: str,
                   give_up: int | None = None) -> None:
        """Keep an event as `error` with its reason, one more attempt counted (or given up)."""
        PE = t.provider_events
        with write_tx(self.engine) as conn:
            conn.execute(update(PE).where(PE.c.id == row_id, PE.c.outcome.in_(expected))
                         .values(outcome=ERROR, error=clean_text(why, 2000),
                                 attempts=(literal(give_up) if give_up is not None
                                           else PE.c.attempts + 1)))

    def given_up(self, max_attempts: int) -> int:
        """Events and batches left listed after `max_attempts`."""
        PE, B = t.provider_events, t.webhook_batches
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(PE).where(
                t.UNAPPLIED_SQL, PE.c.attempts >= max_attempts)
            ).scalar_one() + conn.execute(select(func.count()).select_from(B).where(
                B.c.applied_at.is_(None), B.c.attempts >= max_attempts)).scalar_one()

    def failures(self, max_attempts: int = MAX_ATTEMPTS, limit: int = 100) -> dict[str, Any]:
        """Events and batches still not applied (listed by `nurture webhooks replay --json`)."""
        PE, B = t.provider_events, t.webhook_batches
        with self.engine.connect() as conn:
            events = [dict(r._mapping) for r in conn.execute(
                select(PE.c.id, PE.c.event_id, PE.c.batch_id, PE.c.event, PE.c.outcome,
                       PE.c.attempts, PE.c.error)
                .where(t.UNAPPLIED_SQL).order_by(PE.c.id).limit(limit))]
            batches = [dict(r._mapping) for r in conn.execute(
                select(B.c.id, B.c.attempts, B.c.error).where(B.c.applied_at.is_(None))
                .order_by(B.c.id).limit(limit))]
        for item in events + batches:
            item["given_up"] = item["attempts"] >= max_attempts
        return {"events": events, "batches": batches}
