"""`nurture webhooks replay` as an operator runs it: stored batches a crash left unapplied
are applied once, bad events are retried then listed, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from nurture.store import tables as t
from nurture.store.events import EventStore

REPO = Path(__file__).resolve().parents[2]


def replay(db_url: str, cwd: Path, *extra: str) -> tuple[int, dict]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NURTURE_", "PREFECT_", "SENDGRID_"))}
    env.update(NURTURE_DATABASE_URL=db_url, NURTURE_CAMPAIGNS_DIR=str(REPO / "campaigns"),
               NURTURE_TEMPLATES_DIR=str(REPO / "templates"), NURTURE_TRANSPORT="outbox")
    p = subprocess.run([sys.executable, "-m", "nurture", "webhooks", "replay", "--json",
                        *extra], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert p.stderr == "" or "Traceback" not in p.stderr, p.stderr
    return p.returncode, json.loads(p.stdout)


def test_replay_applies_what_a_crash_left_and_lists_what_cannot_apply(store, db_url,
                                                                      tmp_path):
    store.upsert_leads([{"email": "ana@example.com", "first_name": "Ana",
                         "source": "website", "timezone": "UTC",
                         "created_at": datetime.now(UTC) - timedelta(days=1)}])
    ts = int(datetime.now(UTC).timestamp()) - 60
    batch = [{"event": "open", "email": "ana@example.com", "timestamp": ts,
              "sg_event_id": "o1"},
             {"event": "click", "email": "ana@example.com", "timestamp": ts + 30,
              "sg_event_id": "c1", "url": "https://x.example"},
             {"event": "open", "email": "ana@example.com", "timestamp": 1e20,
              "sg_event_id": "bad"}]
    EventStore(store.engine).store_batch(json.dumps(batch), True, 3)  # then kill -9

    code, out = replay(db_url, tmp_path, "--max-attempts", "2")
    assert (code, out["batches"], out["events_applied"], out["events_failed"]) == (1, 1, 2, 1)
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.activities)).scalar_one() == 2
    bad = out["still_failing"]["events"]
    assert [(e["event_id"], e["outcome"]) for e in bad] == [("bad", "error")]
    assert "timestamp" in bad[0]["error"]

    code, out = replay(db_url, tmp_path, "--max-attempts", "2")  # one more try, then listed
    assert code == 1 and out["batches"] == 0 and out["events_failed"] == 1
    code, out = replay(db_url, tmp_path, "--max-attempts", "2")
    assert code == 0 and out["events_failed"] == 0 and out["given_up"] == 1
    assert out["still_failing"]["events"][0]["given_up"] is True
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.activities)).scalar_one() == 2
