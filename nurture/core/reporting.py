"""The vocabulary of the results reports, shared by the SQL that aggregates and the code that
turns aggregates into reports: which stages count as conversions, and a report's window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from nurture.core.domain import CUSTOMER, MQL, OPPORTUNITY, SAL, SQL

CONVERSIONS = (MQL, SAL, OPPORTUNITY, CUSTOMER)          # credited to steps
SOURCE_STAGES = (MQL, SAL, SQL, OPPORTUNITY, CUSTOMER)   # per source
ATTRIBUTED = (MQL, OPPORTUNITY, CUSTOMER)                # attribution models
UNKNOWN = "(unknown)"


@dataclass(frozen=True)
class Window:
    """The report's filters: [start, end) on the report's own time (see each query) and a
    campaign name. None = unbounded / every campaign."""

    start: datetime | None = None
    end: datetime | None = None
    campaign: str | None = None
