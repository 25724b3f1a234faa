"""The row checks read the column limits only through the `FieldLimits` port: the same
checks hold for whatever the store says its columns hold (here a tiny in-memory schema),
and the SQL store's `TableLimits` answers as `nurture.store.limits` does for the tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nurture.services.activity_rows import activity_row
from nurture.services.import_rows import RowError
from nurture.services.lead_rows import lead_row
from nurture.store import limits
from nurture.store import tables as t
from nurture.store.field_limits import TableLimits

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class TinyLimits:
    """`FieldLimits` of a made-up schema: every text column holds 8 characters."""

    earliest = datetime(1970, 1, 1, tzinfo=UTC)
    columns = {("leads", "first_name"), ("leads", "timezone"), ("activities", "external_id"),
               ("activities", "type")}

    def text_problem(self, table: str, column: str, value: Any, what: str | None = None
                     ) -> str | None:
        if (table, column) in self.columns and len(value) > 8:
            return f"{what or column} is too long for 8"
        return None

    def int_max(self, table: str, column: str) -> int:
        return 100

    def time_problem(self, value: datetime, what: str, now: datetime | None = None
                     ) -> str | None:
        return f"{what} is late" if value > (now or NOW) + timedelta(days=1) else None

    def json_problem(self, value: Any, what: str) -> str | None:
        return None

    def type_name(self, value: Any) -> str:
        return "a thing"


def test_lead_row_checks_against_the_limits_it_is_given():
    row = lead_row({"email": "Ada@Example.com", "first_name": "Ada", "company_size": "42",
                    "plan": "pro"}, TinyLimits())
    assert row == {"email": "ada@example.com", "first_name": "Ada", "company_size": 42,
                   "attributes": {"plan": "pro"}}
    with pytest.raises(RowError) as too_long:
        lead_row({"email": "a@example.com", "first_name": "Adalberta"}, TinyLimits())
    assert (too_long.value.code, str(too_long.value)) == ("too_long",
                                                          "first_name is too long for 8")
    with pytest.raises(RowError) as too_big:
        lead_row({"email": "a@example.com", "company_size": "101"}, TinyLimits())
    assert str(too_big.value) == "company_size '101' is larger than 100"


def test_activity_row_checks_against_the_limits_it_is_given():
    obj = {"id": "e1", "email": "a@example.com", "type": "visit",
           "occurred_at": "2026-01-01T00:00:00Z", "properties": {"p": 1}}
    assert activity_row(obj, TinyLimits(), now=NOW)["id"] == "e1"
    with pytest.raises(RowError) as long_id:
        activity_row(obj | {"id": "e" * 9}, TinyLimits(), now=NOW)
    assert (long_id.value.code, str(long_id.value)) == ("bad_id", "id is too long for 8")
    with pytest.raises(RowError) as late:
        activity_row(obj | {"occurred_at": "2026-03-01T00:00:00Z"}, TinyLimits(), now=NOW)
    assert (late.value.code, str(late.value)) == ("future", "occurred_at is late")
    with pytest.raises(RowError) as bad_type:
        activity_row(obj | {"type": ["x"]}, TinyLimits(), now=NOW)
    assert str(bad_type.value) == "invalid type a thing (lower_snake_case expected)"


def test_table_limits_answer_from_the_tables():
    tl = TableLimits()
    long_name = "x" * (limits.max_length(t.leads.c.first_name) + 1)
    assert tl.text_problem("leads", "first_name", long_name) == \
        limits.string_problem(long_name, t.leads.c.first_name)
    assert tl.text_problem("leads", "first_name", "Ada") is None
    assert tl.text_problem("leads", "no_such_column", long_name) is None
    assert tl.int_max("leads", "company_size") == limits.int_range(t.leads.c.company_size)[1]
