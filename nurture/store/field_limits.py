"""The `FieldLimits` port (`nurture.services.ports`) over the real tables: the importers ask
it what a column holds, and every answer comes from `nurture.store.limits`, which reads the
table definitions — so services check values without importing the schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table

from nurture.store import limits
from nurture.store import tables as t


class TableLimits:
    """`FieldLimits` for the `leads` and `activities` tables."""

    earliest: datetime = limits.EARLIEST

    def __init__(self) -> None:
        self._tables: dict[str, Table] = {"leads": t.leads, "activities": t.activities}

    def text_problem(self, table: str, column: str, value: Any, what: str | None = None
                     ) -> str | None:
        columns = self._tables[table].c
        if column not in columns:
            return None
        return limits.string_problem(value, columns[column], what)

    def int_max(self, table: str, column: str) -> int:
        return limits.int_range(self._tables[table].c[column])[1]

    def time_problem(self, value: datetime, what: str, now: datetime | None = None
                     ) -> str | None:
        return limits.time_problem(value, what, now=now)

    def json_problem(self, value: Any, what: str) -> str | None:
        return limits.json_problem(value, what)

    def type_name(self, value: Any) -> str:
        return limits.type_name(value)
