"""The costs CSV: clear errors naming the line, nothing half-read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nurture.entrypoints.cli.results import parse_costs

HEAD = "source,utm_campaign,period_start,period_end,amount\n"


def test_parse_costs():
    rows = parse_costs(HEAD + "website,,2026-09-01,2026-09-30,1200.50\n"
                              ",spring,2026-09-01,2026-09-30,300\n")
    assert rows[0]["source"] == "website" and rows[0]["amount"] == 1200.5
    # a date end means the whole day
    assert rows[0]["period_end"] == datetime(2026, 10, 1, tzinfo=UTC)
    assert rows[1]["utm_campaign"] == "spring" and rows[1]["currency"] == "USD"


@pytest.mark.parametrize("line,why", [
    ("website,,2026-09-01,2026-09-30,abc", "line 2"),
    ("website,,2026-09-01,2026-09-30,-1", ">= 0"),
    ("website,,2026-09-30,2026-09-01,1", "after"),
    (",,2026-09-01,2026-09-30,1", "source or a utm_campaign"),
])
def test_bad_costs(line, why):
    with pytest.raises(ValueError, match=why):
        parse_costs(HEAD + line + "\n")
    with pytest.raises(ValueError, match="lacks"):
        parse_costs("source,amount\nx,1\n")
