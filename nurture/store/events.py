"""Provider events (SendGrid Event Webhook): store the raw batch first, then apply each parsed
event exactly once — touch delivery state, suppressions with an audit transition, and
activities that feed engagement scoring. What an event changes is decided by
`nurture.core.engagement`; parsing is the adapter's; orchestration (parse, retry) is
`nurture.services.events`. This module writes.

How exactly-once holds under crashes and concurrent appliers (webhook requests, `nurture
webhooks replay`, the flows' retries), on SQLite and PostgreSQL:

- every event gets one `provider_events` row (unique per provider + event id) before or in
  the transaction that applies it; an event is applied only by the transaction whose
  compare-and-set moved its row out of `pending`/`error`, so two appliers never both apply it;
- the fast path applies a whole batch in one transaction with set-based statements; if that
  fails, the events are stored as `pending` and applied one per transaction, and an event
  that still fails is kept as `error` with its reason — the rest of the batch applies;
- attempts are counted; after a limit an event or batch is left listed (`failures`);
- delivery precedence is applied in SQL (a CASE over core's ranks), never read-modify-write,
  and a touch's status only changes by compare-and-set (in doubt/failed -> sent when an event
  proves the provider had it); a `sending` touch's status is left to the run that owns it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy.engine import Connection, Engine

from nurture.core.provider_events import (
    ApplyReport,
    CancelFailed,
    Parsed,
    PendingReport,
    ProviderEvent,
    clean_text,
)
from nurture.store.db import write_tx
from nurture.store.event_apply import EventApplication
from nurture.store.event_records import ERROR, MAX_ATTEMPTS, PENDING, UNAPPLIED, BatchRecords
from nurture.store.event_suppressions import Suppressions

log = logging.getLogger(__name__)


class EventStore(BatchRecords, EventApplication, Suppressions):
    """The provider-event tables: record, claim, apply decisions, suppress, settle."""

    def __init__(self, engine: Engine, provider: str = "sendgrid") -> None:
        self.engine = engine
        self.provider = provider

    def ingest(self, body: str, signed: bool, parsed: list[Parsed],
               scanner_seconds: float = 10.0) -> tuple[int, ApplyReport | None]:
        """Store the raw batch and apply it in one transaction (the webhook's fast path):
        committed, it is stored and applied; the raw row is written first and the apply
        runs under a savepoint, so if applying fails the batch is still stored and then
        applied event by event (as `apply_parsed`). Raises only when nothing was stored (the
        provider must send it again); (batch id, None): stored, applying failed even event
        by event — the reason is kept on the batch and later runs retry it."""
        failed: Exception | None = None
        with write_tx(self.engine) as conn:
            # the body goes in with the row's last update, so it is written once (SQLite
            # rewrites a whole row, overflow pages and all, on every update)
            batch_id = self.insert_batch(conn, "", signed, len(parsed))
            try:
                with conn.begin_nested():
                    rep = self._ingest(conn, batch_id, parsed, scanner_seconds, body)
            except Exception as exc:  # noqa: BLE001 - the batch row stays; see below
                failed = exc
                self.set_body(conn, batch_id, body)
        if failed is None:
            return batch_id, rep
        log.warning("webhook batch %s: bulk apply failed (%r); applying event by event",
                    batch_id, failed)
        try:
            return batch_id, self._apply_one_by_one(batch_id, parsed, scanner_seconds, failed)
        except Exception as exc:  # noqa: BLE001 - stored raw: retried by later runs
            with contextlib.suppress(Exception):
                self.mark_failed(batch_id, repr(exc))
            return batch_id, None

    def apply_parsed(self, batch_id: int, parsed: list[Parsed],
                     scanner_seconds: float = 10.0) -> ApplyReport:
        """Apply a stored, parsed batch: one transaction with set-based statements; if that
        fails, event by event (each in its own transaction), keeping failures as `error`."""
        try:
            with write_tx(self.engine) as conn:
                return self._ingest(conn, batch_id, parsed, scanner_seconds)
        except Exception as exc:  # noqa: BLE001 - fall back to one event at a time
            log.warning("webhook batch %s: bulk apply failed (%r); applying event by event",
                        batch_id, exc)
            return self._apply_one_by_one(batch_id, parsed, scanner_seconds, exc)

    def apply_event(self, row_id: int, effect: ProviderEvent, scanner_seconds: float,
                    expected: Sequence[str]) -> ApplyReport | None:
        """Apply one recorded event in its own transaction (None when it failed: the row is
        left in `error` with the reason and one more attempt counted)."""
        rep = ApplyReport(events=1)
        try:
            with write_tx(self.engine) as conn:
                self.apply_claimed(conn, [(row_id, effect)], expected, rep,
                                   datetime.now(UTC), scanner_seconds)
            return rep
        except Exception as exc:  # noqa: BLE001 - kept with its reason, retried later
            self.fail_event(row_id, expected, f"apply failed: {exc!r}")
            return None

    def _ingest(self, conn: Connection, batch_id: int, parsed: list[Parsed],
                scanner_seconds: float, body: str | None = None) -> ApplyReport:
        """The fast path: record every event, apply the new valid ones set-based."""
        now = datetime.now(UTC)
        rep = ApplyReport(events=len(parsed))
        res = self.resolve(conn, [p.effect for p in parsed if p.effect is not None])
        resolved = iter(res.events)
        parsed = [p if p.effect is None else _with_effect(p, next(resolved)) for p in parsed]
        lead_of = {p.effect.event_id: res.lead_for(p.effect) for p in parsed if p.effect}
        # recorded as applied (or unmatched/ignored): this transaction applies them
        rows = self.event_rows(batch_id, parsed, now, lead_of, res.outcome)
        inserted = self.record_event_rows(conn, rows)
        # rows an earlier attempt at this same batch left unapplied are claimed (CAS)
        mine = {k: (i, 1) for k, i in inserted.items()}
        rest = {p.key for p in parsed} - inserted.keys()
        if rest:
            mine |= self.rows_of_batch(conn, batch_id, rest, UNAPPLIED)
        fresh: list[tuple[int, ProviderEvent]] = []
        for p in _first_of_each(parsed, mine):
            if p.effect is None:
                rep.errors += 1
            else:
                fresh.append((mine[p.key][0], p.effect))
        rep.new = len({p.key for p in parsed if p.key in mine})
        rep.duplicates = len(parsed) - rep.new
        self.apply_claimed(conn, fresh, (PENDING,), rep, now, scanner_seconds,
                           res, frozenset(inserted.values()))
        self.finish_batch(conn, batch_id, rep, None, now, body)
        return rep

    def _record_one_by_one(self, batch_id: int, rows: list[tuple], now: datetime) -> None:
        """Each event as its own row, the unstorable as bare errors (a crash loses none)."""
        for row in rows:
            try:
                with write_tx(self.engine) as conn:
                    self.insert_event_rows(conn, [row])
            except Exception as exc:  # noqa: BLE001
                i = row[-1]["i"]
                bare = (*row[:3], "?", "", None, row[6], now, ERROR,
                        clean_text(f"could not be stored: {exc!r}", 2000), 1, {"i": i})
                try:
                    with write_tx(self.engine) as conn:
                        self.insert_event_rows(conn, [bare])
                except Exception as exc2:  # noqa: BLE001 - retried with the batch
                    self.mark_failed(batch_id, f"event {i} could not be stored: {exc2!r}")
                    raise

    def _apply_one_by_one(self, batch_id: int, parsed: list[Parsed], scanner_seconds: float,
                          first: Exception) -> ApplyReport:
        now = datetime.now(UTC)
        rep = ApplyReport(events=len(parsed))
        rows = self.event_rows(batch_id, parsed, now)
        try:  # record every event as pending/error first (so a crash loses none of them)
            with write_tx(self.engine) as conn:
                self.insert_event_rows(conn, rows)
        except Exception:  # noqa: BLE001 - then row by row
            self._record_one_by_one(batch_id, rows, now)
        with self.engine.connect() as conn:
            mine = self.rows_of_batch(conn, batch_id, (p.key for p in parsed), UNAPPLIED)
        for p in _first_of_each(parsed, mine):
            one = (self.apply_event(mine[p.key][0], p.effect, scanner_seconds, (PENDING,))
                   if p.effect is not None else None)
            if one is None:
                rep.errors += 1
            else:
                rep.merge(one)
        rep.new = len({p.key for p in parsed if p.key in mine})
        rep.duplicates = len(parsed) - rep.new
        with write_tx(self.engine) as conn:
            self.finish_batch(conn, batch_id, rep, f"applied event by event after the bulk "
                              f"apply failed ({first!r})" + (
                                  f"; {rep.errors} event(s) in error" if rep.errors else ""),
                              now)
        return rep


def _with_effect(p: Parsed, effect: ProviderEvent) -> Parsed:
    """`p` about `effect` (resolving changed only a few: the rest stay the same object)."""
    return p if effect is p.effect else replace(p, effect=effect)


def _first_of_each(parsed: list[Parsed], mine: dict[str, tuple[int, int]]) -> list[Parsed]:
    """The first event of each id this batch still has unapplied (repeats are duplicates)."""
    seen: set[str] = set()
    out = []
    for p in parsed:
        if p.key in mine and p.key not in seen:
            seen.add(p.key)
            out.append(p)
    return out


__all__ = ["ApplyReport", "CancelFailed", "EventStore", "MAX_ATTEMPTS", "PendingReport"]
