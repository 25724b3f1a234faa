"""The cycle's planning and sending, and the send ledger's state machine, against the
in-memory `FakeStore` (tests/fakes.py): no database. A crash is simulated the way kill -9
looks to the ledger — the run stays `running` but its heartbeat stops — and the re-run must
deliver every touch exactly once (or leave it in doubt, never send it twice)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from fakes import FakeStore

from nurture.core.domain import FAILED, IN_DOUBT, PLANNED, SENDING, SENT
from nurture.core.ledger import RetryPolicy, decide_sent
from nurture.core.messages import Message
from nurture.core.rendering import Renderer
from nurture.core.routing import assign_owners
from nurture.services.cycle import SendContext, plan_chunk, run_cycle, send_chunk
from nurture.services.ports import Delivery
from nurture.services.runs import Lease

# a Wednesday, 12:00 UTC: inside the send window of a lead in UTC
AS_OF = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


class Crash(BaseException):
    """The process dies here (nothing in the service may catch it)."""


class Provider:
    """A transport: keeps what it accepted; `reconcile` answers from that when `knows`.
    `crash_after_send`: the process dies after the provider accepted the batch, before the
    ledger recorded it; `crash_before_send`: it dies before anything left."""

    name = "fake"
    batch_size = 50

    def __init__(self, knows: bool = True) -> None:
        self.sent: list[Message] = []
        self.knows = knows
        self.crash_after_send = False
        self.crash_before_send = False
        self.fail_retryable = False

    def send_many(self, messages: list[Message]) -> list[Delivery]:
        if self.crash_before_send:
            self.crash_before_send = False
            raise Crash
        if self.fail_retryable:
            return [Delivery(m.touch_id, False, error="503", retryable=True) for m in messages]
        self.sent.extend(messages)
        if self.crash_after_send:
            self.crash_after_send = False
            raise Crash
        return [Delivery(m.touch_id, True, f"msg-{m.touch_id}") for m in messages]

    def reconcile(self, touch_ids: list[int]) -> dict[int, str | None]:
        if not self.knows:
            return {}
        sent = {m.touch_id for m in self.sent}
        return {t: (f"msg-{t}" if t in sent else None) for t in touch_ids}

    def close(self) -> None:
        pass


@pytest.fixture
def store() -> FakeStore:
    s = FakeStore()
    for n in range(3):
        s.add_lead(f"lead{n}@example.com", AS_OF - DAY, first_name=f"L{n}", source="website")
    return s


@pytest.fixture
def renderer(templates_dir) -> Renderer:
    return Renderer(templates_dir)


def context(rules, renderer, transport, **kw) -> SendContext:
    return SendContext(rules, renderer, transport, "k" * 32, "https://n.example",
                       lapse=timedelta(seconds=1), heartbeat=0.05, **kw)


def deliveries(provider: Provider) -> Counter:
    return Counter(m.touch_id for m in provider.sent)


def crashed_send(store: FakeStore, ctx: SendContext) -> int:
    """A run that dies inside `send_chunk` like kill -9: its heartbeat stops, it never
    finishes. Returns its run id."""
    lease = Lease(store.ledger.runs, "daily-cycle", AS_OF, 0.05, 1.0).__enter__()
    try:
        with pytest.raises(Crash):
            send_chunk(store, ctx, 1, 100, AS_OF, lease=lease)
    finally:
        store.ledger.runs.kill(lease.run_id)
        lease.__exit__(None, None, None)
    return lease.run_id


def test_a_cycle_plans_and_sends_each_touch_once_and_a_rerun_sends_nothing(store, rules,
                                                                          renderer):
    provider = Provider()
    ctx = context(rules, renderer, provider)
    first = run_cycle(store, ctx, AS_OF, "UTC", chunk_size=2)
    again = run_cycle(store, ctx, AS_OF, "UTC", chunk_size=2)
    assert first["touches_planned"] == first["touches_sent"] == 3
    assert again["touches_sent"] == 0
    assert set(deliveries(provider).values()) == {1} and len(provider.sent) == 3
    assert {tc.status for tc in store.touches.values()} == {SENT}
    assert all(tc.attempts == 1 for tc in store.touches.values())


def test_a_crash_after_the_provider_accepted_is_settled_as_sent_not_sent_again(
        store, rules, renderer):
    provider = Provider(knows=True)
    ctx = context(rules, renderer, provider)
    plan_chunk(store, rules, 1, 100, AS_OF, "UTC")
    provider.crash_after_send = True
    crashed_send(store, ctx)
    assert {tc.status for tc in store.touches.values()} == {SENDING}
    summary = run_cycle(store, ctx, AS_OF, "UTC", chunk_size=10)
    assert summary["ledger"]["taken_over"] == 3
    assert deliveries(provider) == Counter({1: 1, 2: 1, 3: 1})  # exactly once each
    assert {tc.status for tc in store.touches.values()} == {SENT}
    assert {tc.provider_message_id for tc in store.touches.values()} == {
        "msg-1", "msg-2", "msg-3"}


def test_a_crash_the_provider_cannot_explain_leaves_touches_in_doubt_never_resent(
        store, rules, renderer):
    provider = Provider(knows=False)
    ctx = context(rules, renderer, provider)
    plan_chunk(store, rules, 1, 100, AS_OF, "UTC")
    provider.crash_after_send = True
    crashed_send(store, ctx)
    run_cycle(store, ctx, AS_OF, "UTC", chunk_size=10)
    assert len(provider.sent) == 3
    assert {tc.status for tc in store.touches.values()} == {IN_DOUBT}


def test_a_crash_before_anything_left_is_sent_on_the_rerun_with_the_attempt_given_back(
        store, rules, renderer):
    provider = Provider(knows=True)
    ctx = context(rules, renderer, provider)
    plan_chunk(store, rules, 1, 100, AS_OF, "UTC")
    provider.crash_before_send = True
    crashed_send(store, ctx)
    assert provider.sent == []
    run_cycle(store, ctx, AS_OF, "UTC", chunk_size=10)
    assert deliveries(provider) == Counter({1: 1, 2: 1, 3: 1})
    assert [tc.attempts for tc in store.touches.values()] == [1, 1, 1]


def test_touches_a_live_run_holds_are_left_to_it_until_its_heartbeat_stops(store, rules,
                                                                           renderer):
    provider = Provider()
    ctx = context(rules, renderer, provider)
    plan_chunk(store, rules, 1, 100, AS_OF, "UTC")
    other = store.ledger.runs.register("daily-cycle", AS_OF)
    assert len(store.ledger.claim(1, 100, AS_OF + DAY, AS_OF, other, 50)) == 3
    with Lease(store.ledger.runs, "daily-cycle", AS_OF, 0.05, 1.0) as lease:
        held = send_chunk(store, ctx, 1, 100, AS_OF, lease=lease)
        assert set(held.held) == {other} and held.ledger["held_by_live_runs"] == 3
        assert provider.sent == []
        store.ledger.runs.kill(other)
        done = send_chunk(store, ctx, 1, 100, AS_OF, lease=lease)
    assert done.held == {} and done.ledger["taken_over"] == 3
    assert deliveries(provider) == Counter({1: 1, 2: 1, 3: 1})


def test_a_run_that_was_taken_over_cannot_record_its_results(store, rules):
    plan_chunk(store, rules, 1, 100, AS_OF, "UTC")
    runs = store.ledger.runs
    old, new = runs.register("daily-cycle"), runs.register("daily-cycle")
    [touch, *_] = store.ledger.claim(1, 100, AS_OF + DAY, AS_OF, old, 1)
    runs.kill(old)
    store.ledger.take_over(1, 100, timedelta(seconds=1), lambda ids: {}, "fake", new)
    assert store.touches[touch.touch_id].status == IN_DOUBT
    late = decide_sent(touch.touch_id, AS_OF, "late", None, "s", "fake")
    assert store.ledger.record([late], old) == 1  # refused: the fence holds
    assert store.touches[touch.touch_id].provider_message_id is None


def test_retryable_failures_back_off_then_fail_for_good(store, rules, renderer):
    provider = Provider()
    provider.fail_retryable = True
    ctx = context(rules, renderer, provider,
                  retry=RetryPolicy(max_attempts=2, base=timedelta(minutes=1)))
    plan_chunk(store, rules, 1, 100, AS_OF, "UTC")
    first = send_chunk(store, ctx, 1, 100, AS_OF)
    assert sum(s.retrying for s in first.campaigns.values()) == 3
    assert {(tc.status, tc.attempts) for tc in store.touches.values()} == {(PLANNED, 1)}
    assert all(tc.retry_at == AS_OF + timedelta(minutes=1) for tc in store.touches.values())
    early = send_chunk(store, ctx, 1, 100, AS_OF)  # inside the backoff: nothing claimed
    assert sum(s.retrying + s.failed for s in early.campaigns.values()) == 0
    send_chunk(store, ctx, 1, 100, AS_OF + timedelta(minutes=2))
    assert {(tc.status, tc.attempts) for tc in store.touches.values()} == {(FAILED, 2)}


class ChangesUnderTheCycle(FakeStore):
    """Something writes the first lead right after the cycle loaded it (once)."""

    def __init__(self) -> None:
        super().__init__()
        self.meddle = True

    def load_snapshots(self, *a, **kw):
        out = super().load_snapshots(*a, **kw)
        if self.meddle:
            self.meddle = False
            self.leads[1]["version"] += 1
        return out


def test_a_decision_on_a_stale_snapshot_is_dropped_and_made_again(rules):
    store = ChangesUnderTheCycle()
    store.add_lead("a@example.com", AS_OF - DAY, source="website")
    store.add_lead("b@example.com", AS_OF - DAY, source="website")
    result = plan_chunk(store, rules, 1, 100, AS_OF, "UTC")
    assert result.ledger["stale_decisions"] == 1
    assert sorted(tc.lead_id for tc in store.touches.values()) == [1, 2]  # once each
    assert store.leads[1]["version"] == 2  # the meddling write, then the decision


def test_new_mqls_get_owners_in_turn_across_chunks(rules):
    store = FakeStore()
    for n in range(5):
        i = store.add_lead(f"hot{n}@example.com", AS_OF - 3 * DAY, first_name="Hot",
                           source="website")
        store.add_activity(i, "demo_request", AS_OF - timedelta(minutes=5))
    run_cycle(store, context(rules, None, Provider()), AS_OF, "UTC", chunk_size=2)
    owners = rules.mql_owners
    assert [h["owner"] for h in store.handoffs] == [owners[i % len(owners)] for i in range(5)]
    assert [e.owner for e in store.events if e.kind == "mql"] == [
        h["owner"] for h in store.handoffs]


def test_owner_round_robin_continues_from_the_reserved_turn():
    assert assign_owners([7, 8, 9], ["ann", "bob"], 3) == {7: "bob", 8: "ann", 9: "bob"}
    with pytest.raises(ValueError):
        assign_owners([1], [], 0)
