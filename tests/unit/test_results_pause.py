"""A paused campaign keeps its leads but plans nothing for them (pure evaluation)."""

from __future__ import annotations

from nurture.core.evaluation import SKIP_PAUSED, evaluate


def test_paused_campaign_plans_nothing(rules, make_lead, as_of):
    lead = make_lead()
    d = evaluate(lead, rules, as_of)
    assert d.touch is not None
    paused = evaluate(lead, rules, as_of, frozenset({d.touch.campaign}))
    assert paused.touch is None and paused.skip_reason == SKIP_PAUSED
    assert paused.campaign == d.touch.campaign  # not moved to another campaign
    assert evaluate(lead, rules, as_of, frozenset({"another"})).touch == d.touch
