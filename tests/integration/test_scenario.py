"""A multi-day scenario over the real store (SQLite and PostgreSQL), moving `as_of` day by
day through the real campaigns: the behaviour marketers rely on, end to end without Prefect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from nurture.adapters.delivery.memory import MemoryTransport
from nurture.core.rendering import Renderer
from nurture.services.cycle import SendContext, run_cycle
from nurture.store import tables as t

START = datetime(2026, 11, 2, 7, 0, tzinfo=UTC)  # a Monday, before the 09:00 send window


def day(n: int, hour: int = 7) -> datetime:
    return START + timedelta(days=n, hours=hour - 7)


def lead(email, **kw):
    base = {"email": email, "first_name": email.split("@")[0].title(), "timezone": "UTC",
            "source": "website", "company": "Initech", "title": "Marketing Manager",
            "company_size": 40, "industry": "retail", "created_at": START - timedelta(days=3)}
    return base | kw


def act(ext, email, typ, when):
    return {"id": ext, "email": email, "type": typ, "occurred_at": when, "properties": {}}


@pytest.fixture
def world(store, rules, templates_dir):
    store.upsert_leads([
        lead("research@example.com"),
        lead("switcher@example.com", industry="software"),
        lead("hot@example.com", company_size=100, industry="software"),  # fit 10, grade C
        lead("cold@example.com"),
        lead("suppressed@example.com"),
        lead("disq@example.com"),
        lead("partner@example.com", source="partner"),
    ])
    store.insert_activities([
        act("r1", "research@example.com", "page_view", day(0, 6)),
        act("r2", "research@example.com", "content_download", day(20)),
        act("s1", "switcher@example.com", "page_view", day(0, 6)),
        act("s2", "switcher@example.com", "pricing_page_view", day(9)),
        act("s3", "switcher@example.com", "pricing_page_view", day(10, 6)),
        act("h1", "hot@example.com", "content_download", day(1)),
        act("h2", "hot@example.com", "demo_request", day(4, 12)),
    ])
    store.suppress("suppressed@example.com", "unsubscribe", "test")
    with store.engine.begin() as conn:
        conn.execute(update(t.leads).where(t.leads.c.email == "disq@example.com")
                     .values(lifecycle_stage="disqualified"))
    transport = MemoryTransport()
    ctx = SendContext(rules=rules, renderer=Renderer(templates_dir), transport=transport,
                      secret="s" * 32, public_url="https://nurture.example")
    return store, ctx, transport


def run_days(store, ctx, first: int, last: int):
    out = {}
    for n in range(first, last + 1):
        out[n] = run_cycle(store, ctx, day(n), "UTC", chunk_size=3)
    return out


def sent_steps(transport, email):
    return [(m.step, m.send_at) for m in transport.sent if m.to_email == email]


def transitions(store, email):
    with store.engine.connect() as conn:
        return conn.execute(
            select(t.transitions.c.from_stage, t.transitions.c.to_stage, t.transitions.c.reason,
                   t.transitions.c.rule, t.transitions.c.at)
            .join(t.leads, t.leads.c.id == t.transitions.c.lead_id)
            .where(t.leads.c.email == email).order_by(t.transitions.c.id)).all()


def stage(store, email):
    with store.engine.connect() as conn:
        return conn.execute(select(t.leads.c.lifecycle_stage)
                            .where(t.leads.c.email == email)).scalar_one()


def test_sixty_days_of_nurture(world):
    store, ctx, transport = world
    summaries = run_days(store, ctx, 0, 61)

    # research lead: the education track in order, one step per 7-day cadence, at 09:00 UTC
    # (the send window opens 09:00 Mon-Fri in the lead's time zone), then held: no repeats.
    assert sent_steps(transport, "research@example.com") == [
        ("buyers-guide", day(0, 9)), ("funnel-benchmark", day(7, 9)),
        ("scoring-101", day(14, 9))]

    # switcher: education until pricing-page visits move it to evaluation, then the product
    # track from its first step (cadence 4 days after the last touch). When the visits are
    # older than 14 days it is a research lead again and resumes education at the first
    # unseen step -- never a repeat.
    steps = sent_steps(transport, "switcher@example.com")
    assert [s for s, _ in steps] == ["buyers-guide", "funnel-benchmark", "case-study",
                                     "roi-calculator", "demo-invite", "scoring-101"]
    assert steps[2][1] == day(12)  # first evaluation-stage cycle whose cadence had elapsed
    # back in research from day 24; 7 days after demo-invite (day 20) is Sunday day 27, so
    # the education send window opens Monday day 28 at 09:00
    assert steps[5][1] == day(28, 9)
    assert len({s for s, _ in steps}) == len(steps)

    # hot lead: a demo request makes it an MQL at the next cycle; no nurture while with sales;
    # nobody accepted it within the 48 h SLA, so it came back recycled (sla_expired).
    hot = transitions(store, "hot@example.com")
    assert [(f, to) for f, to, *_ in hot] == [("new", "nurturing"), ("nurturing", "mql"),
                                              ("mql", "recycled")]
    assert "routing.mql.when.any[1]" in hot[1].reason and hot[1].at == day(5)
    assert "sla_expired" in hot[2].reason and hot[2].at == day(7)
    hot_sent = sent_steps(transport, "hot@example.com")
    assert all(not (day(5) <= when < day(7)) for _, when in hot_sent)
    with store.engine.connect() as conn:
        h = conn.execute(select(t.handoffs)).one()
    assert (h.owner, h.status, h.sla_due_at) == ("ana@acme.example", "expired",
                                                  day(5) + timedelta(hours=48))
    assert summaries[5]["mqls"] == 1

    # cold lead: education, then no engagement for 60 days since enrolment -> recycled (no
    # wait when it went cold by itself), then the stay-in-touch track.
    cold = transitions(store, "cold@example.com")
    assert [(f, to) for f, to, *_ in cold] == [("new", "nurturing"), ("nurturing", "recycled")]
    assert cold[1].at == day(60) and cold[1].rule == "routing.recycle.when"
    assert [s for s, _ in sent_steps(transport, "cold@example.com")] == [
        "buyers-guide", "funnel-benchmark", "scoring-101", "quarterly-digest"]

    # suppressed, disqualified and out-of-audience leads get nothing
    for email in ("suppressed@example.com", "disq@example.com", "partner@example.com"):
        assert sent_steps(transport, email) == []
    assert stage(store, "disq@example.com") == "disqualified"
    assert transitions(store, "disq@example.com") == []
    assert stage(store, "partner@example.com") == "new"

    # every message carries the one-click unsubscribe URL and the sender's postal address
    for m in transport.sent:
        assert m.unsubscribe_url.startswith("https://nurture.example/unsubscribe/")
        assert m.unsubscribe_url in m.html and m.sender.postal_address in m.text


def test_same_day_twice_sends_nothing_the_second_time(world):
    store, ctx, transport = world
    first = run_cycle(store, ctx, day(0), "UTC", chunk_size=2)
    again = run_cycle(store, ctx, day(0), "UTC", chunk_size=2)
    later_same_day = run_cycle(store, ctx, day(0, 15), "UTC", chunk_size=50)
    assert first["touches_sent"] == 4  # research, switcher, hot, cold
    assert again["touches_sent"] == 0 and later_same_day["touches_sent"] == 0
    assert len(transport.sent) == 4
    with store.engine.connect() as conn:
        assert len(conn.execute(select(t.touches.c.id)).all()) == 4
