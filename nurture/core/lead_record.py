"""One lead as stored, for people (`nurture lead show`): a plain record, no database row."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(slots=True, frozen=True)
class LeadRecord:
    """A lead's stored columns with its campaign state (None when it has none)."""

    id: int
    email: str
    created_at: datetime
    updated_at: datetime
    lifecycle_stage: str
    stage_entered_at: datetime
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    title: str | None = None
    industry: str | None = None
    company_size: int | None = None
    country: str | None = None
    timezone: str | None = None
    source: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    first_source: str | None = None
    first_utm_source: str | None = None
    first_utm_medium: str | None = None
    first_utm_campaign: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    engagement_since: datetime | None = None
    recycle_count: int = 0
    recycle_until: datetime | None = None
    buying_stage: str | None = None
    fit_score: float | None = None
    engagement_score: float | None = None
    score: float | None = None
    grade: str | None = None
    scored_at: datetime | None = None
    next_check_at: datetime | None = None
    activity_pending: bool = False
    version: int = 0
    campaign: str | None = None
    track: str | None = None
    track_rounds: dict[str, int] = field(default_factory=dict)
