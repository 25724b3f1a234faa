"""The pure provider-event decisions: delivery precedence, scanner clicks, settling,
suppressions — no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from nurture.adapters.sendgrid_events import interpret
from nurture.core.domain import CANCELLED, FAILED, IN_DOUBT, PLANNED, SENDING, SENT
from nurture.core.engagement import (
    DELIVERY_RANK,
    SCANNER_CLICK,
    LeadRef,
    TouchState,
    activity_id,
    can_settle,
    decide,
    fold_touch,
    is_scanner_click,
    outcome_for,
    outranks,
    rank,
)
from nurture.core.provider_events import (
    MEANINGS,
    DeliveryStatus,
    EventKind,
    EventOutcome,
    ProviderEvent,
    meaning_of,
)

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LEAD = LeadRef(7, "ana@example.com")
TOUCH = TouchState(11, LEAD.id, sent_at=T0, delivered_at=None)


def ev(kind: str, dt: float = 60, tid: int | None = TOUCH.id, **raw) -> ProviderEvent:
    """A parsed event, as the SendGrid adapter produces it."""
    e = {"event": kind, "email": LEAD.email, "timestamp": int((T0 + timedelta(
        seconds=dt)).timestamp()), "sg_event_id": f"{kind}-{dt}-{tid}"} | raw
    if tid is not None:
        e["touch_id"] = str(tid)
    return interpret(e, now=(T0 + timedelta(days=1)).timestamp())


def decide_for(events, touches=None, lead=LEAD, seconds=10.0):
    touches = {TOUCH.id: TOUCH} if touches is None else touches
    return decide(events, touches, lambda e: lead, seconds, T0 + timedelta(hours=1))


STATUS_EVENTS = [("delivered", {}), ("deferred", {}), ("bounce", {"type": "bounce"}),
                 ("bounce", {"type": "blocked"}), ("dropped", {"reason": "Invalid"})]


# -- precedence ----------------------------------------------------------------------------
@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(STATUS_EVENTS), st.integers(0, 10_000)),
                min_size=1, max_size=8))
def test_the_strongest_delivery_status_wins_and_a_later_weaker_one_never_downgrades(seq):
    events = [ev(kind, dt, **raw) for (kind, raw), dt in seq]
    change = fold_touch(TOUCH.id, events)
    assert rank(change.delivery_status) == max(rank(e.delivery_status) for e in events)
    # monotone: folding one more event never lowers the rank
    for i in range(1, len(events)):
        before = fold_touch(TOUCH.id, events[:i]).delivery_status
        after = fold_touch(TOUCH.id, events[:i + 1]).delivery_status
        assert rank(after) >= rank(before)


@given(st.sampled_from(list(DeliveryStatus) + [None]),
       st.sampled_from(list(DeliveryStatus) + [None]))
def test_outranks_agrees_with_the_rank_table(new, current):
    assert outranks(new, current) == (new is not None and rank(new) >= rank(current))


def test_the_rank_table_orders_failures_above_delivery_above_deferral():
    assert DELIVERY_RANK["deferred"] < DELIVERY_RANK["blocked"] < DELIVERY_RANK["delivered"]
    assert DELIVERY_RANK["delivered"] < DELIVERY_RANK["bounced"] == DELIVERY_RANK["dropped"]
    assert not outranks(DeliveryStatus.DEFERRED, DeliveryStatus.DELIVERED)
    assert outranks(DeliveryStatus.BOUNCED, DeliveryStatus.DELIVERED)


def test_on_equal_rank_the_later_event_wins():
    change = fold_touch(TOUCH.id, [ev("dropped", 30, reason="Invalid"),
                                   ev("bounce", 10, type="bounce", reason="550")])
    assert change.delivery_status == DeliveryStatus.DROPPED and change.error == "dropped: Invalid"


def test_a_failing_status_carries_its_reason_and_a_later_delivery_does_not_clear_it():
    change = fold_touch(TOUCH.id, [
        ev("bounce", 10, type="bounce", reason="550 no such user"), ev("delivered", 20)])
    assert change.delivery_status == DeliveryStatus.BOUNCED
    assert change.error == "bounced: 550 no such user"
    deferred = fold_touch(TOUCH.id, [ev("deferred", 5, response="try later")])
    assert deferred.delivery_status == DeliveryStatus.DEFERRED and deferred.error is None


def test_the_fold_takes_events_in_time_order_whatever_the_batch_order():
    late, early = ev("delivered", 50), ev("processed", 5)
    change = fold_touch(TOUCH.id, [late, early])
    assert change.settle_at == early.occurred_at and change.delivered_at == late.occurred_at
    assert change.last_event_at == late.occurred_at


# -- settling -------------------------------------------------------------------------------
def test_only_in_doubt_and_failed_touches_settle():
    assert can_settle(IN_DOUBT) and can_settle(FAILED)
    assert not any(can_settle(s) for s in (PLANNED, SENDING, SENT, CANCELLED))


def test_an_event_proving_the_provider_had_the_message_settles_at_its_first_time():
    change = fold_touch(TOUCH.id, [ev("open", 90), ev("processed", 3)])
    assert change.settle_at == T0 + timedelta(seconds=3)


def test_accepted_is_not_gone_out_a_late_cancellation_needs_proof_it_left():
    assert fold_touch(TOUCH.id, [ev("processed", 3)]).went_out is None
    assert fold_touch(TOUCH.id, [ev("dropped", 3, reason="Invalid")]).late_send_note is None
    change = fold_touch(TOUCH.id, [ev("processed", 3), ev("delivered", 9)])
    assert change.went_out == EventKind.DELIVERED
    assert "sent after all" in change.late_send_note


def test_a_resubscribe_settles_but_changes_no_delivery_status():
    change = fold_touch(TOUCH.id, [ev("group_resubscribe", 3)])
    assert change.settle_at is not None and change.delivery_status is None


# -- scanner clicks -------------------------------------------------------------------------
@given(st.floats(0, 3600, allow_nan=False), st.floats(0.5, 120, allow_nan=False),
       st.booleans())
def test_a_click_is_a_scanner_exactly_when_it_comes_within_the_window(after, window,
                                                                       delivered):
    ref = T0 + timedelta(seconds=30)
    at = ref + timedelta(seconds=after)
    scanner = is_scanner_click(at, ref if delivered else None, ref, window)
    assert scanner == (timedelta(seconds=after) <= timedelta(seconds=window))


def test_a_click_with_no_send_or_delivery_time_is_the_lead():
    assert not is_scanner_click(T0, None, None, 10.0)


def test_a_click_right_after_delivery_in_the_same_batch_is_a_scanner():
    d = decide_for([ev("delivered", 100), ev("click", 104, url="https://x.example/")])
    [click] = d.activities
    assert click.type == SCANNER_CLICK and d.scanner_clicks == 1
    later = decide_for([ev("delivered", 100), ev("click", 200)])
    assert [a.type for a in later.activities] == ["email_click"] and later.scanner_clicks == 0


def test_without_a_delivery_the_send_time_is_the_reference():
    assert decide_for([ev("click", 5)]).scanner_clicks == 1
    assert decide_for([ev("click", 5)], seconds=1).scanner_clicks == 0


# -- suppressions, activities, outcomes ----------------------------------------------------
def test_one_suppression_per_address_from_its_first_event_with_an_audit_note():
    d = decide_for([ev("unsubscribe", 50), ev("spamreport", 20)])
    [s] = d.suppressions
    assert s.reason == "spamreport" and s.rule == "suppression.spamreport"
    assert s.lead_id == LEAD.id and "SendGrid reported spamreport" in s.audit_reason
    assert d.recheck == {LEAD.id}
    assert [a.type for a in d.activities] == ["spam_report", "unsubscribe"]


def test_a_suppression_for_an_unknown_address_is_kept_without_an_audit_lead():
    d = decide_for([ev("bounce", 5, tid=None, type="bounce")], touches={}, lead=None)
    assert d.suppressions[0].lead_id is None and d.unmatched == 1
    assert d.activities == () and d.recheck == frozenset()


def test_a_temporary_block_does_not_suppress_and_machine_opens_are_told_apart():
    assert decide_for([ev("bounce", 5, type="blocked")]).suppressions == ()
    d = decide_for([ev("open", 5, sg_machine_open=True), ev("open", 900)])
    assert [a.type for a in d.activities] == ["email_machine_open", "email_open"]
    assert all(a.properties["touch_id"] == TOUCH.id for a in d.activities)


def test_outcomes_unknown_kinds_are_ignored_and_unmatched_events_kept():
    assert outcome_for(ev("delivered"), matched=True) == EventOutcome.APPLIED
    assert outcome_for(ev("group_resubscribe"), matched=True) == EventOutcome.APPLIED
    odd = ProviderEvent("x", "machine_learning", LEAD.email, T0, None, None)
    assert outcome_for(odd, matched=True) == EventOutcome.IGNORED
    assert outcome_for(ev("delivered"), matched=False) == EventOutcome.UNMATCHED


def test_activity_ids_stay_unique_for_long_event_ids():
    a, b = "x" * 300 + "a", "x" * 300 + "b"
    assert activity_id("sendgrid", "e1") == "sendgrid:e1"
    assert activity_id("sendgrid", a) != activity_id("sendgrid", b)
    assert len(activity_id("sendgrid", a)) <= 200


def test_every_event_kind_has_a_meaning_and_the_special_cases_are_their_own():
    assert set(MEANINGS) == set(EventKind)
    assert meaning_of("bounce", blocked=True).suppress is None
    assert meaning_of("bounce").suppress == "bounce"
    assert meaning_of("open", machine_open=True).activity == "email_machine_open"
    assert meaning_of("dropped").suppress is None
    assert meaning_of("dropped", suppress="bounce").suppress == "bounce"
    assert meaning_of("processed").went_out is False
    assert meaning_of("machine_learning") == meaning_of("nothing")
