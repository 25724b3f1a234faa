"""120 days of the marketing ↔ sales loop over the real store (SQLite and PostgreSQL): every
path — accepted, rejected for each kind of reason, SLA expired, recycled then re-engaged then
MQL again, too many recycles — with the stages, transitions and exactly which steps each
lead was sent and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from nurture.adapters.delivery.memory import MemoryTransport
from nurture.core.rendering import Renderer
from nurture.core.sales import FeedbackRefused
from nurture.services.cycle import SendContext, plan_chunk, run_cycle
from nurture.services.feedback import record_feedback
from nurture.store import tables as t
from nurture.store.sales import SalesStore

START = datetime(2026, 11, 2, 7, 0, tzinfo=UTC)  # Monday; cycles run 07:00 UTC


def day(n: float, hour: int = 7) -> datetime:
    return START + timedelta(days=n, hours=hour - 7)


LEADS = ("won", "notready", "baddata", "sla", "reengaged", "toomany", "lost")


def email(name: str) -> str:
    return f"{name}@example.com"


def demo(n: int, name: str, k: int = 0) -> dict:
    return {"id": f"{name}-demo-{n}-{k}", "email": email(name), "type": "demo_request",
            "occurred_at": day(n, 12), "properties": {}}


# activities by the day they happen (inserted that day, after its 07:00 cycle)
ACTIVITIES = {
    2: [demo(2, n) for n in LEADS],
    6: [demo(6, "toomany")],
    10: [demo(10, "toomany")],
    14: [demo(14, "toomany")],
    20: [{"id": "re-pricing", "email": email("reengaged"), "type": "pricing_page_view",
          "occurred_at": day(20, 12), "properties": {}}],
    25: [demo(25, "reengaged")],
}
# sales feedback by day (given at 10:00): (lead, action, reason)
FEEDBACK = {
    4: [("won", "accept", None), ("notready", "reject", "not_ready"),
        ("baddata", "reject", "bad_data"), ("reengaged", "reject", "bad_timing"),
        ("toomany", "reject", "not_ready"), ("lost", "accept", None)],
    8: [("toomany", "reject", "not_ready")],
    10: [("won", "opportunity", None), ("lost", "opportunity", None)],
    12: [("toomany", "reject", "no_budget")],
    16: [("toomany", "reject", "not_ready")],
    27: [("reengaged", "accept", None)],
    30: [("won", "won", None)],
    40: [("lost", "lost", "bad_timing")],
}


@pytest.fixture
def loop(store, rules, templates_dir):
    # fit 0, grade D: only the demo-request rule (routing.mql.when.any[1]) makes an MQL
    store.upsert_leads([{"email": email(n), "first_name": n.title(), "timezone": "UTC",
                         "source": "website", "company": "Initech", "industry": "retail",
                         "created_at": START - timedelta(days=1)} for n in LEADS])
    transport = MemoryTransport()
    ctx = SendContext(rules=rules, renderer=Renderer(templates_dir), transport=transport,
                      secret="s" * 32, public_url="https://nurture.example")
    sales = SalesStore(store.engine)
    for n in range(121):
        run_cycle(store, ctx, day(n), "UTC", chunk_size=4)
        for name, action, reason in FEEDBACK.get(n, []):
            record_feedback(sales, rules, email(name), action, day(n, 10), reason=reason,
                            note=f"day {n}", actor="rep@acme.example")
        if n in ACTIVITIES:
            store.insert_activities(ACTIVITIES[n])
    return store, transport


def sent(transport, name):
    return [(m.step, m.send_at) for m in transport.sent if m.to_email == email(name)]


def moves(store, name):
    with store.engine.connect() as conn:
        return conn.execute(
            select(t.transitions.c.from_stage, t.transitions.c.to_stage, t.transitions.c.at,
                   t.transitions.c.rule, t.transitions.c.reason, t.transitions.c.actor,
                   t.transitions.c.note)
            .join(t.leads, t.leads.c.id == t.transitions.c.lead_id)
            .where(t.leads.c.email == email(name)).order_by(t.transitions.c.id)).all()


def lead(store, name):
    with store.engine.connect() as conn:
        return conn.execute(select(t.leads).where(t.leads.c.email == email(name))).one()


def handoffs(store, name):
    with store.engine.connect() as conn:
        return conn.execute(
            select(t.handoffs.c.status, t.handoffs.c.outcome_reason, t.handoffs.c.owner)
            .join(t.leads, t.leads.c.id == t.handoffs.c.lead_id)
            .where(t.leads.c.email == email(name)).order_by(t.handoffs.c.id)).all()


FIRST = [("buyers-guide", day(0, 9))]  # everyone's first education step, before any MQL


def test_accepted_then_won(loop):
    store, transport = loop
    assert [(f, to, at) for f, to, at, *_ in moves(store, "won")] == [
        ("new", "nurturing", day(0)), ("nurturing", "mql", day(3)),
        ("mql", "sal", day(4, 10)), ("sal", "opportunity", day(10, 10)),
        ("opportunity", "customer", day(30, 10))]
    m = moves(store, "won")
    assert m[1].rule == "routing.mql.when.any[1]" and "demo_request" in m[1].reason
    assert (m[2].actor, m[2].note) == ("rep@acme.example", "day 4")
    assert sent(transport, "won") == FIRST  # nothing while with sales or as a customer
    assert [(s, r) for s, r, _ in handoffs(store, "won")] == [("accepted", None)]


def test_rejected_not_ready_waits_30_days_then_gets_the_recycled_track(loop):
    store, transport = loop
    m = moves(store, "notready")
    assert [(f, to, at) for f, to, at, *_ in m] == [
        ("new", "nurturing", day(0)), ("nurturing", "mql", day(3)),
        ("mql", "recycled", day(4, 10))]
    assert m[2].rule == "routing.sales_rejected.not_ready"
    assert "not_ready" in m[2].reason and m[2].actor == "rep@acme.example"
    # wait until day 34 10:00, so the day-35 cycle is the first to nurture it again: the
    # stay-in-touch (`recycled`) track, never an education step it already got
    assert sent(transport, "notready") == FIRST + [("quarterly-digest", day(35))]
    row = lead(store, "notready")
    assert (row.lifecycle_stage, row.recycle_count) == ("recycled", 1)
    assert [(s, r) for s, r, _ in handoffs(store, "notready")] == [("rejected", "not_ready")]


def test_disqualifying_reason(loop):
    store, transport = loop
    m = moves(store, "baddata")
    assert [(f, to) for f, to, *_ in m][-1] == ("mql", "disqualified")
    assert m[-1].rule == "routing.sales_rejected.bad_data"
    assert sent(transport, "baddata") == FIRST
    assert lead(store, "baddata").lifecycle_stage == "disqualified"


def test_sla_expired_comes_back_recycled(loop):
    store, transport = loop
    m = moves(store, "sla")
    assert [(f, to, at) for f, to, at, *_ in m] == [
        ("new", "nurturing", day(0)), ("nurturing", "mql", day(3)),
        ("mql", "recycled", day(5))]
    assert "sla_expired" in m[2].reason and m[2].actor == "system:daily-cycle"
    assert [(s, r) for s, r, _ in handoffs(store, "sla")] == [("expired", "sla_expired")]
    # no wait after an SLA expiry; the recycled track's 30-day cadence counts from day 0
    assert sent(transport, "sla") == FIRST + [("quarterly-digest", day(31))]


def test_recycled_re_engaged_and_mql_again(loop):
    store, transport = loop
    m = moves(store, "reengaged")
    assert [(f, to, at) for f, to, at, *_ in m] == [
        ("new", "nurturing", day(0)), ("nurturing", "mql", day(3)),
        ("mql", "recycled", day(4, 10)), ("recycled", "nurturing", day(21)),
        ("nurturing", "mql", day(26)), ("mql", "sal", day(27, 10))]
    assert m[3].rule == "engagement_after_recycle" and "pricing_page_view" in m[3].reason
    # pricing visit -> evaluation content, first unseen step of the product track; the
    # ROI step is gated to grades A-C (this lead is D); demo-invite four days later
    steps = sent(transport, "reengaged")
    assert [s for s, _ in steps] == ["buyers-guide", "case-study", "demo-invite"]
    assert steps[1:] == [("case-study", day(21)), ("demo-invite", day(25))]
    row = lead(store, "reengaged")
    assert (row.lifecycle_stage, row.recycle_count) == ("sal", 1)
    assert [(s, r) for s, r, _ in handoffs(store, "reengaged")] == [
        ("rejected", "bad_timing"), ("accepted", None)]


def test_too_many_recycles_disqualify(loop):
    store, transport = loop
    m = moves(store, "toomany")
    assert [(f, to) for f, to, *_ in m] == [
        ("new", "nurturing"), ("nurturing", "mql"), ("mql", "recycled"),
        ("recycled", "mql"), ("mql", "recycled"), ("recycled", "mql"), ("mql", "recycled"),
        ("recycled", "mql"), ("mql", "disqualified")]
    assert [at for _, _, at, *_ in m][1:] == [day(3), day(4, 10), day(7), day(8, 10), day(11),
                                              day(12, 10), day(15), day(16, 10)]
    assert m[-1].rule == "routing.max_recycles" and "max_recycles 3" in m[-1].reason
    assert lead(store, "toomany").recycle_count == 3
    assert sent(transport, "toomany") == FIRST
    owners = [o for *_, o in handoffs(store, "toomany")]
    assert len(owners) == 4 and set(owners) <= {"ana@acme.example", "ben@acme.example"}


def test_lost_deal_rests_then_would_return(loop):
    store, transport = loop
    m = moves(store, "lost")
    assert [(f, to) for f, to, *_ in m][-1] == ("opportunity", "recycled")
    row = lead(store, "lost")
    assert row.recycle_until == day(40, 10) + timedelta(days=90)  # bad_timing: 90 days
    assert sent(transport, "lost") == FIRST


def test_round_robin_owners_for_the_day_3_mqls(loop):
    store, _ = loop
    with store.engine.connect() as conn:
        owners = conn.execute(select(t.handoffs.c.owner).where(
            t.handoffs.c.created_at == day(3)).order_by(t.handoffs.c.id)).scalars().all()
    assert len(owners) == 7
    assert owners == ["ana@acme.example", "ben@acme.example"] * 3 + ["ana@acme.example"]


def test_feedback_that_does_not_apply_changes_nothing(store, rules):
    store.upsert_leads([{"email": "n@example.com", "source": "website", "timezone": "UTC",
                         "created_at": START}])
    sales = SalesStore(store.engine)
    with pytest.raises(FeedbackRefused, match="only an MQL can be accepted; this lead is new"):
        record_feedback(sales, rules, "n@example.com", "accept", day(1))
    with pytest.raises(FeedbackRefused, match="bad_data, bad_timing, competitor, no_budget, "
                                              "not_ready"):
        record_feedback(sales, rules, "n@example.com", "reject", day(1), reason="meh")
    with pytest.raises(LookupError):
        record_feedback(sales, rules, "ghost@example.com", "accept", day(1))
    assert moves(store, "n") == [] and lead(store, "n").lifecycle_stage == "new"


def test_cycle_announces_mql_with_owner_and_breakdown_and_sla_expiry(store, rules):
    store.upsert_leads([{"email": "h@example.com", "source": "website", "timezone": "UTC",
                         "title": "VP Sales", "created_at": START}])
    store.insert_activities([demo(0, "h") | {"email": "h@example.com"}])
    res = plan_chunk(store, rules, 1, 10, day(1), "UTC")
    [ev] = res.events
    assert ev.kind == "mql" and ev.owner in ("ana@acme.example", "ben@acme.example")
    assert ev.breakdown["fit"] == [{"rule": ev.breakdown["fit"][0]["rule"], "points": 20.0}]
    assert ev.breakdown["engagement"]["demo_request"] == pytest.approx(60 * 0.5 ** (0.79 / 30),
                                                                       rel=0.01)
    res = plan_chunk(store, rules, 1, 10, day(3, 8), "UTC")
    assert [e.kind for e in res.events] == ["sla_expired"]


def test_instant_routing_hands_a_demo_request_to_sales_between_cycles(store, rules):
    store.upsert_leads([{"email": "q@example.com", "source": "website", "timezone": "UTC",
                         "created_at": START}, {"email": "r@example.com", "source": "website",
                                                "timezone": "UTC", "created_at": START}])
    plan_chunk(store, rules, 1, 10, day(0), "UTC")  # both nurtured
    assert store.cycle_ranges(day(0, 8), 100, engaged_only=True) == []
    store.insert_activities([demo(0, "q") | {"email": "q@example.com", "id": "q1"},
                             {"id": "r1", "email": "r@example.com", "type": "page_view",
                              "occurred_at": day(0, 12), "properties": {}}])
    assert store.cycle_ranges(day(0, 13), 100, engaged_only=True) == [(1, 2, 2)]
    res = plan_chunk(store, rules, 1, 2, day(0, 13), "UTC", engaged_only=True)
    assert [(e.kind, e.email) for e in res.events] == [("mql", "q@example.com")]
    assert lead(store, "q").lifecycle_stage == "mql"
    assert lead(store, "r").lifecycle_stage == "nurturing"  # not an MQL: waits for the cycle
    m = moves(store, "q")
    assert m[-1].actor == "system:instant-routing"
    assert store.cycle_ranges(day(0, 14), 100, engaged_only=True) == []
    # the page view still counts at the next daily cycle
    assert any(r[0] <= 2 <= r[1] for r in store.cycle_ranges(day(1), 100))
