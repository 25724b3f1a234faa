"""`nurture touches list|release` as an operator runs them (subprocess, SQLite): in-doubt and
failed touches are listed with why, and a person's release plans them again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from test_cli import make_env, nurture, ok, one_sentence_error

from nurture.store import tables as t

AS_OF = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def test_list_and_release_in_doubt_and_failed_touches(tmp_path, rules):
    from nurture.services.cycle import plan_chunk
    from nurture.store.db import make_engine, upgrade
    from nurture.store.store import LeadStore

    env = make_env(tmp_path)
    engine = make_engine(env["NURTURE_DATABASE_URL"])
    upgrade(engine)
    store = LeadStore(engine)
    store.upsert_leads([{"email": f"p{i}@example.com", "source": "website", "timezone": "UTC",
                         "created_at": AS_OF - timedelta(days=3)} for i in range(3)])
    plan_chunk(store, rules, 1, 100, AS_OF, "UTC")
    with engine.begin() as conn:
        ids = conn.execute(select(t.touches.c.id).order_by(t.touches.c.id)).scalars().all()
        conn.execute(update(t.touches).where(t.touches.c.id == ids[0])
                     .values(status="in_doubt", error="no answer within the timeout"))
        conn.execute(update(t.touches).where(t.touches.c.id == ids[1])
                     .values(status="failed", error="SendGrid 400: bad to"))

    listed = json.loads(ok(nurture("touches", "list", "--json", env=env, cwd=tmp_path)).stdout)
    assert [(r["id"], r["status"]) for r in listed["touches"]] == [
        (ids[0], "in_doubt"), (ids[1], "failed")]
    table = ok(nurture("touches", "list", env=env, cwd=tmp_path)).stdout
    assert "no answer within the timeout" in table and "touches release" in table

    out = json.loads(ok(nurture("touches", "release", str(ids[0]), str(ids[2]), "--json",
                                env=env, cwd=tmp_path)).stdout)
    assert out == {"released": [ids[0]], "not_released": [ids[2]]}  # planned: left alone
    with engine.connect() as conn:
        assert dict(conn.execute(select(t.touches.c.id, t.touches.c.status)).all()) == {
            ids[0]: "planned", ids[1]: "failed", ids[2]: "planned"}
    assert "touch ids" in one_sentence_error(nurture("touches", "release", env=env,
                                                     cwd=tmp_path))
    engine.dispose()
