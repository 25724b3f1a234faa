"""Provider events (SendGrid Event Webhook): store the raw batch first, then apply each event
exactly once — touch delivery state, suppressions with an audit transition, and activities
that feed engagement scoring.

How exactly-once holds under crashes and concurrent appliers (webhook requests, `nurture
webhooks replay`, the flows' retries), on SQLite and PostgreSQL:

- every event gets one `provider_events` row (unique per provider + event id) before or in
  the transaction that applies it; an event is applied only by the transaction whose
  compare-and-set moved its row out of `pending`/`error`, so two appliers never both apply it;
- the fast path applies a whole batch in one transaction with set-based statements; if that
  fails, the events are stored as `pending` and applied one per transaction, and an event
  that still fails is kept as `error` with its reason — the rest of the batch applies;
- `apply_pending` (called by later runs) retries unapplied batches and `pending`/`error`
  events, counting attempts, and gives up after a limit (they stay listed);
- provider-event precedence is applied in SQL (CASE expressions), never read-modify-write, and
  a touch's status only changes by compare-and-set (in doubt/failed -> sent when an event
  proves the provider had it); a `sending` touch's status is left to the run that owns it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, func, literal, or_, select, update
from sqlalchemy.engine import Connection, Engine

from nurture.adapters.sendgrid_events import (
    MAX_EMAIL,
    MAX_EVENT_ID,
    MAX_KIND,
    BadEvent,
    Effect,
    WebhookRejected,
    clean_text,
    event_key,
    interpret,
    parse_batch,
)
from nurture.core.domain import CANCELLED, FAILED, IN_DOUBT, SENT
from nurture.store import tables as t
from nurture.store.db import write_tx
from nurture.store.rows import IN_BATCH
from nurture.store.rows import chunks as _chunks
from nurture.store.rows import insert_ignore as _insert_ignore

log = logging.getLogger(__name__)

# a later, stronger delivery state wins over an earlier, weaker one
DELIVERY_RANK = {"deferred": 1, "blocked": 2, "delivered": 3, "bounced": 4, "dropped": 4}
SETTLEABLE = (IN_DOUBT, FAILED)  # a touch we were unsure of, that the provider did have
ACTOR = "sendgrid:event-webhook"
MAX_ATTEMPTS = 5                 # applications of one event/batch before it is left listed
PENDING, APPLIED, UNMATCHED, IGNORED, ERROR = "pending", "applied", "unmatched", "ignored", \
    "error"
KNOWN_EVENTS = frozenset({"processed", "delivered", "deferred", "bounce", "dropped", "open",
                          "click", "spamreport", "unsubscribe", "group_unsubscribe",
                          "group_resubscribe"})


@dataclass
class ApplyReport:
    events: int = 0
    new: int = 0
    duplicates: int = 0
    unmatched: int = 0
    errors: int = 0
    settled: int = 0
    suppressed: int = 0
    activities: int = 0
    scanner_clicks: int = 0
    suppressed_emails: list[str] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if k != "suppressed_emails"}

    def merge(self, other: ApplyReport) -> None:
        for k, v in other.__dict__.items():
            if k == "suppressed_emails":
                self.suppressed_emails += v
            elif k != "events":
                setattr(self, k, getattr(self, k) + v)


@dataclass(slots=True)
class Parsed:
    """One raw event of a batch, interpreted: an `Effect` or the reason it is bad."""

    index: int
    key: str
    effect: Effect | None
    error: str | None
    raw_kind: str = "?"
    raw_email: str = ""


def parse_events(raw_events: Sequence[Any], now: float | None = None) -> list[Parsed]:
    """Interpret each raw event on its own; a bad one becomes an error, never an exception."""
    out = []
    for i, e in enumerate(raw_events):
        try:
            eff = interpret(e, now)
            out.append(Parsed(i, eff.event_id, eff, None))
        except Exception as exc:  # noqa: BLE001 - BadEvent, or anything odd: kept as an error
            if not isinstance(exc, BadEvent):
                exc = BadEvent(f"could not be read ({type(exc).__name__})")
            kind = e.get("event") if isinstance(e, dict) else None
            email = e.get("email") if isinstance(e, dict) else None
            out.append(Parsed(i, event_key(e), None, f"invalid event: {exc}",
                              clean_text(kind, MAX_KIND) if isinstance(kind, str) else "?",
                              clean_text(email, MAX_EMAIL).strip().lower()
                              if isinstance(email, str) else ""))
    return out


def _activity_id(provider: str, event_id: str) -> str:
    """Unique like the event id itself: a long id is digested, never cut (cut ids collide)."""
    ext = f"{provider}:{event_id}"
    if len(ext) <= 200:
        return ext
    return f"{provider}:sha1:" + hashlib.sha1(event_id.encode()).hexdigest()


def _lead_for(e: Effect, touches: dict, leads: dict, lead_of: dict):
    """The lead an event is about: its touch's lead, else the lead with that address."""
    if e.touch_id is not None:
        return lead_of.get(touches[e.touch_id].lead_id)
    return leads.get(e.email)


def _rank(col):
    return case(*((col == k, v) for k, v in DELIVERY_RANK.items()), else_=0)


@dataclass
class PendingReport:
    """What `apply_pending` did."""

    batches: int = 0            # unapplied batches taken up
    events_applied: int = 0     # pending/error events applied now
    events_failed: int = 0      # ... that failed again (attempts counted)
    given_up: int = 0           # events and batches left listed after MAX_ATTEMPTS
    settled: int = 0            # in-doubt/failed touches an earlier event proved sent
    cancelled: int = 0          # scheduled sends cancelled at the provider
    cancel_failed: int = 0      # cancellations that failed (retried next time)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class CancelFailed(Exception):
    """The provider did not confirm a scheduled-send cancellation (retried later)."""


class EventStore:
    def __init__(self, engine: Engine, provider: str = "sendgrid") -> None:
        self.engine = engine
        self.provider = provider

    # -- the raw batch -------------------------------------------------------------------
    def store_batch(self, body: str, signed: bool, n_events: int) -> int:
        """Keep the raw body before anything else happens (its own transaction). It counts
        as the first attempt: attempts are counted before trying, so a batch that kills
        the process every time is still given up after the limit."""
        with write_tx(self.engine) as conn:
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

    # -- applying a batch -----------------------------------------------------------------
    def apply_batch(self, batch_id: int, raw_events: Sequence[Any],
                    scanner_seconds: float = 10.0) -> ApplyReport:
        """Apply a stored batch: one transaction with set-based statements; if that fails,
        event by event (each in its own transaction), keeping failures as `error` rows."""
        parsed = parse_events(raw_events)
        try:
            with write_tx(self.engine) as conn:
                rep = self._ingest(conn, batch_id, parsed, scanner_seconds)
            return rep
        except Exception as exc:  # noqa: BLE001 - fall back to one event at a time
            log.warning("webhook batch %s: bulk apply failed (%r); applying event by event",
                        batch_id, exc)
            return self._apply_one_by_one(batch_id, parsed, scanner_seconds, exc)

    def _rows(self, batch_id: int, parsed: Sequence[Parsed], now: datetime,
              resolved: tuple[dict, dict, dict] | None = None) -> list[dict]:
        rows = []
        for p in parsed:
            e = p.effect
            if e is None:
                rows.append({"provider": self.provider, "event_id": p.key,
                             "batch_id": batch_id, "event": p.raw_kind or "?",
                             "email": p.raw_email, "touch_id": None, "lead_id": None,
                             "occurred_at": now, "outcome": ERROR, "error": p.error,
                             "attempts": 1, "payload": {"i": p.index}})
            else:
                lead = _lead_for(e, *resolved) if resolved else None
                rows.append({"provider": self.provider, "event_id": e.event_id,
                             "batch_id": batch_id, "event": e.event, "email": e.email,
                             "touch_id": e.touch_id if resolved else None,
                             "lead_id": lead.id if lead is not None else None,
                             "occurred_at": e.occurred_at,
                             "outcome": PENDING, "error": None, "attempts": 0,
                             "payload": {"i": p.index, "properties": e.properties,
                                         "detail": e.detail}})
        return rows

    def _insert_rows(self, conn: Connection, rows: list[dict]) -> None:
        if rows:  # executemany: "insertmanyvalues" batches on PostgreSQL, no compile per row
            conn.execute(_insert_ignore(self.engine, t.provider_events), rows)

    def _ours(self, conn: Connection, batch_id: int, keys: Iterable[str],
              outcomes: Sequence[str] = (PENDING,)) -> dict[str, tuple[int, int]]:
        """event id -> (row id, attempts) of this batch's rows still in `outcomes`."""
        PE, out = t.provider_events, {}
        for part in _chunks(sorted(set(keys)), IN_BATCH):
            for r in conn.execute(select(PE.c.event_id, PE.c.id, PE.c.attempts).where(
                    PE.c.provider == self.provider, PE.c.batch_id == batch_id,
                    PE.c.event_id.in_(part), PE.c.outcome.in_(outcomes))):
                out[r.event_id] = (r.id, r.attempts)
        return out

    def _finish_batch(self, conn: Connection, batch_id: int, rep: ApplyReport,
                      note: str | None, now: datetime) -> None:
        B = t.webhook_batches
        error = note or (f"{rep.errors} event(s) could not be applied: see provider_events "
                         "(outcome 'error')" if rep.errors else None)
        conn.execute(update(B).where(B.c.id == batch_id).values(
            applied_at=now, new_events=rep.new,
            error=clean_text(error, 2000) if error else None))

    def _ingest(self, conn: Connection, batch_id: int, parsed: list[Parsed],
                scanner_seconds: float) -> ApplyReport:
        """The fast path: record every event, apply the new valid ones set-based."""
        now = datetime.now(UTC)
        rep = ApplyReport(events=len(parsed))
        resolved = self._resolve(conn, [p.effect for p in parsed if p.effect is not None])
        self._insert_rows(conn, self._rows(batch_id, parsed, now, resolved))
        mine = self._ours(conn, batch_id, (p.key for p in parsed), (PENDING, ERROR))
        fresh, seen = [], set()
        for p in parsed:
            if p.key in mine and p.key not in seen:
                seen.add(p.key)
                if p.effect is None:
                    rep.errors += 1
                else:
                    fresh.append((mine[p.key][0], p.effect))
        rep.new = len(seen)
        rep.duplicates = len(parsed) - rep.new
        self._apply_claimed(conn, fresh, (PENDING,), rep, now, scanner_seconds, resolved)
        self._finish_batch(conn, batch_id, rep, None, now)
        return rep

    def _apply_one_by_one(self, batch_id: int, parsed: list[Parsed], scanner_seconds: float,
                          first: Exception) -> ApplyReport:
        now = datetime.now(UTC)
        rep = ApplyReport(events=len(parsed))
        rows = self._rows(batch_id, parsed, now)
        try:  # record every event as pending/error first (so a crash loses none of them)
            with write_tx(self.engine) as conn:
                self._insert_rows(conn, rows)
        except Exception:  # noqa: BLE001 - then row by row, the unstorable as bare errors
            for row in rows:
                try:
                    with write_tx(self.engine) as conn:
                        self._insert_rows(conn, [row])
                except Exception as exc:  # noqa: BLE001
                    bare = row | {"event": "?", "email": "", "occurred_at": now,
                                  "outcome": ERROR, "attempts": 1, "touch_id": None,
                                  "payload": {"i": row["payload"]["i"]},
                                  "error": clean_text(f"could not be stored: {exc!r}", 2000)}
                    try:
                        with write_tx(self.engine) as conn:
                            self._insert_rows(conn, [bare])
                    except Exception as exc2:  # noqa: BLE001 - retried with the batch
                        self.mark_failed(batch_id, f"event {row['payload']['i']} could not "
                                         f"be stored: {exc2!r}")
                        raise
        with self.engine.connect() as conn:
            mine = self._ours(conn, batch_id, (p.key for p in parsed), (PENDING, ERROR))
        seen: set[str] = set()
        for p in parsed:
            if p.key not in mine or p.key in seen:
                continue
            seen.add(p.key)
            if p.effect is None:
                rep.errors += 1
                continue
            one = self.apply_event(mine[p.key][0], p.effect, scanner_seconds, (PENDING,))
            if one is None:
                rep.errors += 1
            else:
                rep.merge(one)
        rep.new, rep.duplicates = len(seen), len(parsed) - len(seen)
        with write_tx(self.engine) as conn:
            self._finish_batch(conn, batch_id, rep, f"applied event by event after the bulk "
                               f"apply failed ({first!r})" + (
                                   f"; {rep.errors} event(s) in error" if rep.errors else ""),
                               now)
        return rep

    def apply_event(self, row_id: int, effect: Effect, scanner_seconds: float,
                    expected: Sequence[str]) -> ApplyReport | None:
        """Apply one recorded event in its own transaction (None when it failed: the row is
        left in `error` with the reason and one more attempt counted)."""
        rep = ApplyReport(events=1)
        try:
            with write_tx(self.engine) as conn:
                self._apply_claimed(conn, [(row_id, effect)], expected, rep,
                                    datetime.now(UTC), scanner_seconds)
            return rep
        except Exception as exc:  # noqa: BLE001 - kept with its reason, retried later
            PE = t.provider_events
            with write_tx(self.engine) as conn:
                conn.execute(update(PE).where(PE.c.id == row_id, PE.c.outcome.in_(expected))
                             .values(outcome=ERROR, attempts=PE.c.attempts + 1,
                                     error=clean_text(f"apply failed: {exc!r}", 2000)))
            return None

    # -- the set-based application --------------------------------------------------------
    def _resolve(self, conn: Connection, effects: list[Effect]) -> tuple[dict, dict, dict]:
        """Touches (by our id, else the provider's message id) and leads of the events."""
        T, L = t.touches, t.leads

        def rows_by(key, values, *cols) -> list:
            out: list = []
            for part in _chunks(sorted(values), IN_BATCH):
                out += conn.execute(select(*cols).where(key.in_(part))).all()
            return out

        touch_cols = (T.c.id, T.c.lead_id, T.c.sent_at, T.c.delivered_at,
                      T.c.provider_message_id)
        touches = {r.id: r for r in rows_by(
            T.c.id, {e.touch_id for e in effects if e.touch_id is not None}, *touch_cols)}
        mids = {e.message_id for e in effects
                if e.message_id and (e.touch_id is None or e.touch_id not in touches)}
        by_mid = {r.provider_message_id: r for r in rows_by(
            T.c.provider_message_id, mids, *touch_cols)}
        touches.update((r.id, r) for r in by_mid.values())
        for e in effects:
            if (e.touch_id is None or e.touch_id not in touches) and e.message_id in by_mid:
                e.touch_id = by_mid[e.message_id].id
            elif e.touch_id is not None and e.touch_id not in touches:
                e.touch_id = None  # a touch id we never issued: keep the event, unmatched
        lead_cols = (L.c.id, L.c.email)
        leads = {r.email: r for r in rows_by(L.c.email, {e.email for e in effects},
                                             *lead_cols)}
        lead_ids = {touches[e.touch_id].lead_id for e in effects if e.touch_id}
        lead_ids -= {r.id for r in leads.values()}
        lead_of = {r.id: r for r in rows_by(L.c.id, lead_ids, *lead_cols)}
        lead_of.update((r.id, r) for r in leads.values())
        return touches, leads, lead_of

    def _apply_claimed(self, conn: Connection, items: list[tuple[int, Effect]],
                       expected: Sequence[str], rep: ApplyReport, now: datetime,
                       scanner_seconds: float,
                       resolved: tuple[dict, dict, dict] | None = None) -> None:
        """Claim the events' rows (compare-and-set out of `expected`) and apply those this
        transaction claimed, set-based."""
        if not items:
            return
        PE, L = t.provider_events, t.leads
        effects = [e for _, e in items]
        known = resolved is not None  # the rows were inserted with touch and lead ids
        touches, leads, lead_of = resolved or self._resolve(conn, effects)

        def lead_for(e: Effect):
            return _lead_for(e, touches, leads, lead_of)

        # the claim: only rows this statement moves out of `expected` are applied here
        outcome: dict[int, str] = {}
        for row_id, e in items:
            lead = lead_for(e)
            outcome[row_id] = (UNMATCHED if lead is None and e.touch_id is None
                               else APPLIED if e.event in KNOWN_EVENTS else IGNORED)
        claimed: set[int] = set()
        by_outcome: dict[str, list[int]] = {}
        for row_id, o in outcome.items():
            by_outcome.setdefault(o, []).append(row_id)
        for o, ids in by_outcome.items():
            for part in _chunks(sorted(ids), IN_BATCH):
                claimed.update(conn.execute(
                    update(PE).where(PE.c.id.in_(part), PE.c.outcome.in_(expected))
                    .values(outcome=o, error=None, attempts=PE.c.attempts + 1)
                    .returning(PE.c.id)).scalars())
        # who the events turned out to be about (for `nurture lead show` and reports)
        link = [{"pid": row_id, "tid": e.touch_id, "lid": getattr(lead_for(e), "id", None)}
                for row_id, e in items if row_id in claimed and not known
                and (e.touch_id is not None or lead_for(e) is not None)]
        if link:
            conn.execute(update(PE).where(PE.c.id == bindparam("pid")).values(
                touch_id=bindparam("tid"), lead_id=bindparam("lid")), link)
        fresh = sorted((e for row_id, e in items if row_id in claimed),
                       key=lambda e: e.occurred_at)

        per_touch: dict[int, dict[str, Any]] = {}
        suppress_rows: dict[str, dict] = {}
        transitions: dict[str, dict] = {}
        activities: list[dict] = []
        recheck: set[int] = set()
        delivered_now: dict[int, datetime] = {}
        for e in fresh:
            if e.event == "delivered" and e.touch_id is not None:
                delivered_now.setdefault(e.touch_id, e.occurred_at)
        for e in fresh:
            lead = lead_for(e)
            if lead is None and e.touch_id is None:
                rep.unmatched += 1
            if e.touch_id is not None:
                self._fold(per_touch.setdefault(e.touch_id, {
                    "tid": e.touch_id, "settle": None, "went_out": None, "mid": None,
                    "ds": None, "err": None, "da": None, "le": None}), e)
            if e.suppress and e.email not in suppress_rows:
                suppress_rows[e.email] = {
                    "email": e.email, "reason": e.suppress, "source": ACTOR,
                    "detail": e.detail or e.event, "created_at": now}
                if lead is not None:
                    transitions[e.email] = {
                        "lead_id": lead.id, "reason": clean_text(
                            f"email suppressed ({e.suppress}): SendGrid reported {e.event}"
                            + (f" — {e.detail}" if e.detail else "")
                            + "; no more marketing email"),
                        "rule": f"suppression.{e.suppress}", "at": e.occurred_at}
            if e.activity and lead is not None:
                kind, props = e.activity, dict(e.properties)
                if e.touch_id is not None:
                    props["touch_id"] = e.touch_id
                if e.is_click and e.touch_id is not None:
                    row = touches[e.touch_id]
                    ref = delivered_now.get(e.touch_id) or row.delivered_at or row.sent_at
                    if ref is not None and e.occurred_at - ref <= timedelta(
                            seconds=scanner_seconds):
                        kind = "email_scanner_click"  # a link scanner, not the lead
                        rep.scanner_clicks += 1
                activities.append({"external_id": _activity_id(self.provider, e.event_id),
                                   "lead_id": lead.id, "type": kind,
                                   "occurred_at": e.occurred_at, "properties": props,
                                   "source": self.provider, "received_at": now})
                recheck.add(lead.id)
            if e.suppress and lead is not None:
                recheck.add(lead.id)

        if per_touch:
            rep.settled += self._update_touches(conn, list(per_touch.values()), now)
        if suppress_rows:
            # RETURNING lists only the rows this statement inserted: a suppression another
            # applier created first gets no second audit transition
            new: list[str] = list(conn.execute(
                _insert_ignore(self.engine, t.suppressions).returning(t.suppressions.c.email),
                list(suppress_rows.values())).scalars())
            rep.suppressed += len(new)
            rep.suppressed_emails += new
            audit = [transitions[email] for email in new if email in transitions]
            for tr in audit:  # the stage as it is now, read by the INSERT itself
                stage = select(L.c.lifecycle_stage).where(L.c.id == tr["lead_id"]) \
                    .scalar_subquery()
                conn.execute(t.transitions.insert().values(
                    lead_id=tr["lead_id"], from_stage=stage, to_stage=stage,
                    reason=tr["reason"], rule=tr["rule"], actor=ACTOR, at=tr["at"]))
        if activities:
            conn.execute(_insert_ignore(self.engine, t.activities), activities)
            rep.activities += len(activities)
        for part in _chunks(sorted(recheck), IN_BATCH):
            conn.execute(update(L).where(L.c.id.in_(part)).values(
                next_check_at=None, activity_pending=True, version=L.c.version + 1))

    @staticmethod
    def _fold(agg: dict[str, Any], e: Effect) -> None:
        """Merge one event into its touch's aggregate (events sorted by time)."""
        if e.settles_sent and agg["settle"] is None:
            agg["settle"] = e.occurred_at
        if e.went_out and agg["went_out"] is None:
            agg["went_out"] = e.event
        if e.message_id and not agg["mid"]:
            agg["mid"] = e.message_id
        if e.delivery_status and DELIVERY_RANK[e.delivery_status] >= \
                DELIVERY_RANK.get(agg["ds"] or "", 0):
            agg["ds"] = e.delivery_status
            agg["err"] = (clean_text(f"{e.delivery_status}: {e.detail or ''}".strip())
                          if e.delivery_status in ("bounced", "dropped", "blocked") else None)
        if e.event == "delivered" and agg["da"] is None:
            agg["da"] = e.occurred_at
        if agg["le"] is None or e.occurred_at > agg["le"]:
            agg["le"] = e.occurred_at

    def _update_touches(self, conn: Connection, aggs: list[dict], now: datetime) -> int:
        """Three executemany UPDATEs: settle (CAS on status), a cancellation that came too
        late (CAS), then delivery state by precedence — all decided by the database."""
        T = t.touches
        when, text = T.c.delivered_at.type, T.c.error.type
        settled = 0
        settle = [{"tid": a["tid"], "at": a["settle"]} for a in aggs if a["settle"]]
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
        late = [{"tid": a["tid"], "msg": f"sent after all: SendGrid reported "
                 f"{a['went_out']} for this cancelled scheduled send"}
                for a in aggs if a["went_out"]]
        if late:
            conn.execute(update(T).where(T.c.id == bindparam("tid"), T.c.status == CANCELLED,
                                         T.c.provider_batch_id.is_not(None))
                         .values(status=SENT, error=bindparam("msg", type_=text),
                                 updated_at=now), late)
        ds = bindparam("ds", type_=T.c.delivery_status.type)
        err = bindparam("err", type_=text)
        le = bindparam("le", type_=when)
        stronger = and_(ds.is_not(None), _rank(ds) >= _rank(T.c.delivery_status))
        conn.execute(update(T).where(T.c.id == bindparam("tid")).values(
            delivery_status=case((stronger, ds), else_=T.c.delivery_status),
            error=case((and_(stronger, err.is_not(None)), err), else_=T.c.error),
            delivered_at=func.coalesce(T.c.delivered_at, bindparam("da", type_=when)),
            last_event_at=case((or_(T.c.last_event_at.is_(None), le > T.c.last_event_at), le),
                               else_=T.c.last_event_at),
            provider_message_id=func.coalesce(
                T.c.provider_message_id, bindparam("mid", type_=T.c.provider_message_id.type)),
            updated_at=now), [
            {"tid": a["tid"], "ds": a["ds"], "err": a["err"], "da": a["da"], "le": a["le"],
             "mid": a["mid"]} for a in aggs])
        return settled

    # -- one-click unsubscribe -------------------------------------------------------------
    def unsubscribe(self, email: str, via: str, touch_id: int | None = None,
                    campaign: str | None = None) -> bool:
        """A person unsubscribed through our link (one-click or the page): suppress the address,
        record the activity (it scores) and an audit transition. Idempotent; True when new
        (only the request whose INSERT created the suppression writes the rest)."""
        email = clean_text(email, MAX_EMAIL).strip().lower()
        now = datetime.now(UTC)
        L = t.leads
        with write_tx(self.engine) as conn:
            new = conn.execute(_insert_ignore(self.engine, t.suppressions).values(
                email=email, reason="unsubscribe", source=f"unsubscribe-link:{via}",
                detail=clean_text(f"campaign {campaign}, touch {touch_id}", 500)
                if campaign else None, created_at=now).returning(t.suppressions.c.email)
            ).first()
            if new is None:
                return False
            lead_id = conn.execute(select(L.c.id).where(L.c.email == email)).scalar()
            if lead_id is not None:
                stage = select(L.c.lifecycle_stage).where(L.c.id == lead_id).scalar_subquery()
                conn.execute(t.transitions.insert().values(
                    lead_id=lead_id, from_stage=stage, to_stage=stage,
                    reason=clean_text(f"email suppressed (unsubscribe): the lead unsubscribed "
                                      f"via the {via} link"
                                      + (f" in {campaign}" if campaign else "")
                                      + "; no more marketing email"),
                    rule="suppression.unsubscribe", actor=f"lead:{via}", at=now))
                conn.execute(_insert_ignore(self.engine, t.activities).values(
                    external_id=f"unsubscribe:{email}:{int(now.timestamp())}"[:200],
                    lead_id=lead_id, type="unsubscribe", occurred_at=now,
                    properties={"via": via, "touch_id": touch_id,
                                "campaign": clean_text(campaign, 200) if campaign else None},
                    source="unsubscribe", received_at=now))
                conn.execute(update(L).where(L.c.id == lead_id).values(
                    next_check_at=None, activity_pending=True, version=L.c.version + 1))
        return True

    # -- scheduled sends of suppressed addresses ---------------------------------------------
    def scheduled_to_cancel(self, now: datetime | None = None,
                            emails: Sequence[str] | None = None) -> list[tuple[int, str]]:
        """(touch id, provider batch id) of sends scheduled for later at the provider, to
        addresses that are suppressed now: they must not go out."""
        T, L, S = t.touches, t.leads, t.suppressions
        q = (select(T.c.id, T.c.provider_batch_id).join(L, L.c.id == T.c.lead_id)
             .join(S, S.c.email == L.c.email)
             .where(T.c.status == SENT, T.c.send_at > (now or datetime.now(UTC)),
                    T.c.provider_batch_id.is_not(None)).order_by(T.c.id))
        with self.engine.connect() as conn:
            if emails is None:
                return [tuple(r) for r in conn.execute(q)]
            out: list[tuple[int, str]] = []
            for part in _chunks(sorted(set(emails)), IN_BATCH):
                out += [tuple(r) for r in conn.execute(q.where(L.c.email.in_(part)))]
            return out

    def mark_cancelled(self, touch_id: int, batch_id: str, why: str) -> bool:
        """sent -> cancelled, only if the touch is still the scheduled send we cancelled."""
        T = t.touches
        with write_tx(self.engine) as conn:
            return conn.execute(
                update(T).where(T.c.id == touch_id, T.c.status == SENT,
                                T.c.provider_batch_id == batch_id)
                .values(status=CANCELLED, error=clean_text(why), updated_at=datetime.now(UTC))
                .returning(T.c.id)).first() is not None

    def cancel_scheduled(self, cancel: Callable[[str], None], emails: Sequence[str] | None
                         = None, now: datetime | None = None) -> tuple[int, list[str]]:
        """Cancel at the provider (`cancel(batch_id)`, raising on failure) every scheduled
        send to a suppressed address, then mark the touch cancelled. Failures change nothing
        and are retried by the next call. Returns (cancelled, errors)."""
        done, errors = 0, []
        for touch_id, batch_id in self.scheduled_to_cancel(now, emails):
            try:
                cancel(batch_id)
            except Exception as exc:  # noqa: BLE001 - network or provider: retried later
                errors.append(f"touch {touch_id}: {exc}")
                continue
            done += self.mark_cancelled(
                touch_id, batch_id, "scheduled send cancelled at SendGrid (batch "
                f"{batch_id}): the address was suppressed before it went out")
        return done, errors

    # -- retries by later runs ---------------------------------------------------------------
    def apply_pending(self, scanner_seconds: float = 10.0, max_attempts: int = MAX_ATTEMPTS,
                      cancel: Callable[[str], None] | None = None,
                      limit: int = 10_000) -> PendingReport:
        """Apply what earlier attempts could not: stored batches never applied (a crash, a
        database outage) and events left `pending` or `error`, each up to `max_attempts`
        times, then left listed (`webhooks replay --json`). With `cancel`, also retry
        cancelling scheduled sends to suppressed addresses. Safe to run concurrently."""
        rep = PendingReport()
        B, PE = t.webhook_batches, t.provider_events
        emails: list[str] = []
        taken: set[int] = set()  # batches applied just now: their errors wait for next time
        for batch_id, body in self.unapplied_batches(max_attempts)[:limit]:
            rep.batches += 1
            taken.add(batch_id)
            with write_tx(self.engine) as conn:  # counted before trying (see store_batch)
                conn.execute(update(B).where(B.c.id == batch_id, B.c.applied_at.is_(None))
                             .values(attempts=B.c.attempts + 1))
            try:
                raw = parse_batch(body.encode("utf-8", "surrogatepass"))
            except WebhookRejected as exc:
                with write_tx(self.engine) as conn:  # never applicable: give up now
                    conn.execute(update(B).where(B.c.id == batch_id).values(
                        attempts=max_attempts, error=f"unreadable body: {exc}"))
                rep.errors.append(f"batch {batch_id}: {exc}")
                continue
            try:
                applied = self.apply_batch(batch_id, raw, scanner_seconds)
            except Exception as exc:  # noqa: BLE001 - counted by mark_failed; next run
                self.mark_failed(batch_id, repr(exc))
                rep.errors.append(f"batch {batch_id}: {exc!r}")
                continue
            rep.events_applied += applied.new - applied.errors
            rep.events_failed += applied.errors
            emails += applied.suppressed_emails
        # single events still pending or in error, batch by batch (their raw event is there)
        with self.engine.connect() as conn:
            todo = conn.execute(
                select(PE.c.id, PE.c.batch_id, PE.c.payload, PE.c.outcome)
                .where(PE.c.provider == self.provider, PE.c.outcome.in_((PENDING, ERROR)),
                       PE.c.attempts < max_attempts).order_by(PE.c.id).limit(limit)).all()
        bodies: dict[int, list[Any] | None] = {}
        for row in todo:
            if row.batch_id in taken:
                continue
            raw = None
            if row.batch_id is not None and row.batch_id not in bodies:
                with self.engine.connect() as conn:
                    body = conn.execute(select(B.c.body).where(B.c.id == row.batch_id)
                                        ).scalar()
                try:
                    bodies[row.batch_id] = (parse_batch(body.encode("utf-8", "surrogatepass"))
                                            if body is not None else None)
                except WebhookRejected:
                    bodies[row.batch_id] = None
            events = bodies.get(row.batch_id) if row.batch_id is not None else None
            i = (row.payload or {}).get("i") if isinstance(row.payload, dict) else None
            if events is not None and isinstance(i, int) and 0 <= i < len(events):
                raw = events[i]
            if raw is None:
                self._fail_event(row.id, (row.outcome,), "the raw event is no longer stored",
                                 give_up=max_attempts)
                rep.events_failed += 1
                continue
            try:
                eff = interpret(raw)
            except BadEvent as exc:
                self._fail_event(row.id, (row.outcome,), f"invalid event: {exc}")
                rep.events_failed += 1
                continue
            one = self.apply_event(row.id, eff, scanner_seconds, (row.outcome,))
            if one is None:
                rep.events_failed += 1
            else:
                rep.events_applied += 1
                emails += one.suppressed_emails
        rep.settled = self.settle_from_events()
        with self.engine.connect() as conn:
            rep.given_up = conn.execute(select(func.count()).select_from(PE).where(
                PE.c.outcome.in_((PENDING, ERROR)), PE.c.attempts >= max_attempts)
            ).scalar_one() + conn.execute(select(func.count()).select_from(B).where(
                B.c.applied_at.is_(None), B.c.attempts >= max_attempts)).scalar_one()
        if cancel is not None:
            rep.cancelled, errors = self.cancel_scheduled(cancel)
            rep.cancel_failed = len(errors)
            rep.errors += errors
        return rep

    def settle_from_events(self) -> int:
        """In doubt / failed -> sent for touches an event already proved SendGrid had: an
        event applied while the touch was still `sending` (its status is the run's) leaves
        `last_event_at`; if that run then died, no later event may come to settle it."""
        T = t.touches
        with write_tx(self.engine) as conn:
            return len(conn.execute(
                update(T).where(or_(*(T.c.status == s for s in SETTLEABLE)),
                                T.c.last_event_at.is_not(None))
                .values(status=SENT, sent_at=func.coalesce(T.c.sent_at, T.c.last_event_at),
                        error=None, updated_at=datetime.now(UTC))
                .returning(T.c.id)).all())

    def _fail_event(self, row_id: int, expected: Sequence[str], why: str,
                    give_up: int | None = None) -> None:
        PE = t.provider_events
        with write_tx(self.engine) as conn:
            conn.execute(update(PE).where(PE.c.id == row_id, PE.c.outcome.in_(expected))
                         .values(outcome=ERROR, error=clean_text(why),
                                 attempts=(literal(give_up) if give_up is not None
                                           else PE.c.attempts + 1)))

    def failures(self, max_attempts: int = MAX_ATTEMPTS, limit: int = 100) -> dict[str, Any]:
        """Events and batches still not applied (listed by `nurture webhooks replay --json`)."""
        PE, B = t.provider_events, t.webhook_batches
        with self.engine.connect() as conn:
            events = [dict(r._mapping) for r in conn.execute(
                select(PE.c.id, PE.c.event_id, PE.c.batch_id, PE.c.event, PE.c.outcome,
                       PE.c.attempts, PE.c.error)
                .where(PE.c.outcome.in_((PENDING, ERROR))).order_by(PE.c.id).limit(limit))]
            batches = [dict(r._mapping) for r in conn.execute(
                select(B.c.id, B.c.attempts, B.c.error).where(B.c.applied_at.is_(None))
                .order_by(B.c.id).limit(limit))]
        for item in events + batches:
            item["given_up"] = item["attempts"] >= max_attempts
        return {"events": events, "batches": batches}


__all__ = ["ApplyReport", "CancelFailed", "EventStore", "MAX_ATTEMPTS", "MAX_EVENT_ID",
           "PendingReport", "parse_events"]
