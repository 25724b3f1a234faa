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

from sqlalchemy import bindparam, func, or_, update
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
from nurture.store.db import (
    TimeBinder,
    bulk_write,
    executemany,
    fetch,
    int_array,
    is_sqlite,
    json_text,
    read_time,
    select_in,
)
from nurture.store.pg_copy import DELIVERY_STAGE, EVENT_ACTIVITIES_STAGE, copy_then
from nurture.store.rows import IN_BATCH, chunks


@dataclass(slots=True)
class Resolved:
    """The events with their touch ids resolved, and the touches and leads they are about."""

    events: list[ProviderEvent]
    touches: dict[int, TouchState]     # times only for touches with a click (see resolve)
    leads: dict[str, LeadRef]          # by email
    lead_of: dict[int, LeadRef]        # by id
    has_mid: frozenset[int] = frozenset()  # touches whose message id was already stored

    def lead_for(self, e: ProviderEvent) -> LeadRef | None:
        """The lead an event is about: its touch's lead, else the lead with that address."""
        if e.touch_id is not None:
            return self.lead_of.get(self.touches[e.touch_id].lead_id)
        return self.leads.get(e.email)

    def outcome(self, e: ProviderEvent) -> str:
        """How the event's row ends once applied (core's `outcome_for`)."""
        return outcome_for(e, self.lead_for(e) is not None or e.touch_id is not None)


# PostgreSQL advisory lock (transaction-scoped) under which events are applied; any
# constant unique to this application will do
APPLY_LOCK = 0x6E75727475726531  # "nurture1"

# the stored delivery status's rank, in SQL (core's DELIVERY_RANK; constants, not input)
_RANK_SQL = ("(CASE touches.delivery_status " + " ".join(
    f"WHEN '{k}' THEN {v}" for k, v in DELIVERY_RANK.items()) + " ELSE 0 END)")
_TOUCH_SQL = ("SELECT t.id, t.lead_id, t.provider_message_id, l.email FROM touches t "
              "JOIN leads l ON l.id = t.lead_id WHERE")


def _delivery_sql(ds: str, err: str, win: str, da: str, le: str, mid: str | None) -> str:
    """Delivery state by precedence: the new status's rank `win` (core's `rank`; -1: no
    status) against the stored one's (a CASE), so concurrent appliers never read-modify-
    write; the first delivery time, the latest event time and the message id kept (`mid`
    None: the touch has one already — a message id is never unset — so the indexed column
    is left out of the SET, which spares SQLite rewriting its index entry)."""
    stronger = f"{win} >= {_RANK_SQL}"
    return ("UPDATE touches SET "
            f"delivery_status = CASE WHEN {stronger} THEN {ds} ELSE delivery_status END, "
            f"error = CASE WHEN {stronger} THEN COALESCE({err}, error) ELSE error END, "
            f"delivered_at = COALESCE(delivered_at, {da}), "
            f"last_event_at = CASE WHEN last_event_at IS NULL OR {le} > last_event_at "
            f"THEN {le} ELSE last_event_at END, "
            + (f"provider_message_id = COALESCE(provider_message_id, {mid}), " if mid else ""))


# SQLite: one prepared statement run per touch (numbered parameters); PostgreSQL: one
# UPDATE … FROM the staging table the rows were copied into
_DELIVERY_SQLITE = (_delivery_sql("?2", "?3", "?4", "?5", "?6", "?7")
                    + "updated_at = ?8 WHERE id = ?1")
_DELIVERY_SQLITE_HAS_MID = (_delivery_sql("?2", "?3", "?4", "?5", "?6", None)
                            + "updated_at = ?8 WHERE id = ?1")
_DELIVERY_PG = (_delivery_sql("v.ds", "v.err", "v.win", "v.da", "v.le", "v.mid")
                + f"updated_at = %s FROM {DELIVERY_STAGE.name} v WHERE touches.id = v.tid")
_ACTIVITY_COLS = "external_id, lead_id, type, occurred_at, properties, source, received_at"
_ACTIVITIES_SQLITE = (f"INSERT INTO activities ({_ACTIVITY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                      "ON CONFLICT DO NOTHING")
_ACTIVITIES_PG = (f"INSERT INTO activities ({_ACTIVITY_COLS}) SELECT "
                  f"{_ACTIVITY_COLS.replace('properties', 'properties::json')} FROM "
                  f"{EVENT_ACTIVITIES_STAGE.name} ON CONFLICT DO NOTHING")
_RECHECK = "UPDATE leads SET next_check_at = NULL, activity_pending = TRUE, version = version + 1"
_RECHECK_SQLITE = f"{_RECHECK} WHERE id = ?"
_RECHECK_PG = f"{_RECHECK} WHERE id = ANY(%s::bigint[])"
_SUPPRESS_COLS = "email, reason, source, detail, created_at"
_SUPPRESS_SQLITE = (f"INSERT INTO suppressions ({_SUPPRESS_COLS}) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING")
_SUPPRESS_PG = (f"INSERT INTO suppressions ({_SUPPRESS_COLS}) SELECT {_SUPPRESS_COLS} FROM "
                "unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::timestamptz[]) "
                f"AS v({_SUPPRESS_COLS}) WHERE true ON CONFLICT DO NOTHING RETURNING email")
# the audit transition of a new suppression: the stage as it is now, read by the INSERT
_AUDIT = ("INSERT INTO transitions (lead_id, from_stage, to_stage, reason, rule, actor, at) "
          "SELECT l.id, l.lifecycle_stage, l.lifecycle_stage, {reason}, {rule}, "
          f"'{ACTOR}', {{at}} FROM leads l")
_AUDIT_SQLITE = _AUDIT.format(reason="?", rule="?", at="?") + " WHERE l.id = ?"
_AUDIT_PG = (_AUDIT.format(reason="v.reason", rule="v.rule", at="v.at")
             + " JOIN unnest(%s::text[], %s::text[], %s::timestamptz[], %s::bigint[]) "
             "AS v(reason, rule, at, lid) ON l.id = v.lid")


class EventApplication:
    """Resolve, claim and apply events in a given connection (the caller's transaction)."""

    engine: Engine
    provider: str

    def resolve(self, conn: Connection, events: Sequence[ProviderEvent]) -> Resolved:
        """Touches (by our id, else the provider's message id) and leads of the events; a
        touch id we never issued is dropped (the event is kept, unmatched). A touch's send
        and delivery times are read only where a rule needs them (a click: scanner check)."""
        found = {r[0]: r for r in select_in(conn, _TOUCH_SQL, "t.id", sorted(
            {e.touch_id for e in events if e.touch_id is not None}))}
        mids = {e.message_id for e in events
                if e.message_id and (e.touch_id is None or e.touch_id not in found)}
        by_mid = {r[2]: r for r in select_in(conn, _TOUCH_SQL, "t.provider_message_id",
                                             sorted(mids), "text")}
        found.update((r[0], r) for r in by_mid.values())
        out = []
        for e in events:
            if e.touch_id is not None and e.touch_id in found:
                out.append(e)
            elif e.message_id in by_mid:
                out.append(replace(e, touch_id=by_mid[e.message_id][0]))
            elif e.touch_id is not None:
                out.append(replace(e, touch_id=None))
            else:
                out.append(e)
        # a click's scanner check is the one rule that needs a touch's times
        times = {r[0]: (read_time(r[1]), read_time(r[2])) for r in select_in(
            conn, "SELECT id, sent_at, delivered_at FROM touches WHERE", "id",
            sorted({e.touch_id for e in out if e.is_click and e.touch_id is not None}))}
        touches = {i: TouchState(r[0], r[1], *times.get(i, (None, None)))
                   for i, r in found.items()}
        lead_of = {r[1]: LeadRef(r[1], r[3]) for r in found.values()}
        # by address only for events without a touch: a touch's event is about its lead
        leads = {r[1]: LeadRef(r[0], r[1]) for r in select_in(
            conn, "SELECT id, email FROM leads WHERE", "email",
            sorted({e.email for e in out if e.touch_id is None}), "text")}
        lead_of.update((r.id, r) for r in leads.values())
        return Resolved(out, touches, leads, lead_of,
                        frozenset(i for i, r in found.items() if r[2] is not None))

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
        self.write_decision(conn, decision, rep, now, res.has_mid)

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
                       now: datetime, has_mid: frozenset[int] = frozenset()) -> None:
        """Write one decision: touches, suppressions (+ audit), activities, lead bumps —
        each set-based: a prepared statement over plain tuples on SQLite, COPY or arrays
        and one statement on PostgreSQL."""
        rep.unmatched += d.unmatched
        rep.scanner_clicks += d.scanner_clicks
        sqlite = is_sqlite(conn)
        if not sqlite and (d.touches or d.suppressions or d.activities or d.recheck):
            # concurrent batches (SendGrid posts several at once) write the same touches and
            # leads in no common order: they would deadlock. They take turns from here to
            # commit; parsing, resolving, recording and deciding still overlap. (SQLite:
            # the transaction holds the one write lock already.)
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (APPLY_LOCK,))
        if d.touches:
            rep.settled += self._update_touches(conn, d.touches, now, has_mid)
        if d.suppressions:
            self._suppress(conn, d, rep)
        if d.activities:
            if sqlite:
                when = TimeBinder(True)
                executemany(conn, _ACTIVITIES_SQLITE, [
                    (a.external_id, a.lead_id, a.type, when[a.occurred_at],
                     json_text(a.properties), self.provider, when[now]) for a in d.activities])
            else:
                copy_then(conn, EVENT_ACTIVITIES_STAGE, [
                    (a.external_id, a.lead_id, a.type, a.occurred_at, json_text(a.properties),
                     self.provider, now) for a in d.activities], _ACTIVITIES_PG)
            rep.activities += len(d.activities)
        if d.recheck:
            if sqlite:
                executemany(conn, _RECHECK_SQLITE, [(i,) for i in sorted(d.recheck)])
            else:
                conn.exec_driver_sql(_RECHECK_PG, (int_array(sorted(d.recheck)),))

    def _suppress(self, conn: Connection, d: EngagementDecision, rep: ApplyReport) -> None:
        # only the rows inserted here count as new: a suppression another applier created
        # first gets no second audit transition (PostgreSQL: RETURNING lists only those;
        # SQLite: this transaction holds the one write lock, so what is not there yet is ours)
        rows = [(s.email, s.reason, ACTOR, s.detail, s.created_at) for s in d.suppressions]
        if is_sqlite(conn):
            have = {r[0] for r in select_in(conn, "SELECT email FROM suppressions WHERE",
                                            "email", [r[0] for r in rows], "text")}
            new = list(dict.fromkeys(r[0] for r in rows if r[0] not in have))
            when = TimeBinder(True)
            executemany(conn, _SUPPRESS_SQLITE, [(*r[:4], when[r[4]]) for r in rows
                                                 if r[0] not in have])
        else:
            new = [r[0] for r in fetch(conn, _SUPPRESS_PG, tuple(
                list(c) for c in zip(*rows, strict=True)))]
        rep.suppressed += len(new)
        rep.suppressed_emails += new
        by_email = {s.email: s for s in d.suppressions}
        audits = [by_email[e] for e in new
                  if e in by_email and by_email[e].lead_id is not None]
        if audits:
            when = TimeBinder(is_sqlite(conn))
            bulk_write(conn, _AUDIT_SQLITE, _AUDIT_PG, [
                (s.audit_reason, s.rule, when[s.at], s.lead_id) for s in audits])

    def _settle_candidates(self, conn: Connection, ids: list[int]) -> set[int]:
        """Touches that are in doubt/failed, or a cancelled scheduled send, right now."""
        return {r[0] for r in select_in(
            conn, "SELECT id FROM touches WHERE (status IN (?, ?) OR (status = ? AND "
            "provider_batch_id IS NOT NULL)) AND", "id", sorted(set(ids)),
            params=(*SETTLEABLE, CANCELLED))}

    def _update_touches(self, conn: Connection, changes: Sequence[TouchChange],
                        now: datetime, has_mid: frozenset[int] = frozenset()) -> int:
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
        # delivery state by precedence (see `_delivery_sql`)
        rows = [(c.touch_id, c.delivery_status, c.error,
                 rank(c.delivery_status) if c.delivery_status else -1,
                 c.delivered_at, c.last_event_at, c.message_id) for c in changes]
        if is_sqlite(conn):
            when = TimeBinder(True)
            stamp = when[now]
            rows = [(*r[:4], when[r[4]], when[r[5]], r[6], stamp) for r in rows]
            executemany(conn, _DELIVERY_SQLITE, [r for r in rows if r[0] not in has_mid])
            executemany(conn, _DELIVERY_SQLITE_HAS_MID, [r for r in rows if r[0] in has_mid])
        else:
            copy_then(conn, DELIVERY_STAGE, rows, _DELIVERY_PG, (now,))
        return settled
