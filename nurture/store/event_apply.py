"""Applying claimed provider events: load the state the decision needs, claim the rows
(compare-and-set out of `pending`/`error`), let `nurture.core.engagement.decide` say what
follows, and write that decision — all inside the caller's one transaction.

SQL still does the set-based work (executemany UPDATEs; the delivery-status precedence is a
CASE over `DELIVERY_RANK`, so concurrent appliers never read-modify-write), but what wins and
what counts is decided in core. Part of `EventStore` (see `nurture.store.events`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Integer, and_, bindparam, case, func, or_, select, update
from sqlalchemy.engine import Connection, Engine

from nurture.core.domain import CANCELLED, SENT
from nurture.core.engagement import (
    ACTOR,
    DELIVERY_RANK,
    SETTLEABLE,
    EngagementDecision,
    LeadRef,
    TouchChange,
    TouchState,
    decide,
    outcome_for,
    rank,
)
from nurture.core.provider_events import (
    ApplyReport,
    ProviderEvent,
)
from nurture.store import tables as t
from nurture.store.rows import IN_BATCH, chunks, insert_ignore


@dataclass(slots=True)
class Resolved:
    """The events with their touch ids resolved, and the touches and leads they are about."""

    events: list[ProviderEvent]
    touches: dict[int, TouchState]
    leads: dict[str, LeadRef]          # by email
    lead_of: dict[int, LeadRef]        # by id

    def lead_for(self, e: ProviderEvent) -> LeadRef | None:
        """The lead an event is about: its touch's lead, else the lead with that address."""
        if e.touch_id is not None:
            return self.lead_of.get(self.touches[e.touch_id].lead_id)
        return self.leads.get(e.email)

    def outcome(self, e: ProviderEvent) -> str:
        """How the event's row ends once applied (core's `outcome_for`)."""
        return outcome_for(e, self.lead_for(e) is not None or e.touch_id is not None)


def _rank(col):
    return case(*((col == k, v) for k, v in DELIVERY_RANK.items()), else_=0)


class EventApplication:
    """Resolve, claim and apply events in a given connection (the caller's transaction)."""

    engine: Engine
    provider: str

    def resolve(self, conn: Connection, events: Sequence[ProviderEvent]) -> Resolved:
        """Touches (by our id, else the provider's message id) and leads of the events; a
        touch id we never issued is dropped (the event is kept, unmatched)."""
        T, L = t.touches, t.leads

        def rows_by(key, values, *cols) -> list:
            out: list = []
            for part in chunks(sorted(values), IN_BATCH):
                out += conn.execute(select(*cols).where(key.in_(part))).all()
            return out

        cols = (T.c.id, T.c.lead_id, T.c.sent_at, T.c.delivered_at, T.c.provider_message_id)
        found = {r.id: r for r in rows_by(
            T.c.id, {e.touch_id for e in events if e.touch_id is not None}, *cols)}
        mids = {e.message_id for e in events
                if e.message_id and (e.touch_id is None or e.touch_id not in found)}
        by_mid = {r.provider_message_id: r for r in rows_by(T.c.provider_message_id, mids,
                                                            *cols)}
        found.update((r.id, r) for r in by_mid.values())
        out = []
        for e in events:
            if (e.touch_id is None or e.touch_id not in found) and e.message_id in by_mid:
                e = replace(e, touch_id=by_mid[e.message_id].id)
            elif e.touch_id is not None and e.touch_id not in found:
                e = replace(e, touch_id=None)
            out.append(e)
        touches = {i: TouchState(r.id, r.lead_id, r.sent_at, r.delivered_at)
                   for i, r in found.items()}
        # by address only for events without a touch: a touch's event is about its lead
        leads = {r.email: LeadRef(r.id, r.email) for r in rows_by(
            L.c.email, {e.email for e in out if e.touch_id is None}, L.c.id, L.c.email)}
        lead_ids = {touches[e.touch_id].lead_id for e in out if e.touch_id}
        lead_ids -= {r.id for r in leads.values()}
        lead_of = {r.id: LeadRef(r.id, r.email)
                   for r in rows_by(L.c.id, lead_ids, L.c.id, L.c.email)}
        lead_of.update((r.id, r) for r in leads.values())
        return Resolved(out, touches, leads, lead_of)

    def claim(self, conn: Connection, items: list[tuple[int, ProviderEvent]],
              expected: Sequence[str], res: Resolved) -> set[int]:
        """Move the rows out of `expected` to their outcome; only the rows this statement
        moved are applied by this transaction (two appliers never both apply one)."""
        PE = t.provider_events
        by_outcome: dict[str, list[int]] = {}
        for row_id, e in items:
            by_outcome.setdefault(res.outcome(e), []).append(row_id)
        claimed: set[int] = set()
        for outcome, ids in by_outcome.items():
            for part in chunks(sorted(ids), IN_BATCH):
                claimed.update(conn.execute(
                    update(PE).where(PE.c.id.in_(part), PE.c.outcome.in_(expected))
                    .values(outcome=outcome, error=None, attempts=PE.c.attempts + 1)
                    .returning(PE.c.id)).scalars())
        return claimed

    def apply_claimed(self, conn: Connection, items: list[tuple[int, ProviderEvent]],
                      expected: Sequence[str], rep: ApplyReport, now: datetime,
                      scanner_seconds: float, res: Resolved | None = None,
                      recorded: frozenset[int] = frozenset()) -> None:
        """Claim the events' rows and apply what `decide` says about those claimed here.
        With `res`, the events are already resolved and their rows carry touch and lead.
        `recorded`: rows this very transaction inserted with their final outcome — no other
        applier can see them before it commits, so they are ours without a claim."""
        if not items:
            return
        known = res is not None
        if res is None:
            res = self.resolve(conn, [e for _, e in items])
            items = [(row_id, e) for (row_id, _), e in zip(items, res.events, strict=True)]
        claimed = self.claim(conn, [i for i in items if i[0] not in recorded], expected, res)
        claimed |= recorded
        if not known:  # who the events turned out to be about (`nurture lead show`)
            self._link(conn, [(row_id, e) for row_id, e in items if row_id in claimed], res)
        fresh = [e for row_id, e in items if row_id in claimed]
        decision = decide(fresh, res.touches, res.lead_for, scanner_seconds, now,
                          self.provider)
        self.write_decision(conn, decision, rep, now)

    def _link(self, conn: Connection, items: list[tuple[int, ProviderEvent]],
              res: Resolved) -> None:
        PE = t.provider_events
        link = [{"pid": row_id, "tid": e.touch_id, "lid": getattr(res.lead_for(e), "id", None)}
                for row_id, e in items
                if e.touch_id is not None or res.lead_for(e) is not None]
        if link:
            conn.execute(update(PE).where(PE.c.id == bindparam("pid")).values(
                touch_id=bindparam("tid"), lead_id=bindparam("lid")), link)

    def write_decision(self, conn: Connection, d: EngagementDecision, rep: ApplyReport,
                       now: datetime) -> None:
        """Write one decision: touches, suppressions (+ audit), activities, lead bumps."""
        L = t.leads
        rep.unmatched += d.unmatched
        rep.scanner_clicks += d.scanner_clicks
        if d.touches:
            rep.settled += self._update_touches(conn, d.touches, now)
        if d.suppressions:
            self._suppress(conn, d, rep)
        if d.activities:
            conn.execute(insert_ignore(self.engine, t.activities), [
                {"external_id": a.external_id, "lead_id": a.lead_id, "type": a.type,
                 "occurred_at": a.occurred_at, "properties": a.properties,
                 "source": self.provider, "received_at": now} for a in d.activities])
            rep.activities += len(d.activities)
        for part in chunks(sorted(d.recheck), IN_BATCH):
            conn.execute(update(L).where(L.c.id.in_(part)).values(
                next_check_at=None, activity_pending=True, version=L.c.version + 1))

    def _suppress(self, conn: Connection, d: EngagementDecision, rep: ApplyReport) -> None:
        # RETURNING lists only the rows this statement inserted: a suppression another
        # applier created first gets no second audit transition
        L = t.leads
        new: list[str] = list(conn.execute(
            insert_ignore(self.engine, t.suppressions).returning(t.suppressions.c.email),
            [{"email": s.email, "reason": s.reason, "source": ACTOR, "detail": s.detail,
              "created_at": s.created_at} for s in d.suppressions]).scalars())
        rep.suppressed += len(new)
        rep.suppressed_emails += new
        by_email = {s.email: s for s in d.suppressions}
        audits = [by_email[e] for e in new
                  if e in by_email and by_email[e].lead_id is not None]
        if audits:
            # one executemany; the stage as it is now, read by the INSERT itself
            lid = bindparam("lid", type_=L.c.id.type)
            stage = select(L.c.lifecycle_stage).where(L.c.id == lid).scalar_subquery()
            TR = t.transitions
            conn.execute(TR.insert().values(
                lead_id=lid, from_stage=stage, to_stage=stage,
                reason=bindparam("reason", type_=TR.c.reason.type),
                rule=bindparam("rule", type_=TR.c.rule.type), actor=ACTOR,
                at=bindparam("at", type_=TR.c.at.type)), [
                {"lid": s.lead_id, "reason": s.audit_reason, "rule": s.rule, "at": s.at}
                for s in audits])

    def _settle_candidates(self, conn: Connection, ids: list[int]) -> set[int]:
        """Touches that are in doubt/failed, or a cancelled scheduled send, right now."""
        T = t.touches
        out: set[int] = set()
        for part in chunks(sorted(set(ids)), IN_BATCH):
            out.update(conn.execute(select(T.c.id).where(
                T.c.id.in_(part), or_(T.c.status.in_(SETTLEABLE), and_(
                    T.c.status == CANCELLED, T.c.provider_batch_id.is_not(None))))).scalars())
        return out

    def _update_touches(self, conn: Connection, changes: Sequence[TouchChange],
                        now: datetime) -> int:
        """Three executemany UPDATEs: settle (CAS on status), a cancellation that came too
        late (CAS), then delivery state by precedence (CAS-free: a CASE on the rank)."""
        T = t.touches
        when, text = T.c.delivered_at.type, T.c.error.type
        settled = 0
        # nearly every touch is plainly `sent`: the two CAS statements below only get the
        # touches that could match them now (the CAS itself still decides)
        maybe = self._settle_candidates(conn, [c.touch_id for c in changes
                                               if c.settle_at or c.went_out])
        settle = [{"tid": c.touch_id, "at": c.settle_at} for c in changes
                  if c.settle_at and c.touch_id in maybe]
        if settle:
            res = conn.execute(
                # OR of equalities, not IN: an expanding IN cannot be used with executemany
                update(T).where(T.c.id == bindparam("tid"),
                                or_(*(T.c.status == s for s in SETTLEABLE)))
                .values(status=SENT,
                        sent_at=func.coalesce(T.c.sent_at, bindparam("at", type_=when)),
                        error=None, updated_at=now)
                .execution_options(preserve_rowcount=True), settle)
            settled = max(res.rowcount, 0)
        late = [{"tid": c.touch_id, "msg": c.late_send_note} for c in changes
                if c.went_out and c.touch_id in maybe]
        if late:
            conn.execute(update(T).where(T.c.id == bindparam("tid"), T.c.status == CANCELLED,
                                         T.c.provider_batch_id.is_not(None))
                         .values(status=SENT, error=bindparam("msg", type_=text),
                                 updated_at=now), late)
        ds = bindparam("ds", type_=T.c.delivery_status.type)
        err = bindparam("err", type_=text)
        le = bindparam("le", type_=when)
        # the new status's rank is computed here (core's `rank`; -1: no status), so each row
        # binds it once instead of SQL ranking a parameter in every branch
        stronger = bindparam("win", type_=Integer()) >= _rank(T.c.delivery_status)
        conn.execute(update(T).where(T.c.id == bindparam("tid")).values(
            delivery_status=case((stronger, ds), else_=T.c.delivery_status),
            error=case((stronger, func.coalesce(err, T.c.error)), else_=T.c.error),
            delivered_at=func.coalesce(T.c.delivered_at, bindparam("da", type_=when)),
            last_event_at=case((or_(T.c.last_event_at.is_(None), le > T.c.last_event_at), le),
                               else_=T.c.last_event_at),
            provider_message_id=func.coalesce(
                T.c.provider_message_id, bindparam("mid", type_=T.c.provider_message_id.type)),
            updated_at=now), [
            {"tid": c.touch_id, "ds": c.delivery_status, "err": c.error,
             "win": rank(c.delivery_status) if c.delivery_status else -1,
             "da": c.delivered_at, "le": c.last_event_at, "mid": c.message_id}
            for c in changes])
        return settled
