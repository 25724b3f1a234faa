"""The funnel report end to end on SQLite and PostgreSQL: rows written the way the cycle and
sales feedback write them, read back in bulk by `load_funnel_rows`, computed, and printed by
`nurture report funnel`."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, insert, select

from nurture.core.funnel import FunnelHandoff, FunnelLead, FunnelTransition, compute_funnel
from nurture.entrypoints.cli.main import CliError
from nurture.entrypoints.cli.reports import add_commands
from nurture.store import tables as t
from nurture.store.funnel_queries import load_funnel_rows

T0 = datetime(2026, 11, 1, tzinfo=UTC)
AS_OF = T0 + timedelta(days=29)
MQL_REASON = "MQL rule routing.mql.when.any[0] held: score ≥ 100 and grade in [A, B] " * 3

# email: (source, created day, current stage, [(from, to, day, rule, reason)])
LEADS = {
    "ada@example.com": ("website", 0, "sql", [
        ("new", "nurturing", 1, "welcome.audience", "enrolled in campaign welcome"),
        ("nurturing", "mql", 5, "routing.mql.when.any[0]", MQL_REASON),
        ("mql", "sal", 6, "sales.accept", "accepted by sales"),
        ("sal", "sql", 35, "sales.sql", "after as_of: not in the report")]),
    "bob@example.com": ("website", 0, "recycled", [
        ("new", "nurturing", 1, "welcome.audience", "enrolled in campaign welcome"),
        ("nurturing", "mql", 3, "routing.mql.when.any[1]", MQL_REASON),
        ("mql", "recycled", 5, "routing.mql.sla_hours", "sla_expired: not accepted in 48 h")]),
    "cy@example.com": (None, 0, "recycled", [
        ("new", "mql", 2, "routing.mql.when.any[1]", MQL_REASON),
        ("mql", "recycled", 3, "routing.sales_rejected.not_ready",
         "rejected by sales: not_ready; back to nurture after 30 days")]),
    "dee@example.com": ("webinar", 0, "nurturing", [
        ("new", "nurturing", 2, "welcome.audience", "enrolled in campaign welcome")]),
    "eve@example.com": ("webinar", 10, "new", []),
    "gus@example.com": ("webinar", 0, "mql", [
        ("new", "nurturing", 1, "welcome.audience", "enrolled in campaign welcome"),
        ("nurturing", "mql", 27, "routing.mql.when.any[0]", MQL_REASON)]),
    "fay@example.com": ("partner", 40, "new", []),          # created after as_of
}
# email: (status, created day, sla due day, resolved day, outcome reason)
HANDOFFS = {
    "ada@example.com": ("accepted", 5, 7, 6, None),
    "bob@example.com": ("expired", 3, 5, 5, "sla_expired"),
    "cy@example.com": ("rejected", 2, 4, 3, "not_ready"),
    "gus@example.com": ("pending", 27, 29, None, None),    # overdue at as_of
}


def day(n: float | None) -> datetime | None:
    return None if n is None else T0 + timedelta(days=n)


def seed(engine) -> dict[str, int]:
    """Insert the scenario with SQLAlchemy Core; returns email -> lead id."""
    with engine.begin() as conn:
        conn.execute(insert(t.leads), [
            {"email": email, "source": source, "attributes": {}, "created_at": day(created),
             "updated_at": day(created), "lifecycle_stage": stage,
             "stage_entered_at": day(trs[-1][2] if trs else created)}
            for email, (source, created, stage, trs) in LEADS.items()])
        ids = dict(conn.execute(select(t.leads.c.email, t.leads.c.id)).all())
        conn.execute(insert(t.transitions), [
            {"lead_id": ids[email], "from_stage": a, "to_stage": b, "at": day(d), "rule": rule,
             "reason": reason, "actor": "system:daily-cycle"}
            for email, (*_, trs) in LEADS.items() for a, b, d, rule, reason in trs])
        conn.execute(insert(t.handoffs), [
            {"lead_id": ids[email], "owner": "ana@acme.example", "status": status,
             "rule": "routing.mql.when", "reason": MQL_REASON, "created_at": day(created),
             "sla_due_at": day(due), "resolved_at": day(resolved), "outcome_reason": why}
            for email, (status, created, due, resolved, why) in HANDOFFS.items()])
    return ids


def test_load_funnel_rows_reads_every_row_as_the_report_types(migrated_engine):
    ids = seed(migrated_engine)
    leads, transitions, handoffs = load_funnel_rows(migrated_engine)

    assert all(type(r) is FunnelLead for r in leads)
    assert all(type(r) is FunnelTransition for r in transitions)
    assert all(type(r) is FunnelHandoff for r in handoffs)
    by_id = {r.id: r for r in leads}
    assert set(by_id) == set(ids.values())
    cy = by_id[ids["cy@example.com"]]
    assert (cy.source, cy.lifecycle_stage, cy.created_at, cy.stage_entered_at) == (
        None, "recycled", T0, day(3))
    assert by_id[ids["ada@example.com"]].source == "website"
    # UTC on both backends (PostgreSQL would otherwise hand back its session time zone)
    assert {r.created_at.tzinfo for r in leads} == {UTC}
    assert {tr.at.tzinfo for tr in transitions} == {UTC}

    assert len(transitions) == sum(len(v[3]) for v in LEADS.values())
    recycles = sorted((tr.rule, tr.reason) for tr in transitions if tr.to_stage == "recycled")
    assert recycles == [
        ("routing.mql.sla_hours", "sla_expired: not accepted in 48 h"),
        ("routing.sales_rejected.not_ready",
         "rejected by sales: not_ready; back to nurture after 30 days")]
    # reasons of other transitions (long MQL explanations) are not read
    assert {(tr.rule, tr.reason) for tr in transitions if tr.to_stage != "recycled"} == {
        (None, None)}
    assert all(tr.at.tzinfo is not None and tr.id > 0 for tr in transitions)

    got = {(h.lead_id, h.status, h.created_at, h.sla_due_at, h.resolved_at, h.outcome_reason)
           for h in handoffs}
    assert got == {(ids[e], s, day(c), day(d), day(r), why)
                   for e, (s, c, d, r, why) in HANDOFFS.items()}


def test_loading_is_one_query_per_table_however_many_leads(migrated_engine):
    seed(migrated_engine)
    with migrated_engine.begin() as conn:
        conn.execute(insert(t.leads), [
            {"email": f"bulk{i}@example.com", "attributes": {}, "created_at": T0,
             "updated_at": T0, "stage_entered_at": T0} for i in range(300)])
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(migrated_engine, "before_cursor_execute", record)
    try:
        leads, _, _ = load_funnel_rows(migrated_engine)
    finally:
        event.remove(migrated_engine, "before_cursor_execute", record)
    assert len(leads) == len(LEADS) + 300
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 3, selects
    assert [s.split("FROM")[-1].split()[0] for s in selects] == [
        "leads", "transitions", "handoffs"]


def test_the_funnel_end_to_end(migrated_engine):
    seed(migrated_engine)
    r = compute_funnel(*load_funnel_rows(migrated_engine), AS_OF)

    assert r["as_of"] == "2026-11-30T00:00:00+00:00"
    assert r["leads_total"] == 6
    assert r["leads_by_stage"] == {"new": 1, "nurturing": 1, "mql": 1, "sal": 1, "sql": 0,
                                   "opportunity": 0, "customer": 0, "recycled": 2,
                                   "disqualified": 0}
    assert {c["from"]: (c["reached_from"], c["reached_to"], c["rate"])
            for c in r["conversion"]} == {
        "new": (6, 4, 0.6667), "nurturing": (4, 3, 0.75), "mql": (4, 1, 0.25),
        "sal": (1, 0, 0.0), "sql": (0, 0, None), "opportunity": (0, 0, None)}
    assert r["median_days_in_stage"] == {
        "new": 1.5,          # 1, 1, 2, 2, 1 days and eve still new for 19
        "nurturing": 15.0,   # 4, 2, 26 and dee still nurturing for 27
        "mql": 1.5,          # 1, 2, 1 and gus still mql for 2
        "sal": 23.0,         # ada, in sal since day 6 (her sql move is after as_of)
        "sql": None, "opportunity": None, "customer": None,
        "recycled": 25.0,    # bob 24, cy 26
        "disqualified": None}
    assert r["mql"] == {"handed_off": 4, "accepted": 1, "rejected": 1, "expired": 1,
                        "pending": 1, "overdue": 1, "acceptance_rate": 0.3333, "sla_due": 4,
                        "accepted_within_sla": 1, "sla_compliance": 0.25,
                        "answered_within_sla": 2, "sla_response_rate": 0.5}
    assert r["rejects_by_reason"] == {"not_ready": 1}
    assert list(r["mqls_by_source"].items()) == [("website", 2), ("(unknown)", 1),
                                                 ("webinar", 1)]
    assert r["recycled"] == {"count": 2, "by_reason": {"not_ready": 1, "sla_expired": 1}}


def run_report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nurture")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_report_funnel_command_prints_one_json_object(migrated_engine, db_url, monkeypatch,
                                                      capsys):
    seed(migrated_engine)
    monkeypatch.setenv("NURTURE_DATABASE_URL", db_url)
    assert run_report(["report", "funnel", "--json", "--as-of", "2026-11-30T00:00:00Z"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out)
    assert out.count("\n") == 1
    assert report == json.loads(json.dumps(
        compute_funnel(*load_funnel_rows(migrated_engine), AS_OF)))

    assert run_report(["report", "funnel", "--as-of", "2026-11-30"]) == 0
    text = capsys.readouterr().out
    assert "Lead funnel as of 2026-11-30 00:00 UTC" in text
    assert "6 leads; 4 MQLs handed to sales (acceptance 33.3 %, SLA compliance 25.0 %)" in text


def test_report_funnel_refuses_a_bad_as_of(tmp_path, monkeypatch):
    monkeypatch.setenv("NURTURE_DATABASE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    with pytest.raises(CliError, match="--as-of 'yesterday' is not an ISO 8601"):
        run_report(["report", "funnel", "--as-of", "yesterday"])
    assert not (tmp_path / "none.db").exists()


def test_report_funnel_help_names_the_options_and_definitions(capsys):
    with pytest.raises(SystemExit) as exit_:
        run_report(["report", "funnel", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in ("--as-of", "--json", "one JSON object", "SLA compliance is",
                  "only if its transitions say it entered it"):
        assert words in text
