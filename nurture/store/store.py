"""The lead store: bulk reads and writes the cycle, imports and the CLI need.

Every method works on a whole chunk with a handful of statements (never a query per lead),
and every write that could be repeated — a re-run cycle, a re-imported file — is made safe by
a unique constraint rather than by luck.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import (
    JSON,
    Engine,
    and_,
    bindparam,
    case,
    cast,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError, StatementError

from nurture.core.domain import (
    CANCELLED,
    CYCLE_STAGES,
    IN_DOUBT,
    MARKETING_STAGES,
    MQL,
    PLANNED,
    SENDING,
    SYSTEM_ACTOR,
    ActivityFact,
    Decision,
    HandoffStatus,
    LeadEvent,
    LeadSnapshot,
    TouchFact,
)
from nurture.store import tables as t
from nurture.store.db import retrying, write_tx
from nurture.store.limits import max_length, string_problem
from nurture.store.rows import IN_BATCH, LEAD_COLUMNS, insert_ignore, lead_fields, upsert
from nurture.store.rows import chunks as _chunks

# A batch the database refuses for one row's sake (a value it cannot store, a constraint)
# is retried row by row; connection trouble (OperationalError) is not a row's fault.
_ROW_ERRORS = StatementError
RowRefused = Callable[[dict[str, Any], Exception], None]


@dataclass(slots=True)
class Applied:
    """What `apply_decisions` wrote, and which leads changed under it (decide again)."""

    stale: set[int] = field(default_factory=set)
    planned: int = 0
    mqls: int = 0
    owners: dict[int, str] = field(default_factory=dict)
    events: list[LeadEvent] = field(default_factory=list)


class LeadStore:
    """SQL implementation of the store the engine services use (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @cached_property
    def ledger(self):
        """The send ledger (claims, results, take-overs): `nurture.store.ledger.Ledger`."""
        from nurture.store.ledger import Ledger

        return Ledger(self.engine)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    # -- small shared state -------------------------------------------------------------
    def get_or_create_secret(self, key: str = "secret_key") -> str:
        """A random per-database secret (signs unsubscribe tokens when none is configured)."""
        with write_tx(self.engine) as conn:
            value = conn.execute(select(t.kv.c.value).where(t.kv.c.key == key)).scalar()
            if value:
                return value
            conn.execute(insert_ignore(self.engine, t.kv).values(
                key=key, value=secrets.token_urlsafe(32)))
            return conn.execute(select(t.kv.c.value).where(t.kv.c.key == key)).scalar_one()

    def next_counter(self, name: str, n: int, conn) -> int:
        """Atomically reserve `n` values of a counter; returns the first (round-robin)."""
        conn.execute(insert_ignore(self.engine, t.counters).values(name=name, value=0))
        new = conn.execute(update(t.counters).where(t.counters.c.name == name)
                           .values(value=t.counters.c.value + n)
                           .returning(t.counters.c.value)).scalar_one()
        return int(new) - n

    # -- chunking -------------------------------------------------------------------------
    def cycle_ranges(self, as_of: datetime, chunk_size: int, engaged_only: bool = False
                     ) -> list[tuple[int, int, int]]:
        """Split the leads the cycle must look at into id ranges of about `chunk_size`.

        Only leads in cycle stages whose `next_check_at` is unset or due are counted:
        leads waiting (an MQL inside its SLA, a recycled lead inside its wait) cost nothing.
        `engaged_only`: marketing leads with new, not yet evaluated activity.
        """
        q = (select(t.leads.c.id).where(self._cycle_where(as_of, engaged_only))
             .order_by(t.leads.c.id))
        with self.engine.connect() as conn:
            ids = conn.execute(q).scalars().all()
        return [(c[0], c[-1], len(c)) for c in _chunks(ids, chunk_size)]

    def _cycle_where(self, as_of: datetime, engaged_only: bool = False):
        if engaged_only:
            return and_(t.leads.c.activity_pending.is_(True),
                        t.leads.c.lifecycle_stage.in_(MARKETING_STAGES))
        return and_(t.leads.c.lifecycle_stage.in_(CYCLE_STAGES),
                    or_(t.leads.c.next_check_at.is_(None), t.leads.c.next_check_at <= as_of))

    def _cycle_filter(self, lo: int, hi: int, as_of: datetime, engaged_only: bool = False):
        return and_(t.leads.c.id.between(lo, hi), self._cycle_where(as_of, engaged_only))

    # -- the cycle: read ------------------------------------------------------------------
    def load_snapshots(self, lo: int, hi: int, as_of: datetime, horizon_days: float,
                       points: dict[str, float], default_tz: str,
                       any_stage: bool = False, engaged_only: bool = False,
                       ids: Sequence[int] | None = None) -> list[LeadSnapshot]:
        """Everything `evaluate` needs for the due leads with ids in [lo, hi]: four queries
        (`any_stage`: every lead in the range, not only those the cycle would look at;
        `ids`: only these leads — a stale decision's lead, loaded again)."""
        since = as_of - timedelta(days=horizon_days)
        where = (t.leads.c.id.between(lo, hi) if any_stage
                 else self._cycle_filter(lo, hi, as_of, engaged_only))
        if ids is not None:
            where = and_(where, t.leads.c.id.in_(list(ids)))
        L, cs = t.leads, t.campaign_states
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(L, cs.c.campaign.label("cs_campaign"), cs.c.track.label("cs_track"),
                       cs.c.track_rounds, t.suppressions.c.email.label("suppressed"))
                .outerjoin(cs, cs.c.lead_id == L.c.id)
                .outerjoin(t.suppressions, t.suppressions.c.email == L.c.email)
                .where(where).order_by(L.c.id)).all()
            acts: dict[int, list[ActivityFact]] = defaultdict(list)
            for lead_id, typ, at in conn.execute(
                    select(t.activities.c.lead_id, t.activities.c.type,
                           t.activities.c.occurred_at)
                    .where(t.activities.c.lead_id.between(lo, hi),
                           t.activities.c.occurred_at >= since,
                           t.activities.c.occurred_at <= as_of)
                    .order_by(t.activities.c.lead_id, t.activities.c.occurred_at)):
                acts[lead_id].append(ActivityFact(typ, at, points.get(typ, 0.0)))
            tch: dict[int, list[TouchFact]] = defaultdict(list)
            T = t.touches
            for lead_id, camp, step, rnd, status, sent_at in conn.execute(
                    select(T.c.lead_id, T.c.campaign, T.c.step, T.c.round, T.c.status,
                           # a touch that may have gone out counts from its slot
                           func.coalesce(T.c.sent_at, case(
                               (T.c.status.in_((IN_DOUBT, SENDING)), T.c.send_at),
                               else_=None)))
                    .where(T.c.lead_id.between(lo, hi))):
                tch[lead_id].append(TouchFact(camp, step, rnd, status, sent_at))
            hand: dict[int, tuple[int, datetime]] = {}
            H = t.handoffs
            for hid, lead_id, due in conn.execute(
                    select(H.c.id, H.c.lead_id, H.c.sla_due_at)
                    .where(H.c.lead_id.between(lo, hi), H.c.status == HandoffStatus.PENDING)):
                hand[lead_id] = (hid, due)
        out = []
        for r in rows:
            h = hand.get(r.id)
            out.append(LeadSnapshot(
                id=r.id, email=r.email, fields=lead_fields(r),
                timezone=r.timezone or default_tz, lifecycle_stage=r.lifecycle_stage,
                stage_entered_at=r.stage_entered_at, engagement_since=r.engagement_since,
                recycle_count=r.recycle_count, recycle_until=r.recycle_until,
                suppressed=r.suppressed is not None, activities=acts.get(r.id, []),
                touches=tch.get(r.id, []), campaign=r.cs_campaign, track=r.cs_track,
                track_rounds=dict(r.track_rounds or {}),
                handoff_id=h[0] if h else None, sla_due_at=h[1] if h else None,
                version=r.version))
        return out

    # -- the cycle: write -----------------------------------------------------------------
    def apply_decisions(self, decisions: list[Decision], as_of: datetime, owners: Sequence[str],
                        actor: str, events: dict[int, list[LeadEvent | None]] | None = None,
                        touch_only: Sequence[tuple[int, int]] = ()) -> Applied:
        """Write a chunk's decisions in one transaction: scores, stages, transitions,
        handoffs, lead events, campaign state and planned touches.

        Compare-and-set on each lead's version: the leads are locked (SQLite: the write
        lock; PostgreSQL: `FOR UPDATE`), and a decision whose lead changed since it was
        loaded is not written — its id comes back in `stale` to be loaded and decided again.
        `events[lead_id]` aligns with the decision's transitions (None: no event).
        `touch_only`: (lead id, version) of leads looked at but not decided (instant routing):
        their new-activity flag is cleared, by the same compare-and-set."""
        return retrying(lambda: self._apply(decisions, as_of, owners, actor, events or {},
                                            touch_only))

    def _apply(self, decisions, as_of, owners, actor, events, touch_only) -> Applied:
        L = t.leads
        wanted = {d.lead_id: d.version for d in decisions} | dict(touch_only)
        with write_tx(self.engine) as conn:
            current: dict[int, int] = {}
            for part in _chunks(sorted(wanted), IN_BATCH):
                q = select(L.c.id, L.c.version).where(L.c.id.in_(part)).order_by(L.c.id)
                if self.is_postgres:
                    q = q.with_for_update(of=L)
                current.update(conn.execute(q).all())
            stale = {i for i, v in wanted.items() if current.get(i) != v}
            fresh = [d for d in decisions if d.lead_id not in stale]
            idle = [i for i, _ in touch_only if i not in stale]
            for part in _chunks(idle, IN_BATCH):
                conn.execute(update(L).where(L.c.id.in_(part))
                             .values(activity_pending=False, version=L.c.version + 1))
            written = self._write_decisions(conn, fresh, as_of, owners, actor, events)
        return Applied(stale=stale, planned=written["planned"], mqls=written["mqls"],
                       owners=written["owners"], events=written["events"])

    def _write_decisions(self, conn, decisions: list[Decision], as_of: datetime,
                         owners: Sequence[str], actor: str,
                         events: dict[int, list[LeadEvent | None]]) -> dict[str, Any]:
        now = datetime.now(UTC)
        L, H, TR = t.leads, t.handoffs, t.transitions
        out: dict[str, Any] = {"planned": 0, "mqls": 0, "owners": {}, "events": []}
        if not decisions:
            return out
        conn.execute(update(L).where(L.c.id == bindparam("b_id"),
                                     L.c.version == bindparam("b_version"))
                     .values(version=L.c.version + 1), [
            {"b_id": d.lead_id, "b_version": d.version, "lifecycle_stage": d.lifecycle_stage,
             "stage_entered_at": d.stage_entered_at, "engagement_since": d.engagement_since,
             "recycle_count": d.recycle_count, "recycle_until": d.recycle_until,
             "buying_stage": d.buying_stage, "fit_score": d.fit_score,
             "engagement_score": d.engagement_score, "score": d.score, "grade": d.grade,
             "scored_at": as_of, "next_check_at": _next_check(d), "activity_pending": False}
            for d in decisions])
        drop_state = [d.lead_id for d in decisions if d.campaign is None]
        for part in _chunks(drop_state, IN_BATCH):
            conn.execute(t.campaign_states.delete().where(t.campaign_states.c.lead_id.in_(part)))
        state_rows = [{"lead_id": d.lead_id, "campaign": d.campaign, "track": d.track,
                       "track_rounds": d.track_rounds, "enrolled_at": as_of, "updated_at": now}
                      for d in decisions if d.campaign is not None]
        if state_rows:
            self._upsert_states(conn, state_rows)
        expire = [d.lead_id for d in decisions if d.expire_handoff]
        for part in _chunks(expire, IN_BATCH):
            conn.execute(update(H).where(H.c.lead_id.in_(part),
                                         H.c.status == HandoffStatus.PENDING)
                         .values(status=HandoffStatus.EXPIRED, resolved_at=as_of,
                                 outcome_reason="sla_expired"))
        # handoffs first: the MQL transition names its handoff (one MQL transition per
        # handoff, one open handoff per lead: both are unique indexes)
        mqls = [d for d in decisions if d.handoff is not None]
        handoff_of: dict[int, int] = {}
        if mqls:
            first = self.next_counter("mql_owner", len(mqls), conn)
            hrows = [{"lead_id": d.lead_id, "owner": owners[(first + i) % len(owners)],
                      "status": HandoffStatus.PENDING, "rule": d.handoff.rule,
                      "reason": d.handoff.reason, "score": d.score, "grade": d.grade,
                      "created_at": as_of, "sla_due_at": d.handoff.sla_due_at}
                     for i, d in enumerate(mqls)]
            ids = conn.execute(insert(H).returning(H.c.id, sort_by_parameter_order=True),
                               hrows).scalars().all()
            handoff_of = {r["lead_id"]: hid for r, hid in zip(hrows, ids, strict=True)}
            out["owners"] = {r["lead_id"]: r["owner"] for r in hrows}
            out["mqls"] = len(mqls)
        trows, tevents = [], []
        for d in decisions:
            evs = events.get(d.lead_id) or []
            for i, tr in enumerate(d.transitions):
                trows.append({"lead_id": d.lead_id, "from_stage": tr.from_stage,
                              "to_stage": tr.to_stage, "reason": tr.reason, "rule": tr.rule,
                              "actor": actor if tr.actor == SYSTEM_ACTOR else tr.actor,
                              "note": tr.note, "at": as_of,
                              "handoff_id": handoff_of.get(d.lead_id)
                              if tr.to_stage == MQL else None})
                tevents.append(evs[i] if i < len(evs) else None)
        if trows:
            tids = conn.execute(insert(TR).returning(TR.c.id, sort_by_parameter_order=True),
                                trows).scalars().all()
            erows = []
            for tid, row, ev in zip(tids, trows, tevents, strict=True):
                if ev is None:
                    continue
                if ev.kind == "mql":
                    ev.owner = out["owners"].get(row["lead_id"])
                erows.append({"lead_id": row["lead_id"], "transition_id": tid, "kind": ev.kind,
                              "payload": ev.payload(as_of), "created_at": now})
                out["events"].append(ev)
            if erows:
                conn.execute(insert(t.lead_events), erows)
        touches = [{"lead_id": d.lead_id, "campaign": p.campaign, "track": p.track,
                    "step": p.step, "round": p.round, "variant": p.variant,
                    "status": PLANNED, "planned_at": as_of, "send_at": p.send_at,
                    "updated_at": now}
                   for d in decisions if (p := d.touch) is not None]
        if touches:
            out["planned"] = self._plan_touches(conn, touches)
        return out

    def _plan_touches(self, conn, rows: list[dict[str, Any]]) -> int:
        """Insert planned touches; a step the ledger has as `cancelled` (never sent: the lead
        had left marketing) is planned again in place — unique per lead × campaign × step ×
        round either way."""
        T = t.touches
        stmt = upsert(self.engine, T)
        stmt = stmt.on_conflict_do_update(
            index_elements=[T.c.lead_id, T.c.campaign, T.c.step, T.c.round],
            set_={"status": PLANNED, "track": stmt.excluded.track,
                  "variant": stmt.excluded.variant, "planned_at": stmt.excluded.planned_at,
                  "send_at": stmt.excluded.send_at, "updated_at": stmt.excluded.updated_at,
                  "attempts": 0, "retry_at": None, "run_id": None, "error": None},
            where=T.c.status == CANCELLED)
        conn.execute(stmt, rows)
        return len(rows)

    def _upsert_states(self, conn, rows: list[dict]) -> None:
        cs = t.campaign_states
        stmt = upsert(self.engine, cs)
        stmt = stmt.on_conflict_do_update(
            index_elements=[cs.c.lead_id],
            set_={"campaign": stmt.excluded.campaign, "track": stmt.excluded.track,
                  "track_rounds": stmt.excluded.track_rounds,
                  "updated_at": stmt.excluded.updated_at,
                  # keep the enrolment date while the lead stays in the same campaign
                  "enrolled_at": case((cs.c.campaign == stmt.excluded.campaign,
                                       cs.c.enrolled_at), else_=stmt.excluded.enrolled_at)})
        conn.execute(stmt, rows)

    # -- imports ------------------------------------------------------------------------
    def upsert_leads(self, rows: list[dict[str, Any]],
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
            with write_tx(self.engine) as conn:
                return self._upsert_leads(conn, list(by_email.values()))
        except _ROW_ERRORS as exc:
            if on_error is None or isinstance(exc, OperationalError | InterfaceError):
                raise
        inserted = updated = 0
        for email, row in by_email.items():
            try:
                with write_tx(self.engine) as conn:
                    i, u = self._upsert_leads(conn, [row])
            except _ROW_ERRORS as exc:
                if isinstance(exc, OperationalError | InterfaceError):
                    raise
                for source in sources[email]:
                    on_error(source, exc)
                continue
            inserted, updated = inserted + i, updated + u
        return inserted, updated

    def _upsert_leads(self, conn, rows: list[dict[str, Any]]) -> tuple[int, int]:
        now = datetime.now(UTC)
        L = t.leads
        values = []
        for row in rows:
            created = row.get("created_at") or now
            values.append({**{c: row.get(c) for c in LEAD_COLUMNS},
                           "attributes": row.get("attributes") or {}, "created_at": created,
                           "updated_at": now, "lifecycle_stage": "new",
                           "stage_entered_at": created, "recycle_count": 0})
        stmt = (postgresql.insert(L) if self.is_postgres else sqlite.insert(L))
        ex = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[L.c.email],
            set_={**{c: func.coalesce(ex[c], L.c[c]) for c in LEAD_COLUMNS if c != "email"},
                  "attributes": self._merged_attributes(ex.attributes),
                  "updated_at": ex.updated_at, "next_check_at": None,
                  "version": L.c.version + 1})
        # a fresh row has version 0; an updated one was just bumped to 1 or more
        versions = conn.execute(stmt.returning(L.c.version), values).scalars().all()
        inserted = sum(1 for v in versions if v == 0)
        return inserted, len(versions) - inserted

    def _merged_attributes(self, new):
        """Stored custom attributes with the new ones on top (a shallow merge, in SQL)."""
        L = t.leads
        if self.is_postgres:
            old = cast(L.c.attributes, postgresql.JSONB)
            return cast(case((func.jsonb_typeof(old) == "object",
                              old.op("||")(cast(new, postgresql.JSONB))),
                             else_=cast(new, postgresql.JSONB)), JSON)
        return case((func.json_type(L.c.attributes) == "object",
                     func.json_patch(L.c.attributes, new)), else_=new)

    def lead_ids_for(self, conn, emails: list[str]) -> dict[str, int]:
        L = t.leads
        out: dict[str, int] = {}
        for part in _chunks(emails, IN_BATCH):
            out.update((e, i) for i, e in conn.execute(
                select(L.c.id, L.c.email).where(L.c.email.in_(part))))
        return out

    def insert_activities(self, rows: list[dict[str, Any]], source: str = "import",
                          on_error: RowRefused | None = None) -> dict[str, int]:
        """Store activities once each (unique external id), creating leads for unknown
        emails so no valid event is dropped. Both inserts are ON CONFLICT DO NOTHING, so a
        lead or activity another process creates at the same moment is used, not an error.
        When the database refuses the batch anyway and `on_error` is given, rows are retried
        one by one and each refused row goes to `on_error(row, exc)`. Returns counts:
        inserted, duplicates, leads_created."""
        try:
            with write_tx(self.engine) as conn:
                return self._insert_activities(conn, rows, source)
        except _ROW_ERRORS as exc:
            if on_error is None or isinstance(exc, OperationalError | InterfaceError):
                raise
        total = {"inserted": 0, "duplicates": 0, "leads_created": 0}
        for row in rows:
            try:
                with write_tx(self.engine) as conn:
                    counts = self._insert_activities(conn, [row], source)
            except _ROW_ERRORS as exc:
                if isinstance(exc, OperationalError | InterfaceError):
                    raise
                on_error(row, exc)
                continue
            for k, v in counts.items():
                total[k] += v
        return total

    def _insert_activities(self, conn, rows: list[dict[str, Any]], source: str
                           ) -> dict[str, int]:
        now = datetime.now(UTC)
        A, L = t.activities, t.leads
        emails = sorted({r["email"] for r in rows})
        ids = self.lead_ids_for(conn, emails)
        missing = [e for e in emails if e not in ids]
        created = 0
        if missing:
            made = conn.execute(insert_ignore(self.engine, L).returning(L.c.id, L.c.email), [{
                "email": e, "attributes": {}, "created_at": now, "updated_at": now,
                "lifecycle_stage": "new", "stage_entered_at": now, "recycle_count": 0}
                for e in missing]).all()
            created = len(made)
            ids.update((e, i) for i, e in made)
            # created by someone else since our look-up: theirs is the lead
            ids.update(self.lead_ids_for(conn, [e for e in missing if e not in ids]))
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
            stored = conn.execute(insert_ignore(self.engine, A).returning(A.c.lead_id),
                                  fresh).scalars().all()
            touched = sorted(set(stored))
            for part in _chunks(touched, IN_BATCH):
                conn.execute(update(L).where(L.c.id.in_(part))
                             .values(next_check_at=None, activity_pending=True,
                                     version=L.c.version + 1))
        return {"inserted": len(stored), "duplicates": len(rows) - len(stored),
                "leads_created": created}

    def suppress(self, email: str, reason: str, source: str | None = None,
                 detail: str | None = None) -> bool:
        """Never email this address again (unsubscribe, bounce, spam report, manual).
        Returns False when it was already suppressed. An address the column cannot hold
        (too long, NUL) is a ValueError; descriptive fields are made to fit, since losing
        a suppression over its description would be worse than shortening it."""
        S = t.suppressions
        problem = string_problem(email, S.c.email, "email")
        if problem:
            raise ValueError(f"cannot suppress this address: {problem}")
        with write_tx(self.engine) as conn:
            res = conn.execute(insert_ignore(self.engine, S).values(
                email=email, reason=_fit(reason, S.c.reason), source=_fit(source, S.c.source),
                detail=_fit(detail, S.c.detail),
                created_at=datetime.now(UTC)).execution_options(preserve_rowcount=True))
            return res.rowcount > 0  # without preserve_rowcount psycopg reports -1

    # -- one lead, for `nurture lead show` --------------------------------------------------
    def lead_detail(self, email: str) -> dict[str, Any] | None:
        """A lead with its campaign state, touches, transitions, handoffs and suppression."""
        L, cs = t.leads, t.campaign_states
        with self.engine.connect() as conn:
            row = conn.execute(select(L, cs.c.campaign, cs.c.track, cs.c.track_rounds)
                               .outerjoin(cs, cs.c.lead_id == L.c.id)
                               .where(L.c.email == email)).first()
            if row is None:
                return None
            T, TR, H, S = t.touches, t.transitions, t.handoffs, t.suppressions
            touches = [dict(r._mapping) for r in conn.execute(
                select(T.c.id, T.c.campaign, T.c.track, T.c.step, T.c.round, T.c.variant,
                       T.c.status, T.c.send_at, T.c.sent_at, T.c.subject, T.c.error,
                       T.c.provider_message_id)
                .where(T.c.lead_id == row.id).order_by(T.c.planned_at, T.c.id))]
            transitions = [dict(r._mapping) for r in conn.execute(
                select(TR.c.from_stage, TR.c.to_stage, TR.c.reason, TR.c.rule, TR.c.actor,
                       TR.c.note, TR.c.at).where(TR.c.lead_id == row.id)
                .order_by(TR.c.at, TR.c.id))]
            handoffs = [dict(r._mapping) for r in conn.execute(
                select(H.c.owner, H.c.status, H.c.rule, H.c.reason, H.c.created_at,
                       H.c.sla_due_at, H.c.resolved_at, H.c.outcome_reason)
                .where(H.c.lead_id == row.id).order_by(H.c.created_at, H.c.id))]
            suppression = conn.execute(select(S.c.reason, S.c.created_at)
                                       .where(S.c.email == email)).first()
            activities = conn.execute(select(func.count()).select_from(t.activities)
                                      .where(t.activities.c.lead_id == row.id)).scalar_one()
        return {"row": row, "fields": lead_fields(row), "touches": touches,
                "transitions": transitions, "handoffs": handoffs,
                "suppression": dict(suppression._mapping) if suppression else None,
                "activity_count": activities}

    def snapshot(self, lead_id: int, as_of: datetime, horizon_days: float,
                 points: dict[str, float], default_tz: str) -> LeadSnapshot | None:
        """One lead's snapshot regardless of whether the cycle would look at it today."""
        snaps = self.load_snapshots(lead_id, lead_id, as_of, horizon_days, points, default_tz,
                                    any_stage=True)
        return snaps[0] if snaps else None

    def stage_counts(self) -> dict[str, int]:
        L = t.leads
        with self.engine.connect() as conn:
            return dict(conn.execute(select(L.c.lifecycle_stage, func.count())
                                     .group_by(L.c.lifecycle_stage)).all())


def _fit(value: str | None, column) -> str | None:
    """A descriptive value made storable: NULs replaced, cut to the column's length."""
    if value is None:
        return None
    value = str(value).replace("\x00", "\ufffd")
    limit = max_length(column)
    return value[:limit] if limit is not None else value


def _next_check(d: Decision) -> datetime | None:
    """When the cycle must look at this lead again: waiting leads are skipped until their
    wait ends (new activity or a lead update clears this, so changes are never missed)."""
    if d.lifecycle_stage == MQL and d.handoff is not None:
        return d.handoff.sla_due_at
    if d.skip_reason == "recycle_wait":
        return d.recycle_until
    return None


__all__ = ["Applied", "LeadStore", "lead_fields"]
