"""The `FieldLimits` port (`nurture.services.ports`) over the real tables: the importers ask
it what a column holds, and every answer comes from `nurture.store.limits`, which reads the
table definitions — so services check values without importing the schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Table

from nurture.store import limits
from nurture.store import tables as t


class TableLimits:
    """`FieldLimits` for the `leads` and `activities` tables."""

    earliest: datetime = limits.EARLIEST

    def __init__(self, tables: tuple[Table, ...] = (t.leads, t.activities)) -> None:
        # asked per value of every imported row: one dict lookup, not SQLAlchemy's
        self._columns: dict[tuple[str, str], Column] = {
            (table.name, c.name): c for table in tables for c in table.columns}
        self._int_max: dict[tuple[str, str], int] = {}

    def text_problem(self, table: str, column: str, value: Any, what: str | None = None
                     ) -> str | None:
        found = self._columns.get((table, column))
        return None if found is None else limits.string_problem(value, found, what)

    def int_max(self, table: str, column: str) -> int:
        key = (table, column)
        if key not in self._int_max:
            self._int_max[key] = limits.int_range(self._columns[key])[1]
        return self._int_max[key]

    def time_problem(self, value: datetime, what: str, now: datetime | None = None
                     ) -> str | None:
        return limits.time_problem(value, what, now=now)

    def json_problem(self, value: Any, what: str) -> str | None:
        return limits.json_problem(value, what)

    def type_name(self, value: Any) -> str:
        return limits.type_name(value)
