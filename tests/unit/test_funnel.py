"""The funnel report as a pure function: hand-built rows with answers worked out by hand."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from nurture.core.domain import LIFECYCLE_STAGES
from nurture.core.funnel import (
    FunnelHandoff,
    FunnelLead,
    FunnelTransition,
    compute_funnel,
    recycle_reason,
)
from nurture.entrypoints.cli.tables import print_funnel
from nurture.views.funnel import funnel_markdown

T0 = datetime(2026, 11, 1, tzinfo=UTC)
AS_OF = T0 + timedelta(days=30)
DAY = timedelta(days=1)


def lead(i, stage="new", created=0.0, entered=None, source="web"):
    """A lead created `created` days after T0, in `stage` since `entered` days (default
    `created`)."""
    return FunnelLead(i, source, stage, T0 + (entered if entered is not None else created) * DAY,
                      T0 + created * DAY)


def path(lead_id, *hops, rules=None):
    """Transitions along `stage, day, stage, day, stage…`: path(1, "new", 1, "nurturing")."""
    out = []
    rules = rules or {}
    stages, days = hops[0::2], hops[1::2]
    for n, (a, b, d) in enumerate(zip(stages, stages[1:], days, strict=False)):
        out.append(FunnelTransition(lead_id, a, b, T0 + d * DAY, rule=rules.get(b),
                                    reason=None, id=lead_id * 100 + n))
    return out


def handoff(lead_id, status="pending", created=0.0, due=2.0, resolved=None, why=None):
    return FunnelHandoff(lead_id, status, T0 + created * DAY, T0 + due * DAY,
                         None if resolved is None else T0 + resolved * DAY, why)


def funnel(leads=(), transitions=(), handoffs=(), as_of=AS_OF):
    return compute_funnel(list(leads), list(transitions), list(handoffs), as_of)


def conv(report):
    return {(c["from"], c["to"]): (c["reached_from"], c["reached_to"], c["rate"])
            for c in report["conversion"]}


# -- stages ---------------------------------------------------------------------------------
def test_every_stage_is_listed_in_funnel_order_zeros_included():
    r = funnel([lead(1, "new"), lead(2, "nurturing"), lead(3, "nurturing"),
                lead(4, "disqualified")])
    assert list(r["leads_by_stage"]) == list(LIFECYCLE_STAGES)
    assert r["leads_by_stage"] == {"new": 1, "nurturing": 2, "mql": 0, "sal": 0, "sql": 0,
                                   "opportunity": 0, "customer": 0, "recycled": 0,
                                   "disqualified": 1}
    assert r["leads_total"] == 4


def test_the_funnel_is_rebuilt_as_it_stood_at_as_of():
    leads = [lead(1, "sal"),                      # mql on day 5, sal on day 40 (after as_of)
             lead(2, "new", created=31),          # created after as_of: not in the report
             lead(3, "nurturing")]                # only a future transition: new at as_of
    trs = (path(1, "new", 1, "nurturing", 5, "mql", 40, "sal")
           + path(3, "new", 35, "nurturing"))
    r = funnel(leads, trs)
    assert r["leads_total"] == 2
    assert r["leads_by_stage"]["mql"] == 1 and r["leads_by_stage"]["sal"] == 0
    assert r["leads_by_stage"]["new"] == 1 and r["leads_by_stage"]["nurturing"] == 0
    assert r["reached"]["sal"] == 0
    # lead 3 has been new since it was created, 30 days before as_of; lead 1 was new 1 day
    assert r["median_days_in_stage"]["new"] == 15.5


def test_transitions_written_at_the_same_instant_keep_their_row_order():
    # one cycle: new -> nurturing (enrol), then the MQL rule fires in a later cycle
    trs = [FunnelTransition(1, "nurturing", "mql", T0 + DAY, id=2),
           FunnelTransition(1, "new", "nurturing", T0 + DAY, id=1)]
    r = funnel([lead(1, "mql")], trs)
    assert r["leads_by_stage"]["mql"] == 1
    assert conv(r)[("nurturing", "mql")] == (1, 1, 1.0)


# -- conversion -----------------------------------------------------------------------------
def test_conversion_between_consecutive_stages():
    leads = [lead(1, "sql"), lead(2, "mql"), lead(3, "nurturing"), lead(4, "new")]
    trs = (path(1, "new", 1, "nurturing", 5, "mql", 6, "sal", 10, "sql")
           + path(2, "new", 1, "nurturing", 3, "mql")
           + path(3, "new", 2, "nurturing"))
    c = conv(funnel(leads, trs))
    assert c[("new", "nurturing")] == (4, 3, 0.75)
    assert c[("nurturing", "mql")] == (3, 2, pytest.approx(0.6667))
    assert c[("mql", "sal")] == (2, 1, 0.5)
    assert c[("sal", "sql")] == (1, 1, 1.0)
    assert c[("sql", "opportunity")] == (1, 0, 0.0)
    assert c[("opportunity", "customer")] == (0, 0, None)


def test_a_skipped_stage_is_not_counted_as_reached():
    # lead 1 became an MQL on its first cycle (never nurtured); lead 2 went mql -> opportunity
    leads = [lead(1, "mql"), lead(2, "opportunity")]
    trs = path(1, "new", 1, "mql") + path(2, "new", 1, "nurturing", 2, "mql", 4, "opportunity")
    r = funnel(leads, trs)
    c = conv(r)
    assert r["reached"]["nurturing"] == 1 and r["reached"]["mql"] == 2
    assert c[("new", "nurturing")] == (2, 1, 0.5)
    assert c[("nurturing", "mql")] == (1, 1, 1.0)
    assert c[("mql", "sal")] == (2, 0, 0.0)
    assert r["reached"]["opportunity"] == 1 and c[("sal", "sql")] == (0, 0, None)


def test_a_lead_created_directly_in_a_stage_has_reached_only_that_stage():
    r = funnel([lead(1, "customer")])
    assert r["reached"]["customer"] == 1
    assert r["reached"]["opportunity"] == 0
    assert conv(r)[("opportunity", "customer")] == (0, 0, None)


def test_conversion_counts_entering_the_next_stage_after_the_earlier_one():
    # recycled from mql, back to nurturing and on to mql again: one lead, counted once
    trs = path(1, "new", 1, "nurturing", 2, "mql", 5, "recycled", 9, "nurturing", 12, "mql")
    c = conv(funnel([lead(1, "mql")], trs))
    assert c[("nurturing", "mql")] == (1, 1, 1.0)
    # a lead that was sal before it was (re-)mql did not convert mql -> sal by re-entering
    trs = path(2, "sal", 1, "mql")
    assert conv(funnel([lead(2, "mql")], trs))[("mql", "sal")] == (1, 0, 0.0)


# -- days in stage --------------------------------------------------------------------------
def test_median_days_in_stage_with_an_even_number_of_stays():
    leads = [lead(i, "mql") for i in (1, 2, 3, 4)]
    trs = [t for i, d in zip((1, 2, 3, 4), (1, 2, 4, 10), strict=True)
           for t in path(i, "nurturing", d, "mql")]
    r = funnel(leads, trs)
    assert r["median_days_in_stage"]["nurturing"] == 3.0       # (2 + 4) / 2
    # still in mql, counted up to as_of: 29, 28, 26, 20 days -> (26 + 28) / 2
    assert r["median_days_in_stage"]["mql"] == 27.0
    assert r["median_days_in_stage"]["sal"] is None


def test_median_days_with_an_odd_count_counts_each_stay_and_fractions():
    # lead 1 recycled twice: stays of 2 and 0.5 days; lead 2 still recycled since day 29.75
    leads = [lead(1, "nurturing"), lead(2, "recycled", entered=29.75)]
    trs = path(1, "nurturing", 3, "recycled", 5, "nurturing", 10, "recycled", 10.5,
               "nurturing")
    r = funnel(leads, trs)
    assert r["median_days_in_stage"]["recycled"] == 0.5        # stays 2, 0.5, 0.25
    assert r["leads_by_stage"]["recycled"] == 1


def test_a_lead_without_transitions_is_in_its_stage_since_stage_entered_at():
    r = funnel([lead(1, "sal", created=0, entered=20)])
    assert r["median_days_in_stage"]["sal"] == 10.0


# -- MQL handoffs ---------------------------------------------------------------------------
def test_acceptance_rate_is_accepted_over_resolved():
    hs = [handoff(1, "accepted", resolved=1), handoff(2, "accepted", resolved=1),
          handoff(3, "rejected", resolved=1, why="not_ready"),
          handoff(4, "expired", resolved=2, why="sla_expired"),
          handoff(5, "pending", created=29, due=31)]
    m = funnel([lead(i) for i in range(1, 6)], handoffs=hs)["mql"]
    assert (m["handed_off"], m["accepted"], m["rejected"], m["expired"], m["pending"]) == (
        5, 2, 1, 1, 1)
    assert m["acceptance_rate"] == 0.5


def test_sla_compliance_counts_expired_late_accepted_rejected_and_overdue_against():
    hs = [handoff(1, "accepted", due=2, resolved=1),            # on time
          handoff(2, "accepted", due=2, resolved=1.9),          # on time
          handoff(3, "accepted", due=2, resolved=3),            # late
          handoff(4, "accepted", due=2, resolved=2),            # at the deadline: late
          handoff(5, "expired", due=2, resolved=2, why="sla_expired"),
          handoff(6, "rejected", due=2, resolved=1, why="bad_data"),   # timely reject
          handoff(7, "pending", created=29.5, due=31.5),        # not due yet: left out
          handoff(8, "pending", created=27, due=29)]            # overdue: counts
    m = funnel([lead(i) for i in range(1, 9)], handoffs=hs)["mql"]
    assert m["sla_due"] == 7 and m["overdue"] == 1
    assert m["accepted_within_sla"] == 2
    assert m["sla_compliance"] == pytest.approx(2 / 7, abs=1e-4)
    assert m["answered_within_sla"] == 3
    assert m["sla_response_rate"] == pytest.approx(3 / 7, abs=1e-4)


def test_rates_are_null_when_nothing_is_resolved_or_due():
    m = funnel([lead(1)], handoffs=[handoff(1, "pending", created=29, due=31)])["mql"]
    assert m["acceptance_rate"] is None and m["sla_compliance"] is None
    assert m["sla_due"] == 0 and m["pending"] == 1


def test_a_handoff_is_seen_as_it_stood_at_as_of():
    hs = [handoff(1, "accepted", created=28, due=30.5, resolved=30.2),  # pending at as_of
          handoff(2, "rejected", created=31, due=33, resolved=32, why="no_budget")]  # later
    m = funnel([lead(1), lead(2)], handoffs=hs)["mql"]
    assert (m["handed_off"], m["pending"], m["accepted"], m["rejected"]) == (1, 1, 0, 0)
    assert funnel([lead(1), lead(2)], handoffs=hs)["rejects_by_reason"] == {}


def test_rejects_by_reason_ranked_by_count():
    hs = [handoff(1, "rejected", resolved=1, why="not_ready"),
          handoff(2, "rejected", resolved=1, why="bad_data"),
          handoff(3, "rejected", resolved=1, why="not_ready"),
          handoff(4, "rejected", resolved=1, why=None),
          handoff(5, "expired", resolved=2, why="sla_expired")]
    r = funnel([lead(i) for i in range(1, 6)], handoffs=hs)
    assert r["rejects_by_reason"] == {"not_ready": 2, "(unspecified)": 1, "bad_data": 1}
    assert list(r["rejects_by_reason"]) == ["not_ready", "(unspecified)", "bad_data"]


def test_mqls_by_source_counts_handoffs_and_names_missing_sources():
    leads = [lead(1, source="webinar"), lead(2, source=None), lead(3, source="webinar"),
             lead(4, source="paid_search"), lead(5, source="")]
    hs = [handoff(1), handoff(2), handoff(3), handoff(3, created=10, due=12), handoff(5),
          handoff(99)]                                        # a lead not in the rows
    r = funnel(leads, handoffs=hs)
    assert r["mqls_by_source"] == {"webinar": 3, "(unknown)": 3}
    assert sum(r["mqls_by_source"].values()) == r["mql"]["handed_off"] == 6


# -- recycles -------------------------------------------------------------------------------
@pytest.mark.parametrize(("rule", "reason", "want"), [
    ("routing.mql.sla_hours", "sla_expired: not accepted within 48 h", "sla_expired"),
    (None, "sla_expired: not accepted within 48 h", "sla_expired"),
    ("routing.sales_rejected.not_ready", "rejected by sales: not_ready", "not_ready"),
    ("routing.recycle.when", "went cold: no engagement for 60 days", "no_engagement"),
    ("routing.recycle.when.any[1]", "went cold: ...", "no_engagement"),
    ("sales.lost", "deal lost; back to nurture after 90 days", "deal_lost"),
    ("manual", "operator said so", "other"),
])
def test_recycle_reasons_come_from_the_rule(rule, reason, want):
    assert recycle_reason(rule, reason) == want


def test_recycled_counts_recycle_events_up_to_as_of_by_reason():
    R = "recycled"
    trs = (path(1, "mql", 3, R, 9, "nurturing", 12, "mql", 15, R,
                rules={R: "routing.mql.sla_hours"})
           + path(2, "mql", 4, R, rules={R: "routing.sales_rejected.no_budget"})
           + path(3, "nurturing", 5, R, rules={R: "routing.recycle.when"})
           + path(4, "nurturing", 35, R, rules={R: "routing.recycle.when"}))  # after as_of
    leads = [lead(1, R), lead(2, R), lead(3, R), lead(4, R)]
    r = funnel(leads, trs)
    assert r["recycled"] == {"count": 4, "by_reason": {"sla_expired": 2, "no_budget": 1,
                                                       "no_engagement": 1}}
    assert r["leads_by_stage"][R] == 3 and r["leads_by_stage"]["nurturing"] == 1


# -- output ---------------------------------------------------------------------------------
def _sample():
    leads = [lead(1, "sal", source="webinar"), lead(2, "recycled", source=None),
             lead(3, "new")]
    trs = (path(1, "new", 1, "nurturing", 2, "mql", 3, "sal")
           + path(2, "new", 1, "nurturing", 2, "mql", 3, "recycled",
                  rules={"recycled": "routing.sales_rejected.not_ready"}))
    hs = [handoff(1, "accepted", created=2, due=4, resolved=3),
          handoff(2, "rejected", created=2, due=4, resolved=3, why="not_ready")]
    return funnel(leads, trs, hs)


def test_the_report_is_one_json_object_with_snake_case_keys():
    r = _sample()
    again = json.loads(json.dumps(r))
    assert again == r
    assert again["as_of"] == "2026-12-01T00:00:00+00:00"
    for key in ("as_of", "leads_by_stage", "conversion", "median_days_in_stage", "mql",
                "rejects_by_reason", "mqls_by_source", "recycled"):
        assert key in again
    assert set(again["conversion"][0]) == {"from", "to", "reached_from", "reached_to", "rate"}


def test_markdown_has_a_table_per_section_with_the_numbers():
    md = funnel_markdown(_sample())
    assert md.startswith("# Lead funnel as of 2026-12-01 00:00 UTC")
    for heading in ("## Stages", "## Conversion", "## MQL handoffs",
                    "## Sales rejects by reason", "## MQLs by lead source",
                    "## Recycled by reason"):
        assert heading in md
    assert "| mql → sal | 2 | 1 | 50.0 % | 0 |" in md
    assert "| not_ready | 1 |" in md
    assert "| (unknown) | 1 |" in md
    for row in ("| Handed off | 2 |", "| Accepted | 1 |", "| Rejected | 1 |",
                "| Pending and overdue | 0 |", "| Acceptance rate | 50.0 % |",
                "| SLA compliance | 50.0 % |", "| SLA response rate | 100.0 % |"):
        assert row in md


def test_markdown_conversion_shows_leads_that_jumped_straight_to_the_next_stage():
    # the UI showed "nurturing → mql 0.0 %" beside 2 MQLs: both went new → mql directly.
    # The rate is right (no nurtured lead became an MQL); the table must say where they came
    # from instead of leaving a bare 0 %.
    leads = [lead(1, "mql"), lead(2, "mql"), lead(3, "nurturing")]
    trs = path(1, "new", 1, "mql") + path(2, "new", 1, "mql") + path(3, "new", 1, "nurturing")
    r = funnel(leads, trs)
    assert conv(r)[("nurturing", "mql")] == (1, 0, 0.0)
    assert r["reached"]["mql"] == 2
    md = funnel_markdown(r)
    assert "| nurturing → mql | 1 | 0 | 0.0 % | 2 |" in md
    assert "Reached to another way" in md


def test_markdown_tables_are_narrow_with_human_headers():
    md = funnel_markdown(_sample())
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("| -"):
            assert line.count(" | ") <= 4, line  # five columns at most: fits 1280 px
    assert "_" not in "".join(line for line in md.splitlines() if line.startswith("| ")
                              and line[2:3].isupper())


def test_markdown_says_none_for_empty_sections():
    md = funnel_markdown(funnel([lead(1)]))
    assert "## Sales rejects by reason\n\nNone." in md
    assert "| new | 1 | 1 | 30.0 |" in md
    assert "•" not in md


@pytest.mark.parametrize("big", [False, True])
def test_the_terminal_tables_fit_100_columns_without_cutting_cells(big):
    report = _sample()
    if big:  # a million-lead funnel with a long source name still fits, nothing cut
        report["leads_by_stage"] = {k: 1_234_567 for k in report["leads_by_stage"]}
        report["reached"] = {k: 12_345_678 for k in report["reached"]}
        report["mql"] |= {"handed_off": 1_234_567, "accepted": 1_234_567}
        report["mqls_by_source"] = {"partner_referral_program_emea_2026": 1_234_567}
    buf = io.StringIO()
    print_funnel(report, Console(file=buf, width=100, color_system=None))
    out = buf.getvalue()
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "…" not in out
    texts = ["Lead funnel as of 2026-12-01 00:00 UTC", "not_ready", "acceptance 50.0 %"]
    texts += (["1,234,567", "12,345,678", "partner_referral_program_emea_2026"] if big
              else ["webinar", "(unknown)"])
    for text in texts:
        assert text in out
    row = next(line for line in out.splitlines() if line.startswith("│ mql "))
    assert [cell.strip() for cell in row.split("│")[5:8]] == ["sal", "1", "50.0 %"]
