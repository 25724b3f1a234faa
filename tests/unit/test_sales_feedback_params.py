"""The sales-feedback flow's parameters as the Prefect custom-run form shows them, and the
door-specific wording of refusals (the decision itself is shared by every door)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nurture.core.sales import FeedbackRefused, LeadState, decide_feedback


def test_the_form_lists_actions_and_describes_every_parameter_with_the_shipped_codes(rules):
    from prefect.utilities.callables import parameter_schema

    from nurture.flows.sales_feedback import sales_feedback

    schema = parameter_schema(sales_feedback.fn).model_dump()
    props = schema["properties"]
    assert set(props) == {"email", "action", "reason", "note", "actor", "at"}
    assert all(props[p].get("description") for p in props), props
    assert props["action"]["enum"] == ["accept", "reject", "opportunity", "won", "lost"]
    # the description names the codes campaigns/lifecycle.yaml defines, with what they do
    text = " ".join(props["reason"]["description"].split())
    for code, what in rules.sales_rejected.items():
        assert (f"{code} (disqualify)" if what.disqualify
                else f"{code} (") in text, code
        if not what.disqualify:
            assert f"{what.recycle_after_days} days)" in text.split(code, 1)[1][:30]
    assert schema["required"] == ["email", "action"]


def test_a_missing_reason_is_refused_naming_the_input_the_door_uses(rules):
    state = LeadState("mql", 0, True)
    with pytest.raises(FeedbackRefused) as err:
        decide_feedback(state, "reject", rules, datetime(2026, 11, 23, tzinfo=UTC))
    assert "--reason" not in str(err.value)
    assert err.value.param == "reason"
    assert err.value.door_message("--{}").startswith("--reason: a reject needs a reason code")
    assert err.value.door_message("parameter '{}'").startswith("parameter 'reason': ")


def test_names_leave_personal_data_out():
    from nurture.flows.common import lead_ref

    assert lead_ref("Ana@Example.com ") == lead_ref("ana@example.com")
    assert "@" not in lead_ref("ana@example.com") and "ana" not in lead_ref("ana@example.com")
