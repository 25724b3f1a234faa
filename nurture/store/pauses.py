"""Campaign status (`campaign_status`): paused campaigns get nothing planned or claimed.

One row per campaign (its primary key), created on the first pause. Pause and resume are
compare-and-set on `status`, so two guards pausing at once record one pause, and a resume
racing a pause either wins or is told the campaign was not paused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from nurture.store import tables as t
from nurture.store.db import write_tx
from nurture.store.rows import insert_ignore

PAUSED, ACTIVE = "paused", "active"


class CampaignStatus:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def list(self) -> list[dict[str, Any]]:
        CS = t.campaign_status
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(CS).order_by(CS.c.campaign))]

    def paused(self) -> frozenset[str]:
        CS = t.campaign_status
        with self.engine.connect() as conn:
            return frozenset(conn.execute(select(CS.c.campaign)
                                          .where(CS.c.status == PAUSED)).scalars())

    def pause(self, campaign: str, reason: str, by: str, at: datetime | None = None,
              metrics: dict[str, Any] | None = None) -> int | None:
        """Pause `campaign` unless it is paused already. Returns the pause number (names its
        Prefect event), or None when it was already paused."""
        CS = t.campaign_status
        at = at or datetime.now(UTC)
        with write_tx(self.engine) as conn:
            conn.execute(insert_ignore(self.engine, CS).values(
                campaign=campaign, status=ACTIVE, version=0, pauses=0))
            return conn.execute(
                update(CS).where(CS.c.campaign == campaign, CS.c.status == ACTIVE)
                .values(status=PAUSED, version=CS.c.version + 1, pauses=CS.c.pauses + 1,
                        reason=reason, metrics=metrics, paused_at=at, paused_by=by,
                        event_emitted_at=None)
                .returning(CS.c.pauses)).scalar()

    def resume(self, campaign: str, by: str, at: datetime | None = None) -> bool:
        """Resume a paused campaign; False when it was not paused. The guard then judges it
        only on touches sent after `at`."""
        CS = t.campaign_status
        with write_tx(self.engine) as conn:
            return conn.execute(
                update(CS).where(CS.c.campaign == campaign, CS.c.status == PAUSED)
                .values(status=ACTIVE, version=CS.c.version + 1,
                        resumed_at=at or datetime.now(UTC), resumed_by=by)
                .returning(CS.c.campaign)).first() is not None

    def unannounced(self) -> list[dict[str, Any]]:
        """Paused campaigns whose `nurture.campaign.paused` event was not emitted yet."""
        CS = t.campaign_status
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(CS).where(CS.c.status == PAUSED, CS.c.event_emitted_at.is_(None)))]

    def announced(self, campaign: str, pauses: int) -> None:
        CS = t.campaign_status
        with write_tx(self.engine) as conn:
            conn.execute(update(CS).where(CS.c.campaign == campaign, CS.c.pauses == pauses,
                                          CS.c.event_emitted_at.is_(None))
                         .values(event_emitted_at=datetime.now(UTC)))
