"""Suppressions from our own unsubscribe link, scheduled sends to suppressed addresses, and
settling touches an applied event already proved sent. Part of `EventStore`
(see `nurture.store.events`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.engine import Engine

from nurture.core.domain import CANCELLED, SENT
from nurture.core.engagement import (
    SETTLEABLE,
)
from nurture.core.provider_events import (
    MAX_EMAIL,
    clean_text,
)
from nurture.store import tables as t
from nurture.store.db import write_tx
from nurture.store.rows import IN_BATCH, chunks, insert_ignore


class Suppressions:
    """Unsubscribes, cancelling scheduled sends to suppressed addresses, settling."""

    engine: Engine
    provider: str

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
            new = conn.execute(insert_ignore(self.engine, t.suppressions).values(
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
                conn.execute(insert_ignore(self.engine, t.activities).values(
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
            for part in chunks(sorted(set(emails)), IN_BATCH):
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
