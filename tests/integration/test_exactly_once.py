"""#8 exactly once, on SQLite and PostgreSQL: transient failures are retried (the step is not
skipped), a crash mid-send leaves at most one batch unsettled and a re-run finishes the day,
runs are fenced (a run that lost its claims cannot write), decisions made on stale snapshots
are dropped and made again, and MQL handoffs, transitions and lead events exist once each.

Crashes are modelled two ways: an exception escaping the send loop (the run ends `failed`),
and a run row whose heartbeat stopped while it held touches (what kill -9 leaves). The real
kill -9 trials are in the chaos harness (benchmarks/chaos.py, tests/chaos)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from nurture.adapters.delivery.base import Delivery
from nurture.adapters.delivery.memory import MemoryTransport
from nurture.core.ledger import RetryPolicy
from nurture.core.rendering import Renderer
from nurture.services.cycle import SendContext, plan_chunk, run_cycle
from nurture.services.feedback import record_feedback
from nurture.services.runs import Lease, RunFenced
from nurture.store import tables as t
from nurture.store.db import make_engine
from nurture.store.sales import SalesStore
from nurture.store.store import LeadStore

AS_OF = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)  # a Monday inside the 09:00 window
DAY = timedelta(days=1)


def leads(n: int, **kw) -> list[dict]:
    return [{"email": f"l{i:03d}@example.com", "first_name": f"L{i}", "source": "website",
             "company": "Initech", "title": "Marketing Manager", "timezone": "UTC",
             "created_at": AS_OF - 3 * DAY} | kw for i in range(n)]


def ctx(rules, templates_dir, transport, **kw) -> SendContext:
    return SendContext(rules=rules, renderer=Renderer(templates_dir), transport=transport,
                       secret="test-secret-0123456789", public_url="https://n.example",
                       heartbeat=0.05, lapse=timedelta(seconds=kw.pop("lapse", 0.5)), **kw)


def statuses(store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return dict(conn.execute(select(t.touches.c.status, func.count())
                                 .group_by(t.touches.c.status)).all())


def steps_of(store, email):
    with store.engine.connect() as conn:
        return conn.execute(select(t.touches.c.step, t.touches.c.status)
                            .join(t.leads, t.leads.c.id == t.touches.c.lead_id)
                            .where(t.leads.c.email == email).order_by(t.touches.c.id)).all()


class Flaky(MemoryTransport):
    """Answers like an API having a bad day: every send fails for a passing reason."""

    name = "flaky"

    def __init__(self, down: bool = True) -> None:
        super().__init__()
        self.down = down

    def send_many(self, messages):
        if self.down:
            return [Delivery(m.touch_id, False, error="SendGrid 503: unavailable",
                             retryable=True) for m in messages]
        return super().send_many(messages)


class Crash(BaseException):
    """Stands in for the process dying mid-send (not an Exception: nothing catches it)."""


class DiesAfter(MemoryTransport):
    """Sends `ok` batches, then dies while handing over the next one."""

    def __init__(self, ok: int, batch_size: int) -> None:
        super().__init__()
        self.ok, self.batch_size = ok, batch_size

    def send_many(self, messages):
        if self.ok <= 0:
            raise Crash()
        self.ok -= 1
        return super().send_many(messages)


# -- 1. a transient failure never drops the step ----------------------------------------------
def test_a_day_of_503s_retries_the_same_step_the_next_day(store, rules, templates_dir):
    """Before: the failed step counted as seen, and the next day the lead got step 2."""
    store.upsert_leads(leads(20))
    flaky = Flaky()
    c = ctx(rules, templates_dir, flaky, retry=RetryPolicy(max_attempts=5))
    day0 = run_cycle(store, c, AS_OF, "UTC", 100)
    assert day0["touches_sent"] == 0 and day0["touches_retrying"] == 20
    assert statuses(store) == {"planned": 20}
    with store.engine.connect() as conn:
        assert all(r >= AS_OF + timedelta(minutes=15) for r in conn.execute(
            select(t.touches.c.retry_at)).scalars())
    flaky.down = False
    day1 = run_cycle(store, c, AS_OF + DAY, "UTC", 100)
    assert day1["touches_sent"] == 20
    assert {m.step for m in flaky.sent} == {"buyers-guide"}  # the same step, not the next
    assert statuses(store) == {"sent": 20}


def test_failures_past_the_attempt_limit_fail_for_good_and_hold_the_lead(store, rules,
                                                                         templates_dir):
    store.upsert_leads(leads(2))
    c = ctx(rules, templates_dir, Flaky(), retry=RetryPolicy(max_attempts=2,
                                                              base=timedelta(minutes=1)))
    run_cycle(store, c, AS_OF, "UTC", 100)
    run_cycle(store, c, AS_OF + timedelta(minutes=2), "UTC", 100)
    assert statuses(store) == {"failed": 2}
    # the next time the cycle looks at these leads (their cadence: core.next_check)
    summary = run_cycle(store, c, AS_OF + 7 * DAY, "UTC", 100)
    assert summary["skipped"].get("step_failed") == 2  # held, not moved on to step 2
    assert store.ledger.with_status(["failed"])[0]["error"].startswith("gave up after 2 attempts")
    released = store.ledger.release([r["id"] for r in store.ledger.with_status(["failed"])],
                                    ["failed"], "person:test")
    assert len(released) == 2 and statuses(store) == {"planned": 2}


def test_a_template_failing_for_some_leads_is_sent_once_it_is_fixed(store, rules, tmp_path,
                                                                    templates_dir):
    import shutil

    tdir = tmp_path / "templates"
    shutil.copytree(templates_dir, tdir)
    guide = tdir / "inbound-saas" / "buyers-guide.html.j2"
    good = guide.read_text(encoding="utf-8")
    guide.write_text(good.replace("{% block body %}",
                                  "{% block body %}{{ lead.title.split()[0] }}"),
                     encoding="utf-8")
    store.upsert_leads(leads(1) + [{"email": "notitle@example.com", "source": "website",
                                    "timezone": "UTC", "created_at": AS_OF - 3 * DAY}])
    mem = MemoryTransport()
    run_cycle(store, ctx(rules, tdir, mem), AS_OF, "UTC", 100)
    assert [m.to_email for m in mem.sent] == ["l000@example.com"]
    assert steps_of(store, "notitle@example.com") == [("buyers-guide", "planned")]
    guide.write_text(good, encoding="utf-8")  # the marketer fixes the template
    run_cycle(store, ctx(rules, tdir, mem), AS_OF + DAY, "UTC", 100)
    assert [m.step for m in mem.sent if m.to_email == "notitle@example.com"] == ["buyers-guide"]


# -- 2. a crash mid-send loses nothing -------------------------------------------------------
def test_an_exception_mid_send_leaves_at_most_one_batch_and_the_rerun_finishes(
        store, rules, templates_dir):
    """Before: every claimed touch of the chunk stayed `sending`, and an immediate re-run
    did nothing for 15 minutes (then left them `unknown`, never sent)."""
    store.upsert_leads(leads(50))
    dying = DiesAfter(ok=2, batch_size=10)
    with pytest.raises(Crash):
        run_cycle(store, ctx(rules, templates_dir, dying, batch_size=10), AS_OF, "UTC", 100)
    st = statuses(store)
    assert st == {"sent": 20, "sending": 10, "planned": 20}  # only the batch in flight
    rerun = MemoryTransport()  # memory reconciles exactly: the dying batch never left
    rerun.sent = list(dying.sent)
    summary = run_cycle(store, ctx(rules, templates_dir, rerun), AS_OF, "UTC", 100)
    assert statuses(store) == {"sent": 50}
    assert summary["ledger"].get("taken_over") == 10
    assert len(rerun.sent) == 50 and len({m.touch_id for m in rerun.sent}) == 50


def test_an_immediate_rerun_after_kill_waits_for_the_heartbeat_then_finishes(
        store, rules, templates_dir):
    """kill -9 leaves the run `running` with a heartbeat that stops: the re-run says what it
    waits for, takes over once the heartbeat lapsed, and sends the rest."""
    store.upsert_leads(leads(30))
    lo, hi = 1, 10_000
    plan_chunk(store, rules, lo, hi, AS_OF, "UTC")
    dead = store.ledger.runs.register("daily-cycle", AS_OF)  # the killed run
    store.ledger.claim(lo, hi, AS_OF + DAY, AS_OF, dead, 10)
    said: list[str] = []
    mem = MemoryTransport()
    summary = run_cycle(store, ctx(rules, templates_dir, mem, lapse=1.0), AS_OF, "UTC", 100,
                        notify=said.append)
    assert said and "heartbeat" in said[0] and f"run {dead}" in said[0]
    assert statuses(store) == {"sent": 30} and summary["touches_sent"] == 30
    with store.engine.connect() as conn:
        assert conn.execute(select(t.runs.c.status).where(t.runs.c.id == dead)
                             ).scalar_one() == "lost"


def test_sendgrid_style_transport_leaves_the_unknown_batch_in_doubt(store, rules,
                                                                   templates_dir):
    """A transport that cannot tell what it sent: the dead run's batch is in doubt (never
    blindly resent); the rest is sent."""

    class Blind(MemoryTransport):
        def reconcile(self, touch_ids):
            return {}

    store.upsert_leads(leads(12))
    dying = DiesAfter(ok=0, batch_size=5)
    with pytest.raises(Crash):
        run_cycle(store, ctx(rules, templates_dir, dying, batch_size=5), AS_OF, "UTC", 100)
    blind = Blind()
    run_cycle(store, ctx(rules, templates_dir, blind, batch_size=5), AS_OF, "UTC", 100)
    assert statuses(store) == {"in_doubt": 5, "sent": 7}
    # with the signed webhook configured and no event within the settle window: sent again
    again = run_cycle(store, ctx(rules, templates_dir, blind, in_doubt_settle=timedelta(0)),
                      AS_OF + timedelta(hours=1), "UTC", 100)
    assert again["ledger"]["in_doubt_resent"] == 5 and statuses(store) == {"sent": 12}


# -- 3. fencing ------------------------------------------------------------------------------
def test_a_run_that_was_taken_over_cannot_write(store, rules, templates_dir):
    """Before: a run still sending after the 15-minute lease while a second run started sent
    everything twice."""
    store.upsert_leads(leads(6))
    plan_chunk(store, rules, 1, 10_000, AS_OF, "UTC")
    slow = Lease(store.ledger.runs, "daily-cycle", AS_OF, heartbeat_seconds=60,
                 lapse_seconds=120)
    with slow:
        claimed = store.ledger.claim(1, 10_000, AS_OF + DAY, AS_OF, slow.run_id, 100)
        assert len(claimed) == 6
        with store.engine.begin() as conn:  # its heartbeat stalls (GC pause, SIGSTOP...)
            conn.execute(update(t.runs).where(t.runs.c.id == slow.run_id)
                         .values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=5)))
        newer = MemoryTransport()
        run_cycle(store, ctx(rules, templates_dir, newer, lapse=60), AS_OF, "UTC", 100)
        assert len(newer.sent) == 6 and statuses(store) == {"sent": 6}
        # the stalled run wakes up: its beat is refused, its writes too
        assert store.ledger.runs.beat(slow.run_id) is False
        from nurture.core.ledger import decide_sent

        refused = store.ledger.record([decide_sent(c.touch_id, AS_OF, "late", None, "s", "m")
                                       for c in claimed], slow.run_id)
        assert refused == 6
        slow.lost = True
        with pytest.raises(RunFenced):
            slow.check()


def test_two_runs_at_once_send_each_touch_once(db_url, rules, templates_dir):
    engine = make_engine(db_url)
    from nurture.store.db import upgrade

    upgrade(engine)
    stores = [LeadStore(engine), LeadStore(make_engine(db_url))]
    stores[0].upsert_leads(leads(120))
    sinks = [MemoryTransport(), MemoryTransport()]
    errors: list[BaseException] = []

    def run(i):
        try:
            run_cycle(stores[i], ctx(rules, templates_dir, sinks[i], batch_size=7), AS_OF,
                      "UTC", 40)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors
    sent = [m.touch_id for s in sinks for m in s.sent]
    assert len(sent) == 120 and len(set(sent)) == 120
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.handoffs)).scalar_one() == 0
    for s in stores:
        s.engine.dispose()


# -- 4. stale snapshots ----------------------------------------------------------------------
class Interleaved(LeadStore):
    """The real store, with something else happening right after the cycle loads leads."""

    def __init__(self, engine, meanwhile) -> None:
        super().__init__(engine)
        self.meanwhile = meanwhile

    def load_snapshots(self, *a, **kw):
        out = super().load_snapshots(*a, **kw)
        if self.meanwhile is not None:
            act, self.meanwhile = self.meanwhile, None
            act()
        return out


def hot_lead(store, email="hot@example.com"):
    store.upsert_leads([{"email": email, "first_name": "Hot", "source": "website",
                         "timezone": "UTC", "created_at": AS_OF - 3 * DAY}])
    store.insert_activities([{"id": f"demo-{email}", "email": email, "type": "demo_request",
                              "occurred_at": AS_OF - timedelta(minutes=5), "properties": {}}])


def lead_row(store, email):
    with store.engine.connect() as conn:
        return conn.execute(select(t.leads).where(t.leads.c.email == email)).one()


def test_instant_routing_after_the_load_is_not_undone_by_the_cycle(migrated_engine, rules,
                                                                   templates_dir):
    """Before: the cycle set the new MQL back to `nurturing` and emailed a lead sales owns."""
    base = LeadStore(migrated_engine)
    hot_lead(base)
    # the cycle loads it as it was yesterday (nurturing, no demo request counted yet)...
    lid = lead_row(base, "hot@example.com").id
    store = Interleaved(migrated_engine, lambda: plan_chunk(
        base, rules, lid, lid, AS_OF, "UTC", engaged_only=True))
    mem = MemoryTransport()
    run_cycle(store, ctx(rules, templates_dir, mem), AS_OF, "UTC", 100)
    row = lead_row(base, "hot@example.com")
    assert row.lifecycle_stage == "mql"
    assert mem.sent == []
    with migrated_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.handoffs)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(t.transitions).where(
            t.transitions.c.to_stage == "mql")).scalar_one() == 1


def test_sales_accepting_after_the_load_is_not_recycled_by_sla_expiry(migrated_engine, rules,
                                                                      templates_dir):
    base = LeadStore(migrated_engine)
    hot_lead(base)
    plan_chunk(base, rules, 1, 10_000, AS_OF, "UTC")
    assert lead_row(base, "hot@example.com").lifecycle_stage == "mql"
    past_sla = AS_OF + timedelta(hours=rules.sla_hours + 1)
    store = Interleaved(migrated_engine, lambda: record_feedback(
        SalesStore(migrated_engine), rules, "hot@example.com", "accept", past_sla))
    run_cycle(store, ctx(rules, templates_dir, MemoryTransport()), past_sla, "UTC", 100)
    assert lead_row(base, "hot@example.com").lifecycle_stage == "sal"
    with migrated_engine.connect() as conn:
        assert conn.execute(select(t.handoffs.c.status)).scalars().all() == ["accepted"]


def test_activity_arriving_after_the_load_keeps_its_flag(migrated_engine, rules,
                                                         templates_dir):
    base = LeadStore(migrated_engine)
    base.upsert_leads(leads(1))
    email = "l000@example.com"
    store = Interleaved(migrated_engine, lambda: base.insert_activities([{
        "id": "late", "email": email, "type": "page_view", "occurred_at": AS_OF,
        "properties": {}}]))
    plan_chunk(store, rules, 1, 10_000, AS_OF, "UTC")
    # the cycle's decision was stale: it decided again, with the late activity counted
    assert lead_row(base, email).lifecycle_stage == "nurturing"
    store2 = Interleaved(migrated_engine, lambda: base.insert_activities([{
        "id": "later", "email": email, "type": "page_view", "occurred_at": AS_OF,
        "properties": {}}]))
    plan_chunk(store2, rules, 1, 10_000, AS_OF, "UTC", engaged_only=True)
    assert lead_row(base, email).activity_pending is True  # the later activity is not lost


# -- 5. one handoff, one MQL transition, one event -------------------------------------------
def test_cycle_and_instant_routing_at_once_hand_the_lead_over_once(migrated_engine, rules):
    """Before: 44 of 44 MQLs got two handoffs and two owners on PostgreSQL."""
    base = LeadStore(migrated_engine)
    for i in range(10):
        hot_lead(base, f"hot{i}@example.com")
    store = Interleaved(migrated_engine, lambda: plan_chunk(
        base, rules, 1, 10_000, AS_OF, "UTC", engaged_only=True))
    plan_chunk(store, rules, 1, 10_000, AS_OF, "UTC")
    with migrated_engine.connect() as conn:
        per_lead = conn.execute(select(t.handoffs.c.lead_id, func.count())
                                .group_by(t.handoffs.c.lead_id)).all()
        assert len(per_lead) == 10 and {n for _, n in per_lead} == {1}
        mql_transitions = conn.execute(select(t.transitions.c.handoff_id).where(
            t.transitions.c.to_stage == "mql")).scalars().all()
        assert len(mql_transitions) == 10 and None not in mql_transitions
        events = conn.execute(select(t.lead_events.c.kind, func.count())
                              .group_by(t.lead_events.c.kind)).all()
        assert dict(events) == {"mql": 10}


def test_the_database_refuses_a_second_open_handoff(migrated_engine):
    from sqlalchemy.exc import IntegrityError

    base = LeadStore(migrated_engine)
    hot_lead(base)
    lid = lead_row(base, "hot@example.com").id
    row = {"lead_id": lid, "owner": "a@x.example", "status": "pending", "rule": "r",
           "reason": "r", "created_at": AS_OF, "sla_due_at": AS_OF + DAY}
    with migrated_engine.begin() as conn:
        conn.execute(t.handoffs.insert().values(**row))
    with pytest.raises(IntegrityError), migrated_engine.begin() as conn:
        conn.execute(t.handoffs.insert().values(**row))


def test_lead_events_are_recorded_with_the_decision_and_emitted_once(migrated_engine, rules):
    from nurture.flows.common import prefect_event_id
    from nurture.store.lead_events import LeadEventOutbox

    base = LeadStore(migrated_engine)
    hot_lead(base)
    plan_chunk(base, rules, 1, 10_000, AS_OF, "UTC")
    outbox = LeadEventOutbox(migrated_engine)
    run_a = base.ledger.runs.register("a")
    got = outbox.claim(run_a, timedelta(seconds=60))
    assert [(e.kind, e.payload["email"]) for e in got] == [("mql", "hot@example.com")]
    assert got[0].payload["owner"] and got[0].payload["campaign"] == "inbound-saas"
    # run a dies before marking: a live run b may not take them until a's heartbeat lapses
    run_b = base.ledger.runs.register("b")
    assert outbox.claim(run_b, timedelta(seconds=60)) == []
    with migrated_engine.begin() as conn:
        conn.execute(update(t.runs).where(t.runs.c.id == run_a)
                     .values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=5)))
    again = outbox.claim(run_b, timedelta(seconds=60))
    assert [e.id for e in again] == [got[0].id]
    assert prefect_event_id(again[0]) == prefect_event_id(got[0])  # re-emitted: a no-op
    outbox.mark_emitted([e.id for e in again], run_b)
    assert outbox.claim(run_b, timedelta(seconds=60)) == [] and outbox.pending_count() == 0


def test_a_touch_left_sending_by_an_older_version_is_settled(store, rules, templates_dir):
    """Touches an older nurture left `sending` carry no run: they are settled like a stopped
    run's (exactly, for a transport that can tell)."""
    store.upsert_leads(leads(3))
    plan_chunk(store, rules, 1, 10_000, AS_OF, "UTC")
    with store.engine.begin() as conn:
        conn.execute(update(t.touches).values(status="sending", run_id=None))
    mem = MemoryTransport()
    summary = run_cycle(store, ctx(rules, templates_dir, mem), AS_OF, "UTC", 100)
    assert summary["ledger"]["taken_over"] == 3 and statuses(store) == {"sent": 3}


def test_recorded_send_times_are_stored_like_every_other_time(store, rules, templates_dir):
    """`sent_at` went through an untyped parameter: SQLite stored '… 09:30:00+00:00' while
    every other time is '… 09:30:00.000000', so text comparisons mixed the two."""
    from sqlalchemy import text

    store.upsert_leads(leads(1))
    run_cycle(store, ctx(rules, templates_dir, MemoryTransport()), AS_OF, "UTC", 100)
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "sqlite":
            raw = conn.execute(text("SELECT sent_at, send_at FROM touches")).one()
            assert len(raw.sent_at) == len(raw.send_at) and "+" not in raw.sent_at
        sent_at, send_at = conn.execute(select(t.touches.c.sent_at, t.touches.c.send_at)).one()
        assert sent_at == send_at and sent_at.tzinfo is not None  # the slot it went out for


def test_the_same_row_id_in_another_database_is_another_prefect_event(tmp_path, rules):
    """Two stores reporting to one Prefect server (a fresh or copied database, a demo run
    again) both have lead event 1: they must not share its Prefect id, or Prefect drops
    the second as a duplicate (and its SQLite event store fails the whole batch)."""
    from nurture.flows.common import prefect_event_id
    from nurture.store.db import make_engine, upgrade
    from nurture.store.lead_events import LeadEventOutbox

    ids = []
    for name in ("a", "b"):
        engine = make_engine(f"sqlite:///{tmp_path / name}.db")
        upgrade(engine)
        base = LeadStore(engine)
        hot_lead(base)
        plan_chunk(base, rules, 1, 10_000, AS_OF, "UTC")
        got = LeadEventOutbox(engine).claim(base.ledger.runs.register(name),
                                            timedelta(seconds=60))
        ids.append([(e.id, prefect_event_id(e)) for e in got])
        engine.dispose()
    assert ids[0][0][0] == ids[1][0][0] == 1 and ids[0][0][1] != ids[1][0][1]
