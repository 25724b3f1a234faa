"""Results in the Prefect UI, under a real ephemeral Prefect server: the artifacts a live
cycle publishes, and the `nurture.campaign.paused` event of a campaign over the spam limit
(emitted once, marked in the store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import insert, select

pytestmark = pytest.mark.flows


def _seed(engine, now):
    from nurture.services.results import GUARD_MIN_SENT
    from nurture.store import tables as t

    with engine.begin() as conn:
        lead = conn.execute(insert(t.leads).values(
            email="s@x.example", attributes={}, created_at=now, updated_at=now,
            lifecycle_stage="nurturing", stage_entered_at=now, recycle_count=0)
            .returning(t.leads.c.id)).scalar_one()
        sent = now - timedelta(hours=5)
        ids = conn.execute(insert(t.touches).returning(t.touches.c.id), [
            {"lead_id": lead, "campaign": "spammy", "track": "t", "step": f"s{i}", "round": 0,
             "variant": "ab"[i % 2], "status": "sent", "planned_at": sent, "send_at": sent,
             "sent_at": sent, "updated_at": sent} for i in range(GUARD_MIN_SENT)]).scalars().all()
        conn.execute(insert(t.activities), [
            {"external_id": f"spam-{tid}", "lead_id": lead, "type": "spam_report",
             "occurred_at": now - timedelta(hours=4), "properties": {"touch_id": tid},
             "source": "sendgrid", "received_at": now} for tid in ids[:3]])


def test_artifacts_and_pause_event(prefect_server, migrated_engine):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter

    from nurture.flows.artifacts import publish_result_artifacts
    from nurture.store import tables as t

    now = datetime.now(UTC)
    _seed(migrated_engine, now)

    @flow(name="results-artifacts-test")
    def publish():
        return publish_result_artifacts(SimpleNamespace(engine=migrated_engine), now)

    state = publish(return_state=True)
    assert state.is_completed(), state.message
    out = state.result()
    assert [p["campaign"] for p in out["paused_now"]] == ["spammy"]
    with migrated_engine.connect() as conn:
        row = conn.execute(select(t.campaign_status)).one()
    assert row.status == "paused" and row.event_emitted_at is not None
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(flow_run_filter=FlowRunFilter(
            id={"any_": [state.state_details.flow_run_id]}))
    by_key = {a.key: a for a in arts}
    assert {"nurture-results", "nurture-results-steps", "nurture-results-sources",
            "nurture-results-deliverability"} <= set(by_key)
    assert "Paused now" in by_key["nurture-results"].data
    assert "spammy" in str(by_key["nurture-results-deliverability"].data)
