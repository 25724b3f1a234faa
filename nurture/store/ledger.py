"""The send ledger in SQL: claims, results, take-overs and in-doubt settlement.

Every write here is a compare-and-set on the touch's status (and, for a `sending` touch, the
run that owns it), so the state machine in `nurture.core.ledger` holds whatever runs at once: a
touch is claimed by one run, and only that run — while it still holds its lease — records its
outcome. Claims are taken a transport batch at a time, so a crash leaves at most one batch
`sending`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, bindparam, case, func, or_, select, update

from nurture.core.domain import (
    CANCELLED,
    FAILED,
    IN_DOUBT,
    MARKETING_STAGES,
    PLANNED,
    SENDING,
    SENT,
    TouchStatus,
)
from nurture.core.ledger import TouchResult, decide_takeover
from nurture.services.ports import OutgoingTouch, Takeover
from nurture.store import tables as t
from nurture.store.db import (
    ID_RANGE,
    bind_time,
    bulk_write,
    fetch,
    is_sqlite,
    read_time,
    retrying,
    write_tx,
)
from nurture.store.rows import (
    IN_BATCH,
    LEAD_FIELD_SQL,
    chunks,
    lead_fields_of,
)
from nurture.store.runs import RunStore
from nurture.store.tables import UTCDateTime

_RECORD_SQL = (
    "UPDATE touches SET status = ?, sent_at = COALESCE(?, sent_at), "
    "provider_message_id = COALESCE(?, provider_message_id), "
    "provider_batch_id = COALESCE(?, provider_batch_id), subject = COALESCE(?, subject), "
    "transport = COALESCE(?, transport), error = ?, retry_at = ?, attempts = attempts - ?, "
    "run_id = CASE WHEN ? = ? THEN NULL ELSE run_id END, updated_at = ? "
    "WHERE id = ? AND status = ? AND run_id = ?")
_RECORD_PG = (
    "WITH v(status, sent_at, mid, batch, subject, transport, error, retry_at, give_back, "
    "status2, planned, now, id, sending, run) AS (SELECT * FROM unnest(%s::text[], "
    "%s::timestamptz[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::timestamptz[], %s::int[], %s::text[], %s::text[], %s::timestamptz[], %s::bigint[], "
    "%s::text[], %s::bigint[])) "
    "UPDATE touches SET status = v.status, sent_at = COALESCE(v.sent_at, touches.sent_at), "
    "provider_message_id = COALESCE(v.mid, touches.provider_message_id), "
    "provider_batch_id = COALESCE(v.batch, touches.provider_batch_id), "
    "subject = COALESCE(v.subject, touches.subject), "
    "transport = COALESCE(v.transport, touches.transport), error = v.error, "
    "retry_at = v.retry_at, attempts = touches.attempts - v.give_back, "
    "run_id = CASE WHEN v.status2 = v.planned THEN NULL ELSE touches.run_id END, "
    "updated_at = v.now "
    "FROM v WHERE touches.id = v.id AND touches.status = v.sending AND touches.run_id = v.run "
    "AND " + ID_RANGE.format("touches"))


# due planned touches of a lead-id range, past any retry backoff, not of a paused campaign
# (its touches stay planned until it is resumed), with what sending needs of the lead. The
# batch's ids are picked (and on PostgreSQL locked) first, so only those rows are joined:
# joining every due touch of the range and then keeping a batch cost a chunk O(batches ×
# touches).
_CLAIM_SQL = (
    "SELECT touches.id, touches.lead_id, touches.campaign, touches.track, touches.step, "
    "touches.round, touches.variant, touches.send_at, leads.lifecycle_stage, "
    f"suppressions.email, {LEAD_FIELD_SQL} FROM (SELECT id FROM touches "
    "WHERE lead_id BETWEEN ? AND ? AND status = ? AND send_at <= ? "
    "AND (retry_at IS NULL OR retry_at <= ?) AND campaign NOT IN "
    "(SELECT campaign FROM campaign_status WHERE status = 'paused') "
    "ORDER BY id LIMIT ?{lock}) AS due JOIN touches ON touches.id = due.id "
    "JOIN leads ON leads.id = touches.lead_id "
    "LEFT OUTER JOIN suppressions ON suppressions.email = leads.email "
    "ORDER BY touches.id")


_TAKE_PG = (
    "UPDATE touches SET status = %b, run_id = %b, claimed_at = %b, updated_at = %b, "
    "attempts = attempts + 1 WHERE id = ANY(%b::bigint[]) AND status = %b "
    "RETURNING id, attempts")


def _take(conn, ids: list[int], run_id: int, stamp: datetime) -> dict[int, int]:
    """Move the touches from planned to sending for `run_id` (compare-and-set on the status:
    only the rows this statement moved are ours); touch id -> attempts."""
    if not ids:
        return {}
    if not is_sqlite(conn):  # one statement over an array, not an IN list to compile
        return dict(conn.exec_driver_sql(
            _TAKE_PG, (str(SENDING), run_id, stamp, stamp, ids, str(PLANNED))).all())
    T = t.touches
    claimed: dict[int, int] = {}
    for part in chunks(ids, IN_BATCH):
        claimed.update(conn.execute(
            update(T).where(T.c.id.in_(part), T.c.status == PLANNED)
            .values(status=SENDING, run_id=run_id, claimed_at=stamp, updated_at=stamp,
                    attempts=T.c.attempts + 1)
            .returning(T.c.id, T.c.attempts)).all())
    return claimed


class Ledger:
    """The SQL send ledger (the `SendLedger` port)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.runs = RunStore(engine)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    # -- claim ----------------------------------------------------------------------------
    def claim(self, lo: int, hi: int, send_before: datetime, now: datetime, run_id: int,
              limit: int) -> list[OutgoingTouch]:
        return retrying(lambda: self._claim(lo, hi, send_before, now, run_id, limit))

    def _claim(self, lo: int, hi: int, send_before: datetime, now: datetime, run_id: int,
               limit: int) -> list[OutgoingTouch]:
        """Claim up to `limit` planned touches of leads in [lo, hi] that are due (and past
        any retry backoff) for `run_id`. Touches of leads that left marketing or were
        suppressed since planning are cancelled instead: nothing unwanted is sent."""
        T = t.touches
        sql = _CLAIM_SQL.format(lock=" FOR UPDATE SKIP LOCKED" if self.is_postgres else "")
        stamp = datetime.now(UTC)
        with write_tx(self.engine) as conn:
            lite = is_sqlite(conn)
            rows = fetch(conn, sql, (lo, hi, str(PLANNED), bind_time(send_before, lite),
                                     bind_time(now, lite), limit))
            # (id, lead id, campaign, track, step, round, variant, send_at, stage, suppressed,
            #  lead fields…)
            unwanted = [r[0] for r in rows
                        if r[9] is not None or r[8] not in MARKETING_STAGES]
            keep = [r for r in rows if r[9] is None and r[8] in MARKETING_STAGES]
            for part in chunks(unwanted, IN_BATCH):
                conn.execute(update(T).where(T.c.id.in_(part), T.c.status == PLANNED)
                             .values(status=CANCELLED, updated_at=stamp, run_id=None,
                                     error="lead left marketing or was suppressed"))
            # only rows this statement moved from planned are ours (compare-and-set)
            claimed = _take(conn, [r[0] for r in keep], run_id, stamp)
        out = []
        for r in keep:
            if r[0] in claimed:
                fields = lead_fields_of(r[10:])
                out.append(OutgoingTouch(r[0], r[1], fields["email"], fields, r[2], r[3], r[4],
                                         r[5], r[6], read_time(r[7]), claimed[r[0]]))
        return out

    # -- results --------------------------------------------------------------------------
    def record(self, results: Iterable[TouchResult], run_id: int | None) -> int:
        """Write outcomes of touches `run_id` holds (`None`: touches of runs that stopped,
        see `take_over`). Returns how many writes were refused because the run no longer
        holds the touch."""
        rows = [_as_row(r) for r in results]
        if not rows:
            return 0

        # compare-and-set: only a `sending` touch this run holds (run_id = NULL matches none)
        def write() -> int:
            with write_tx(self.engine) as conn:
                lite = is_sqlite(conn)
                now = bind_time(datetime.now(UTC), lite)
                done = bulk_write(conn, _RECORD_SQL, _RECORD_PG, [
                    (r["b_status"], bind_time(r["b_sent_at"], lite), r["b_mid"], r["b_batch"],
                     r["b_subject"], r["b_transport"], r["b_error"],
                     bind_time(r["b_retry_at"], lite), r["b_give_back"], r["b_status"],
                     str(PLANNED), now, r["b_id"], str(SENDING), run_id)
                    for r in rows])
                return done if done >= 0 else len(rows)

        return len(rows) - retrying(write)

    # -- runs that stopped ----------------------------------------------------------------
    def take_over(self, lo: int, hi: int, lapse: timedelta, reconcile, transport: str,
                  me: int) -> Takeover:
        """Settle touches left `sending` by runs whose heartbeat stopped: exactly when the
        transport can tell (outbox), else `in_doubt`; a provider event already received
        settles them as sent. Touches held by live runs are reported, not touched."""
        T = t.touches
        with self.engine.connect() as conn:
            rows = conn.execute(select(T.c.id, T.c.run_id, T.c.last_event_at,
                                       T.c.provider_message_id)
                                .where(T.c.lead_id.between(lo, hi), T.c.status == SENDING,
                                       or_(T.c.run_id.is_(None), T.c.run_id != me))).all()
        out = Takeover(owners_alive={})
        if not rows:
            return out
        owners = {r.run_id for r in rows if r.run_id is not None}
        dead = self.runs.take_over(owners, lapse)
        alive = owners - dead
        if alive:
            out.owners_alive = self.runs.runs(alive)
            out.touches_held = sum(1 for r in rows if r.run_id in alive)
        orphans = [r for r in rows if r.run_id is None or r.run_id in dead]
        if not orphans:
            return out
        now = datetime.now(UTC)
        evidenced = {r.id: r.provider_message_id or "" for r in orphans
                     if r.last_event_at is not None}
        unknown_ids = [r.id for r in orphans if r.id not in evidenced]
        known = dict(reconcile(unknown_ids)) if unknown_ids else {}
        known.update(evidenced)
        results = []
        for r in orphans:
            res = _as_row(decide_takeover(r.id, known, now, transport))
            res["b_run"] = -1 if r.run_id is None else r.run_id  # -1: a claim without a run
            results.append(res)
        T2 = t.touches
        with write_tx(self.engine) as conn:
            stmt = (update(T2).where(T2.c.id == bindparam("b_id"), T2.c.status == SENDING,
                                     func.coalesce(T2.c.run_id, -1) == bindparam("b_run"))
                    .values(status=bindparam("b_status"),
                            sent_at=func.coalesce(T2.c.sent_at,
                                            bindparam("b_sent_at", type_=UTCDateTime())),
                            provider_message_id=func.coalesce(T2.c.provider_message_id,
                                                              bindparam("b_mid")),
                            error=bindparam("b_error"),
                            attempts=T2.c.attempts - bindparam("b_give_back"),
                            run_id=case((bindparam("b_status") == PLANNED, None),
                                        else_=T2.c.run_id),
                            updated_at=now)
                    .execution_options(preserve_rowcount=True))
            res = conn.execute(stmt, results)
            out.settled = res.rowcount if res.rowcount and res.rowcount > 0 else 0
        return out

    def release_in_doubt(self, lo: int, hi: int, quiet_since: datetime) -> int:
        """In-doubt touches with no provider event, in doubt since before `quiet_since`,
        go back to `planned` (the signed webhook would have settled them had they gone
        out). Compare-and-set: an event that lands first wins."""
        T = t.touches
        with write_tx(self.engine) as conn:
            res = conn.execute(
                update(T).where(T.c.lead_id.between(lo, hi), T.c.status == IN_DOUBT,
                                T.c.last_event_at.is_(None), T.c.delivery_status.is_(None),
                                T.c.updated_at < quiet_since)
                .values(status=PLANNED, run_id=None, retry_at=None, updated_at=datetime.now(UTC),
                        error="was in doubt with no provider event within the settle window; "
                              "sent again")
                .execution_options(preserve_rowcount=True))
            return max(res.rowcount or 0, 0)

    # -- people ---------------------------------------------------------------------------
    def with_status(self, statuses: Iterable[str], limit: int = 10_000) -> list[dict[str, Any]]:
        T, L = t.touches, t.leads
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(T.c.id, L.c.email, T.c.campaign, T.c.track, T.c.step, T.c.round,
                       T.c.variant, T.c.status, T.c.attempts, T.c.send_at, T.c.updated_at,
                       T.c.retry_at, T.c.provider_message_id, T.c.error)
                .join(L, L.c.id == T.c.lead_id)
                .where(T.c.status.in_([TouchStatus(s) for s in statuses]))
                .order_by(T.c.id).limit(limit))]

    def release(self, touch_ids: list[int], from_statuses: Iterable[str], actor: str
                ) -> list[int]:
        """A person puts chosen in-doubt or failed touches back to `planned` (attempts
        reset). Returns the ids released; others were not in those statuses."""
        T = t.touches
        allowed = [TouchStatus(s) for s in from_statuses if TouchStatus(s) in (IN_DOUBT, FAILED)]
        out: list[int] = []
        with write_tx(self.engine) as conn:
            for part in chunks(sorted(set(touch_ids)), IN_BATCH):
                out += conn.execute(
                    update(T).where(T.c.id.in_(part), T.c.status.in_(allowed))
                    .values(status=PLANNED, attempts=0, retry_at=None, run_id=None,
                            updated_at=datetime.now(UTC), error=f"released by {actor}")
                    .returning(T.c.id)).scalars().all()
        return sorted(out)

    def counts(self) -> dict[str, int]:
        T = t.touches
        with self.engine.connect() as conn:
            return dict(conn.execute(select(T.c.status, func.count()).group_by(T.c.status))
                        .all())


def _as_row(r: TouchResult) -> dict[str, Any]:
    return {"b_id": r.touch_id, "b_status": str(r.status), "b_sent_at": r.sent_at,
            "b_mid": r.provider_message_id, "b_batch": r.provider_batch_id,
            "b_subject": r.subject, "b_transport": r.transport, "b_error": r.error,
            "b_retry_at": r.retry_at, "b_give_back": 1 if r.give_back_attempt else 0}


__all__ = ["Ledger", "OutgoingTouch", "Takeover", "SENT", "CANCELLED"]
