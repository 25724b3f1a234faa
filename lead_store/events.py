"""Provider events (SendGrid Event Webhook): store the raw batch first, then apply each event
once — touch delivery state, suppressions with an audit transition, and activities that
feed engagement scoring. Bulk statements per batch, never a query per event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Engine

from lead_store import tables as t
from lead_store.store import IN_BATCH, _chunks, _insert_ignore
from nurture.domain import SENT, UNKNOWN
from nurture.webhooks.sendgrid import Effect

# a later, stronger delivery state wins over an earlier, weaker one
DELIVERY_RANK = {"deferred": 1, "blocked": 2, "delivered": 3, "bounced": 4, "dropped": 4}
SETTLEABLE = (UNKNOWN, "failed")  # a touch we were unsure of, that the provider did send
ACTOR = "sendgrid:event-webhook"


@dataclass
class ApplyReport:
    events: int = 0
    new: int = 0
    duplicates: int = 0
    unmatched: int = 0
    settled: int = 0
    suppressed: int = 0
    activities: int = 0
    scanner_clicks: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class EventStore:
    def __init__(self, engine: Engine, provider: str = "sendgrid") -> None:
        self.engine = engine
        self.provider = provider

    def store_batch(self, body: str, signed: bool, n_events: int) -> int:
        """Keep the raw body before anything else happens (its own transaction)."""
        with self.engine.begin() as conn:
            return conn.execute(t.webhook_batches.insert().values(
                provider=self.provider, received_at=datetime.now(UTC), body=body,
                signed=signed, events=n_events).returning(t.webhook_batches.c.id)).scalar_one()

    def mark_failed(self, batch_id: int, error: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(t.webhook_batches).where(t.webhook_batches.c.id == batch_id)
                         .values(error=error[:2000]))

    def unapplied_batches(self) -> list[tuple[int, str]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                select(t.webhook_batches.c.id, t.webhook_batches.c.body)
                .where(t.webhook_batches.c.applied_at.is_(None))
                .order_by(t.webhook_batches.c.id))]

    def unsubscribe(self, email: str, via: str, touch_id: int | None = None,
                     campaign: str | None = None) -> bool:
        """A person unsubscribed through our link (one-click or the page): suppress the address,
        record the activity (it scores) and an audit transition. Idempotent; True when new."""
        email = email.strip().lower()
        now = datetime.now(UTC)
        L = t.leads
        with self.engine.begin() as conn:
            already = conn.execute(select(t.suppressions.c.email).where(
                t.suppressions.c.email == email)).scalar()
            if already:
                return False
            conn.execute(_insert_ignore(self.engine, t.suppressions).values(
                email=email, reason="unsubscribe", source=f"unsubscribe-link:{via}",
                detail=f"campaign {campaign}, touch {touch_id}" if campaign else None,
                created_at=now))
            lead = conn.execute(select(L.c.id, L.c.lifecycle_stage)
                                .where(L.c.email == email)).first()
            if lead is not None:
                conn.execute(t.transitions.insert().values(
                    lead_id=lead.id, from_stage=lead.lifecycle_stage,
                    to_stage=lead.lifecycle_stage,
                    reason=f"email suppressed (unsubscribe): the lead unsubscribed via the "
                           f"{via} link" + (f" in {campaign}" if campaign else "")
                           + "; no more marketing email",
                    rule="suppression.unsubscribe", actor=f"lead:{via}", at=now))
                conn.execute(_insert_ignore(self.engine, t.activities).values(
                    external_id=f"unsubscribe:{email}:{int(now.timestamp())}", lead_id=lead.id,
                    type="unsubscribe", occurred_at=now,
                    properties={"via": via, "touch_id": touch_id, "campaign": campaign},
                    source="unsubscribe", received_at=now))
                conn.execute(update(L).where(L.c.id == lead.id)
                             .values(next_check_at=None, activity_pending=True))
        return True

    def apply(self, batch_id: int, effects: list[Effect], scanner_seconds: float = 10.0
              ) -> ApplyReport:
        """Apply the batch's events that were never seen before, in one transaction."""
        rep = ApplyReport(events=len(effects))
        T, L, PE = t.touches, t.leads, t.provider_events
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            # resolve touches (by our touch id, else the provider's message id) and leads
            def rows_by(key, values, *cols) -> list:
                """Rows whose `key` is in `values`, in IN-list batches."""
                out: list = []
                for part in _chunks(sorted(values), IN_BATCH):
                    out += conn.execute(select(*cols).where(key.in_(part))).all()
                return out

            touch_cols = (T.c.id, T.c.lead_id, T.c.status, T.c.sent_at, T.c.delivery_status,
                          T.c.delivered_at, T.c.provider_message_id)
            touches: dict[int, Any] = {r.id: r for r in rows_by(
                T.c.id, {e.touch_id for e in effects if e.touch_id is not None}, *touch_cols)}
            mids = {e.message_id for e in effects
                    if e.message_id and (e.touch_id is None or e.touch_id not in touches)}
            by_mid: dict[str, Any] = {r.provider_message_id: r for r in rows_by(
                T.c.provider_message_id, mids, *touch_cols)}
            touches.update((r.id, r) for r in by_mid.values())
            for e in effects:
                if (e.touch_id is None or e.touch_id not in touches) and e.message_id in by_mid:
                    e.touch_id = by_mid[e.message_id].id
                elif e.touch_id is not None and e.touch_id not in touches:
                    e.touch_id = None  # a touch id we never issued: keep the event, unmatched
            lead_cols = (L.c.id, L.c.email, L.c.lifecycle_stage)
            leads: dict[str, Any] = {r.email: r for r in rows_by(
                L.c.email, {e.email for e in effects}, *lead_cols)}
            lead_ids = {touches[e.touch_id].lead_id for e in effects if e.touch_id}
            lead_ids -= {r.id for r in leads.values()}
            lead_of: dict[int, Any] = {r.id: r for r in rows_by(L.c.id, lead_ids, *lead_cols)}
            lead_of.update((r.id, r) for r in leads.values())

            def lead_for(e: Effect):
                if e.touch_id is not None:
                    return lead_of.get(touches[e.touch_id].lead_id)
                return leads.get(e.email)

            # record every event (dedupe by the provider's id); only rows this batch
            # inserted are applied — a retried batch or repeated event does nothing
            rows = []
            for e in effects:
                lead = lead_for(e)
                rows.append({"provider": self.provider, "event_id": e.event_id,
                             "batch_id": batch_id, "event": e.event, "email": e.email,
                             "touch_id": e.touch_id, "lead_id": lead.id if lead else None,
                             "occurred_at": e.occurred_at,
                             "outcome": "applied" if lead else "unmatched",
                             "payload": {"properties": e.properties, "detail": e.detail}})
            if rows:
                conn.execute(_insert_ignore(self.engine, PE), rows)
            ours: set[str] = set()
            for part in _chunks([e.event_id for e in effects], IN_BATCH):
                ours.update(conn.execute(select(PE.c.event_id).where(
                    PE.c.provider == self.provider, PE.c.batch_id == batch_id,
                    PE.c.event_id.in_(part))).scalars())
            fresh, seen_ids = [], set()
            for e in effects:
                if e.event_id in ours and e.event_id not in seen_ids:
                    seen_ids.add(e.event_id)
                    fresh.append(e)
            rep.new = len(fresh)
            rep.duplicates = len(effects) - len(fresh)
            fresh.sort(key=lambda e: e.occurred_at)

            touch_updates: dict[int, dict[str, Any]] = {}
            delivered_at: dict[int, datetime] = {}
            for e in fresh:
                if e.event == "delivered" and e.touch_id is not None:
                    delivered_at.setdefault(e.touch_id, e.occurred_at)
            suppress_rows: dict[str, dict] = {}
            transitions: list[dict] = []
            activities: list[dict] = []
            recheck: set[int] = set()
            for e in fresh:
                lead = lead_for(e)
                if lead is None:
                    rep.unmatched += 1
                if e.touch_id is not None:
                    row = touches[e.touch_id]
                    upd = touch_updates.setdefault(e.touch_id, {
                        "status": row.status, "sent_at": row.sent_at,
                        "provider_message_id": row.provider_message_id,
                        "delivery_status": row.delivery_status,
                        "delivered_at": row.delivered_at, "last_event_at": None,
                        "error": None, "_settled": False})
                    if e.settles_sent and upd["status"] in SETTLEABLE:
                        upd.update(status=SENT, sent_at=upd["sent_at"] or e.occurred_at,
                                   _settled=True)
                        rep.settled += 1
                    if e.message_id and not upd["provider_message_id"]:
                        upd["provider_message_id"] = e.message_id
                    if e.delivery_status and DELIVERY_RANK[e.delivery_status] >= \
                            DELIVERY_RANK.get(upd["delivery_status"] or "", 0):
                        upd["delivery_status"] = e.delivery_status
                        if e.delivery_status in ("bounced", "dropped", "blocked"):
                            upd["error"] = f"{e.delivery_status}: {e.detail or ''}".strip()
                    if e.event == "delivered" and not upd["delivered_at"]:
                        upd["delivered_at"] = e.occurred_at
                    if upd["last_event_at"] is None or e.occurred_at > upd["last_event_at"]:
                        upd["last_event_at"] = e.occurred_at
                if e.suppress and e.email not in suppress_rows:
                    suppress_rows[e.email] = {
                        "email": e.email, "reason": e.suppress, "source": ACTOR,
                        "detail": e.detail or e.event, "created_at": now}
                    if lead is not None:
                        transitions.append({
                            "lead_id": lead.id, "from_stage": lead.lifecycle_stage,
                            "to_stage": lead.lifecycle_stage,
                            "reason": f"email suppressed ({e.suppress}): SendGrid reported "
                                      f"{e.event}" + (f" — {e.detail}" if e.detail else "")
                                      + "; no more marketing email",
                            "rule": f"suppression.{e.suppress}", "actor": ACTOR,
                            "note": None, "at": e.occurred_at})
                if e.activity and lead is not None:
                    kind = e.activity
                    props = dict(e.properties)
                    if e.touch_id is not None:
                        props["touch_id"] = e.touch_id
                    if e.is_click and e.touch_id is not None:
                        ref = (delivered_at.get(e.touch_id) or touches[e.touch_id].delivered_at
                               or touches[e.touch_id].sent_at)
                        if ref is not None and e.occurred_at - ref <= timedelta(
                                seconds=scanner_seconds):
                            kind = "email_scanner_click"  # a link scanner, not the lead
                            rep.scanner_clicks += 1
                    activities.append({"external_id": f"{self.provider}:{e.event_id}",
                                       "lead_id": lead.id, "type": kind,
                                       "occurred_at": e.occurred_at, "properties": props,
                                       "source": self.provider, "received_at": now})
                    recheck.add(lead.id)
                if e.suppress and lead is not None:
                    recheck.add(lead.id)

            if touch_updates:
                conn.execute(update(T).where(T.c.id == bindparam("tid")).values(
                    status=bindparam("st"), sent_at=bindparam("sa"),
                    provider_message_id=bindparam("mid"),
                    delivery_status=bindparam("ds"), delivered_at=bindparam("da"),
                    last_event_at=bindparam("le"), updated_at=now), [
                    {"tid": tid, "st": u["status"], "sa": u["sent_at"],
                     "mid": u["provider_message_id"], "ds": u["delivery_status"],
                     "da": u["delivered_at"], "le": u["last_event_at"]}
                    for tid, u in touch_updates.items()])
                errors = [{"tid": tid, "err": u["error"]} for tid, u in touch_updates.items()
                          if u["error"]]
                if errors:
                    conn.execute(update(T).where(T.c.id == bindparam("tid"))
                                 .values(error=bindparam("err")), errors)
                settled = [tid for tid, u in touch_updates.items() if u["_settled"]]
                for part in _chunks(settled, IN_BATCH):
                    conn.execute(update(T).where(T.c.id.in_(part)).values(error=None))
            if suppress_rows:
                existing: set[str] = set()
                for part in _chunks(sorted(suppress_rows), IN_BATCH):
                    existing.update(conn.execute(select(t.suppressions.c.email).where(
                        t.suppressions.c.email.in_(part))).scalars())
                new_supp = [r for email, r in suppress_rows.items() if email not in existing]
                if new_supp:
                    conn.execute(_insert_ignore(self.engine, t.suppressions), new_supp)
                rep.suppressed = len(new_supp)
                transitions = [tr for tr in transitions
                               if lead_of[tr["lead_id"]].email not in existing]
                if transitions:
                    conn.execute(t.transitions.insert(), transitions)
            if activities:
                conn.execute(_insert_ignore(self.engine, t.activities), activities)
                rep.activities = len(activities)
            for part in _chunks(sorted(recheck), IN_BATCH):
                conn.execute(update(L).where(L.c.id.in_(part))
                             .values(next_check_at=None, activity_pending=True))
            conn.execute(update(t.webhook_batches).where(t.webhook_batches.c.id == batch_id)
                         .values(applied_at=now, new_events=rep.new, error=None))
        return rep

