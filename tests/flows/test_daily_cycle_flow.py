"""The daily flow under a real ephemeral Prefect server: chunk tasks (never per lead), a dated
run name, the summary artifacts operators read in the UI, and safe re-runs."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.flows

AS_OF = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
N_LEADS = 7
CHUNK = 3


@pytest.fixture
def flow_env(tmp_path, monkeypatch, campaigns_dir, templates_dir):
    """A migrated SQLite file with N_LEADS website leads, wired through NURTURE_* settings
    exactly as a deployment would be."""
    from nurture.store.db import make_engine, upgrade
    from nurture.store.store import LeadStore

    url = f"sqlite:///{tmp_path / 'flow.db'}"
    for key, value in {"NURTURE_DATABASE_URL": url, "NURTURE_TRANSPORT": "outbox",
                       "NURTURE_OUTBOX_DIR": str(tmp_path / "outbox"),
                       "NURTURE_CAMPAIGNS_DIR": str(campaigns_dir),
                       "NURTURE_TEMPLATES_DIR": str(templates_dir)}.items():
        monkeypatch.setenv(key, value)
    engine = make_engine(url)
    upgrade(engine)
    store = LeadStore(engine)
    store.upsert_leads([
        {"email": f"lead{i}@example.com", "first_name": f"Lead{i}", "source": "website",
         "timezone": "UTC", "created_at": AS_OF - timedelta(days=2)} for i in range(N_LEADS)])
    yield store, tmp_path
    engine.dispose()


def _run(**params):
    from nurture.flows.daily_cycle import daily_nurture_cycle

    state = daily_nurture_cycle(return_state=True, **params)
    return state, state.state_details.flow_run_id


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def test_cycle_runs_in_chunk_tasks_with_artifacts_and_is_safe_to_rerun(prefect_server,
                                                                       flow_env):
    from prefect.client.schemas.filters import ArtifactFilter, FlowRunFilter

    store, tmp_path = flow_env
    state, run_id = _run(as_of=AS_OF.isoformat(), chunk_size=CHUNK)
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary["leads_scored"] == N_LEADS
    assert summary["touches_sent"] == N_LEADS  # everyone's first education step
    assert len(list((tmp_path / "outbox").rglob("*.eml"))) == N_LEADS
    assert (tmp_path / "outbox" / "index.html").is_file()

    with _client() as client:
        run = client.read_flow_run(run_id)
        assert run.name.startswith("nurture-cycle-2026-11-02-0800-")
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [run_id]}))
        names = sorted(t.name for t in tasks if t.name.startswith(("plan ", "send ")))
        chunks = math.ceil(N_LEADS / CHUNK)
        # one plan and one send task per chunk of leads: never a task per lead; then the
        # funnel report and the CRM handoff delivery, once each
        assert len(names) == 2 * chunks
        assert sorted(t.task_key.split("-")[0] for t in tasks
                      if not t.name.startswith(("plan ", "send "))) == [
            "deliver_handoffs_task", "funnel_report_task"]
        assert names == sorted([f"plan leads {lo}-{min(lo + CHUNK - 1, N_LEADS)}"
                                for lo in range(1, N_LEADS + 1, CHUNK)]
                               + [f"send touches {lo}-{min(lo + CHUNK - 1, N_LEADS)}"
                                  for lo in range(1, N_LEADS + 1, CHUNK)])
        arts = client.read_artifacts(flow_run_filter=FlowRunFilter(id={"any_": [run_id]}))
        by_key = {a.key: a for a in arts}
        assert {"nurture-cycle-summary", "nurture-cycle-report", "nurture-funnel",
                "nurture-cycle-progress"} <= set(by_key)
        assert "nurturing" in str(by_key["nurture-funnel"].data)
        assert by_key["nurture-cycle-summary"].type == "table"
        assert "inbound-saas" in str(by_key["nurture-cycle-summary"].data)
        assert by_key["nurture-cycle-report"].type == "markdown"
        assert by_key["nurture-cycle-progress"].data == 100.0
        latest = client.read_artifacts(
            artifact_filter=ArtifactFilter(key={"any_": ["nurture-cycle-summary"]}))
        assert latest

    # the same day again: nothing new to send, no duplicate touch
    state2, _ = _run(as_of=(AS_OF + timedelta(hours=3)).isoformat(), chunk_size=CHUNK)
    assert state2.is_completed()
    assert state2.result()["touches_sent"] == 0
    assert len(list((tmp_path / "outbox").rglob("*.eml"))) == N_LEADS


def test_dry_run_decides_but_writes_nothing(prefect_server, flow_env):
    from sqlalchemy import func, select

    from nurture.store import tables as t

    store, tmp_path = flow_env
    state, run_id = _run(as_of=AS_OF.isoformat(), dry_run=True)
    assert state.is_completed()
    assert state.result()["touches_planned"] == N_LEADS
    assert state.result()["touches_sent"] == 0
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.touches)).scalar_one() == 0
    assert not list((tmp_path / "outbox").rglob("*.eml"))
    with _client() as client:
        assert client.read_flow_run(run_id).name.startswith(
            "nurture-cycle-2026-11-02-0800-dry-run-")


def test_bad_config_fails_the_run_clearly_and_a_rerun_recovers(prefect_server, flow_env,
                                                                tmp_path, monkeypatch,
                                                                campaigns_dir):
    import shutil

    broken = tmp_path / "campaigns"
    shutil.copytree(campaigns_dir, broken)
    path = broken / "inbound-saas.yaml"
    path.write_text(path.read_text().replace("cadence_days: 7", "cadence_days: weekly"))
    monkeypatch.setenv("NURTURE_CAMPAIGNS_DIR", str(broken))
    state, _ = _run(as_of=AS_OF.isoformat())
    assert state.is_failed()
    assert "inbound-saas.yaml" in state.message or "inbound-saas.yaml" in str(
        state.result(raise_on_failure=False))
    store, out = flow_env
    assert not list((out / "outbox").rglob("*.eml"))

    monkeypatch.setenv("NURTURE_CAMPAIGNS_DIR", str(campaigns_dir))
    state, _ = _run(as_of=AS_OF.isoformat())
    assert state.is_completed()
    assert state.result()["touches_sent"] == N_LEADS


def test_process_engagement_and_sales_feedback_flows(prefect_server, flow_env):
    from nurture.flows.process_engagement import process_engagement
    from nurture.flows.sales_feedback import sales_feedback

    store, _ = flow_env
    first = _run(as_of=AS_OF.isoformat())[0]
    assert first.is_completed()
    store.insert_activities([{"id": "d1", "email": "lead3@example.com",
                              "type": "demo_request", "occurred_at": AS_OF + timedelta(hours=2),
                              "properties": {}}])
    state = process_engagement(as_of=(AS_OF + timedelta(hours=2, minutes=15)).isoformat(),
                               return_state=True)
    assert state.is_completed(), state.message
    out = state.result()
    assert (out["leads_with_new_activity"], out["mqls"]) == (1, 1)
    assert out["handed_to_sales"][0]["email"] == "lead3@example.com"

    state = sales_feedback(email="lead3@example.com", action="reject", reason="not_ready",
                           note="next quarter", return_state=True)
    assert state.is_completed(), state.message
    assert (state.result()["from"], state.result()["to"]) == ("mql", "recycled")
    bad = sales_feedback(email="lead3@example.com", action="accept", return_state=True)
    assert bad.is_failed() and "only an MQL can be accepted" in bad.message


def test_sendgrid_key_from_a_prefect_secret_block(prefect_server, monkeypatch):
    from prefect.blocks.system import Secret

    from nurture.settings import Settings
    from nurture.wiring import MissingSecret, sendgrid_api_key

    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    monkeypatch.delenv("NURTURE_SENDGRID_API_KEY", raising=False)
    with pytest.raises(MissingSecret, match="sendgrid-api-key"):
        sendgrid_api_key(Settings(transport="sendgrid"))
    Secret(value="SG.from-the-block").save("sendgrid-api-key", overwrite=True)
    assert sendgrid_api_key(Settings(transport="sendgrid")) == "SG.from-the-block"
    # the environment wins over the block
    assert sendgrid_api_key(Settings(transport="sendgrid",
                                     sendgrid_api_key="SG.env")) == "SG.env"


def test_mql_events_are_emitted_even_when_the_send_phase_fails(prefect_server, flow_env,
                                                              monkeypatch):
    """#8: events used to be emitted only after the send task returned, so a refused API key
    (or a crash) lost every MQL announcement of the chunk."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from sqlalchemy import select

    from nurture.store import tables as t

    class Refuse(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):  # noqa: N802
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            body = b'{"errors": [{"message": "The provided authorization grant is invalid"}]}'
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    store, _ = flow_env
    store.insert_activities([{"id": f"demo-{i}", "email": f"lead{i}@example.com",
                              "type": "demo_request", "occurred_at": AS_OF - timedelta(hours=1),
                              "properties": {}} for i in range(2)])
    monkeypatch.setenv("NURTURE_TRANSPORT", "sendgrid")
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.revoked")
    monkeypatch.setenv("NURTURE_SENDGRID_HOST", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        state, _ = _run(as_of=AS_OF.isoformat())
    finally:
        server.shutdown()
    assert state.is_failed() and "refused the API key" in state.message
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.lead_events.c.kind, t.lead_events.c.emitted_at)).all()
        touches = conn.execute(select(t.touches.c.status)).scalars().all()
    assert sorted(k for k, _ in rows) == ["mql", "mql"]
    assert all(at is not None for _, at in rows)  # announced before anything was sent
    assert set(touches) == {"planned"}  # and the refused key left the ledger as it was
