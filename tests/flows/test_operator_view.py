"""What an operator sees of a run in the Prefect UI (under the ephemeral server): unique,
dated run names without personal data, dry runs that never replace the live "latest"
artifacts, every config problem in the failed run's message and logs, and an artifact
listing what instant routing and sales feedback changed."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.flows

AS_OF = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def env(tmp_path, monkeypatch, campaigns_dir, templates_dir):
    from nurture.store.db import make_engine, upgrade
    from nurture.store.store import LeadStore

    url = f"sqlite:///{tmp_path / 'op.db'}"
    for key, value in {"NURTURE_DATABASE_URL": url, "NURTURE_TRANSPORT": "outbox",
                       "NURTURE_OUTBOX_DIR": str(tmp_path / "outbox"),
                       "NURTURE_CAMPAIGNS_DIR": str(campaigns_dir),
                       "NURTURE_TEMPLATES_DIR": str(templates_dir)}.items():
        monkeypatch.setenv(key, value)
    engine = make_engine(url)
    upgrade(engine)
    store = LeadStore(engine)
    store.upsert_leads([
        {"email": f"op{i}@example.com", "first_name": f"Op{i}", "source": "website",
         "timezone": "UTC", "created_at": AS_OF - timedelta(days=2)} for i in range(3)])
    yield store, tmp_path
    engine.dispose()


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _artifacts(client, run_id):
    from prefect.client.schemas.filters import FlowRunFilter

    return {a.key: a for a in client.read_artifacts(
        flow_run_filter=FlowRunFilter(id={"any_": [run_id]}))}


def _latest(client, key):
    from prefect.client.schemas.filters import ArtifactCollectionFilter

    got = client.read_latest_artifacts(
        artifact_filter=ArtifactCollectionFilter(key={"any_": [key]}))
    return got[0] if got else None


def test_runs_of_one_day_have_distinct_names_and_a_dry_run_never_replaces_latest(
        prefect_server, env):
    from nurture.flows.daily_cycle import daily_nurture_cycle

    live = daily_nurture_cycle(as_of=AS_OF.isoformat(), return_state=True)
    again = daily_nurture_cycle(as_of=AS_OF.isoformat(), return_state=True)
    dry = daily_nurture_cycle(as_of=AS_OF.isoformat(), dry_run=True, return_state=True)
    assert live.is_completed() and again.is_completed() and dry.is_completed()
    with _client() as client:
        names = [client.read_flow_run(s.state_details.flow_run_id).name
                 for s in (live, again, dry)]
        assert len(set(names)) == 3, names
        assert all(n.startswith("nurture-cycle-2026-11-02-0800-") for n in names)
        assert "dry-run" in names[2] and "dry-run" not in names[0]

        arts = _artifacts(client, dry.state_details.flow_run_id)
        assert {"nurture-cycle-summary-dry-run", "nurture-cycle-report-dry-run"} <= set(arts)
        assert not {"nurture-cycle-summary", "nurture-cycle-report"} & set(arts)
        assert arts["nurture-cycle-report-dry-run"].description.startswith("DRY RUN")
        latest = _latest(client, "nurture-cycle-summary")
        assert latest.flow_run_id == again.state_details.flow_run_id
        live_arts = _artifacts(client, live.state_details.flow_run_id)
        table = live_arts["nurture-cycle-summary"].data
        assert '"Retrying / in doubt"' in table and "SLA expired" in table
        assert '"Sent": 3' in table  # the total row of the first run: one touch per lead


def test_a_bad_config_fails_with_every_problem_in_the_message_and_the_logs(
        prefect_server, env, tmp_path, monkeypatch, campaigns_dir, templates_dir):
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from nurture.flows.daily_cycle import daily_nurture_cycle
    from nurture.services.validation import validate

    broken = tmp_path / "broken"
    shutil.copytree(campaigns_dir, broken)
    path = broken / "inbound-saas.yaml"
    text = path.read_text().replace("cadence_days: 7", "cadence_days: weekly", 1)
    path.write_text(text.replace("cadence_days: 4", "cadence_days: often", 1))
    lc = broken / "lifecycle.yaml"
    lc.write_text(lc.read_text().replace("max_recycles: 3", "max_recycles: many"))
    monkeypatch.setenv("NURTURE_CAMPAIGNS_DIR", str(broken))
    _, problems = validate(broken, templates_dir)
    assert len(problems) >= 3
    state = daily_nurture_cycle(as_of=AS_OF.isoformat(), return_state=True)
    assert state.is_failed()
    assert f"{len(problems)} config problem(s)" in state.message
    for p in problems:
        assert str(p) in state.message
    assert "more)" not in state.message
    import time

    # run logs are shipped in the background: wait until they landed
    deadline = time.monotonic() + 30
    while True:
        with _client() as client:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(
                any_=[state.state_details.flow_run_id])))
        text = "\n".join(log.message for log in logs)
        if all(f"config problem: {p}" in text for p in problems) or \
                time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for p in problems:
        assert f"config problem: {p}" in text


def test_a_missing_database_file_is_not_created_by_a_failed_run(prefect_server, env,
                                                                tmp_path, monkeypatch):
    from nurture.flows.daily_cycle import daily_nurture_cycle

    missing = tmp_path / "not-there" / "nurture.db"
    monkeypatch.setenv("NURTURE_DATABASE_URL", f"sqlite:///{missing}")
    state = daily_nurture_cycle(return_state=True)
    assert state.is_failed() and "nurture db upgrade" in state.message
    assert not missing.exists()


def test_instant_routing_and_sales_feedback_list_what_they_changed(prefect_server, env):
    from nurture.flows.process_engagement import process_engagement
    from nurture.flows.sales_feedback import sales_feedback

    store, _ = env
    from nurture.flows.daily_cycle import daily_nurture_cycle

    assert daily_nurture_cycle(as_of=AS_OF.isoformat(), return_state=True).is_completed()
    store.insert_activities([{"id": "op-demo", "email": "op1@example.com",
                              "type": "demo_request", "occurred_at": AS_OF + timedelta(hours=1),
                              "properties": {}}])
    routed = process_engagement(as_of=(AS_OF + timedelta(hours=1, minutes=15)).isoformat(),
                                return_state=True)
    assert routed.is_completed(), routed.message
    lead_id = routed.result()["handed_to_sales"][0]["lead_id"]
    no_reason = sales_feedback(email="op1@example.com", action="reject", return_state=True)
    assert no_reason.is_failed()
    assert "parameter 'reason': a reject needs a reason code, one of bad_data" in \
        no_reason.message and "--reason" not in no_reason.message
    fb = sales_feedback(email="OP1@example.com", action="accept", return_state=True)
    assert fb.is_completed(), fb.message
    with _client() as client:
        run = client.read_flow_run(routed.state_details.flow_run_id)
        assert run.name.startswith("instant-routing-2026-11-02-0915-")
        md = _artifacts(client, run.id)["instant-routing-changes"].data
        assert (f"- **#{lead_id} op1@example.com** (inbound-saas): nurturing → **mql**, "
                "owner ") in md
        assert "rule `routing.mql.when" in md and "(`nurture.lead.mql`)" in md
        fb_run = client.read_flow_run(fb.state_details.flow_run_id)
        assert "@" not in fb_run.name and "op1" not in fb_run.name
        assert fb_run.name.startswith("sales-accept-") and "-lead-" in fb_run.name
        md = _artifacts(client, fb_run.id)["sales-feedback-changes"].data
        assert (f"- **#{lead_id} op1@example.com** (inbound-saas): mql → **sal**, "
                "by sales:prefect; rule `sales.accept` (`nurture.lead.sal`)") in md
