"""`nurture sales …` and `nurture handoffs list` as a user runs them (subprocesses)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, update
from test_cli import nurture, ok, one_sentence_error, world  # noqa: F401 - fixture

from nurture.store import tables as t
from nurture.store.db import make_engine

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def make_mql(root, email="mql@example.com", owner="ana@acme.example"):
    engine = make_engine(f"sqlite:///{root / 'n.db'}")
    with engine.begin() as conn:
        lead_id = conn.execute(insert(t.leads).values(
            email=email, attributes={}, created_at=NOW, updated_at=NOW, source="website",
            lifecycle_stage="mql", stage_entered_at=NOW, recycle_count=0)
            .returning(t.leads.c.id)).scalar_one()
        conn.execute(insert(t.handoffs).values(
            lead_id=lead_id, owner=owner, status="pending", rule="routing.mql.when.any[1]",
            reason="demo request", score=72.0, grade="B", created_at=NOW,
            sla_due_at=NOW + timedelta(hours=48)))
    engine.dispose()


def test_accept_reject_and_refusals(world):  # noqa: F811
    root, env = world
    make_mql(root, "a@example.com")
    make_mql(root, "b@example.com", owner="ben@acme.example")
    out = ok(nurture("sales", "accept", "A@Example.com", "--actor", "ana", "--note", "called",
                     "--json", env=env, cwd=root))
    res = json.loads(out.stdout)
    assert (res["from"], res["to"], res["actor"], res["note"], res["handoff"]) == (
        "mql", "sal", "ana", "called", "accepted")

    err = one_sentence_error(nurture("sales", "reject", "b@example.com", "--reason", "meh",
                                     env=env, cwd=root))
    assert "unknown reason code 'meh'" in err and "not_ready" in err and "bad_data" in err
    err = one_sentence_error(nurture("sales", "accept", "a@example.com", env=env, cwd=root))
    assert "this lead is sal" in err
    err = one_sentence_error(nurture("sales", "won", "nobody@example.com", env=env, cwd=root))
    assert "no lead with email nobody@example.com" in err

    out = ok(nurture("sales", "reject", "b@example.com", "--reason", "not_ready",
                     env=env, cwd=root))
    assert "mql → recycled" in out.stdout and "back to nurture on" in out.stdout

    out = ok(nurture("handoffs", "list", "--csv", env=env, cwd=root))
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [(r["email"], r["owner"], r["status"], r["outcome_reason"]) for r in rows] == [
        ("a@example.com", "ana@acme.example", "accepted", ""),
        ("b@example.com", "ben@acme.example", "rejected", "not_ready")]
    out = ok(nurture("handoffs", "list", "--status", "rejected", env=env, cwd=root))
    assert "b@example.com" in out.stdout and "a@example.com" not in out.stdout


def test_opportunity_won_lost(world):  # noqa: F811
    root, env = world
    make_mql(root, "c@example.com")
    ok(nurture("sales", "opportunity", "c@example.com", env=env, cwd=root))
    out = ok(nurture("sales", "lost", "c@example.com", "--json", env=env, cwd=root))
    res = json.loads(out.stdout)
    assert (res["from"], res["to"], res["rule"]) == ("opportunity", "recycled", "sales.lost")
    engine = make_engine(f"sqlite:///{root / 'n.db'}")
    with engine.begin() as conn:
        conn.execute(update(t.leads).values(lifecycle_stage="opportunity"))
    engine.dispose()
    out = ok(nurture("sales", "won", "c@example.com", "--json", env=env, cwd=root))
    assert json.loads(out.stdout)["to"] == "customer"
