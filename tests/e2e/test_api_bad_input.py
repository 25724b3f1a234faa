"""`POST /activities` and `POST /sales/feedback` over real HTTP (uvicorn on loopback), on
SQLite and PostgreSQL: no body, however hostile, gets a 500 — bad values get a 4xx naming
the field, and the valid activities of a batch are still stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, select

from nurture.store import tables as t

KEY = "bad-input-api-key-0123456789"
NOW = datetime.now(UTC).replace(microsecond=0)
AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


@pytest.fixture
def api(db_url, serve, campaigns_dir, templates_dir):
    from nurture.entrypoints.http.app import create_app
    from nurture.settings import Settings
    from nurture.store.db import upgrade
    from nurture.wiring import App

    app = App(Settings(database_url=db_url, api_key=KEY, campaigns_dir=campaigns_dir,
                       templates_dir=templates_dir))
    upgrade(app.engine)
    with app.engine.begin() as conn:
        conn.execute(insert(t.leads).values(
            email="m@example.com", attributes={}, created_at=NOW, updated_at=NOW,
            lifecycle_stage="mql", stage_entered_at=NOW, recycle_count=0))
    server = serve(create_app(app))
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
        yield client, app
    app.engine.dispose()


def activity(i: str, **kw) -> dict:
    return {"id": i, "email": "a@example.com", "type": "page_view",
            "occurred_at": (NOW - timedelta(hours=1)).isoformat()} | kw


HOSTILE_ACTIVITIES = {
    # the hostile item (the body also holds two good ones): the field the answer names
    "nan": ('{"id": "h", "email": "a@example.com", "type": "page_view", '
            '"occurred_at": "2024-01-01T00:00:00Z", "properties": {"x": NaN}}', "properties"),
    "1e400": ('{"id": "h", "email": "a@example.com", "type": "page_view", '
              '"occurred_at": "2024-01-01T00:00:00Z", "properties": {"x": 1e400}}',
              "properties"),
    "year 9999": (json.dumps(activity("h", occurred_at="9999-12-31T23:59:59-14:00")),
                  "occurred_at"),
    "year 1": (json.dumps(activity("h", occurred_at="0001-01-01T00:00:00+14:00")),
               "occurred_at"),
    "300-char id": (json.dumps(activity("i" * 300)), "id"),
    "300-char type": (json.dumps(activity("h", type="t" * 300)), "type"),
    "NUL id": (json.dumps(activity("a\x00b")), "id"),
    "NUL property": (json.dumps(activity("h", properties={"k\x00": 1})), "properties"),
    "bool id": (json.dumps(activity(True)), "id"),
    "wrong types": (json.dumps(activity(["x"], email=7, type={}, occurred_at=[])), "id"),
    "deep properties": (json.dumps(activity("h", properties={"a": [[[[[[[[[[[[[[[[[[[[[[[
        [[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]})), "properties"),
}


@pytest.mark.parametrize("case", list(HOSTILE_ACTIVITIES))
def test_a_hostile_activity_is_a_422_naming_it_and_the_rest_are_stored(api, case):
    client, app = api
    item, field = HOSTILE_ACTIVITIES[case]
    body = f"[{json.dumps(activity('g1'))}, {item}, {json.dumps(activity('g2'))}]"
    r = client.post("/activities", content=body.encode())
    assert r.status_code == 422, r.text
    [problem] = r.json()["problems"]
    assert problem["index"] == 1 and field in problem["error"], problem
    assert r.json()["stored"]["inserted"] == 2
    with app.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.activities)).scalar_one() == 2


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"id": "\xff"}',
                                  b"", b"null", b"[]", b"1e400", b"NaN"])
def test_an_unreadable_activity_body_is_a_4xx(api, body):
    r = api[0].post("/activities", content=body)
    assert 400 <= r.status_code < 500, r.text


FEEDBACK = {"email": "m@example.com", "action": "accept"}
HOSTILE_FEEDBACK = {
    "at year 9999": ({"at": "9999-12-31T23:59:59-14:00"}, "at"),
    "at year 9999 +14": ({"at": "9999-12-31T23:59:59+14:00"}, "at"),
    "at year 1": ({"at": "0001-01-01T00:00:00+01:00"}, "at"),
    "at NaN": ({"at": float("nan")}, "at"),
    "at 1e400": ({"at": 1e400}, "at"),
    "300-char actor": ({"actor": "a" * 300}, "actor"),
    "300-char reason": ({"action": "reject", "reason": "r" * 300}, "reason"),
    "NUL note": ({"note": "n\x00"}, "note"),
    "long email": ({"email": "e" * 400 + "@example.com"}, "email"),
    "email number": ({"email": 12}, "email"),
    "actor object": ({"actor": {"a": 1}}, "actor"),
}


@pytest.mark.parametrize("case", list(HOSTILE_FEEDBACK))
def test_hostile_sales_feedback_is_a_4xx_naming_the_field(api, case):
    client, app = api
    extra, field = HOSTILE_FEEDBACK[case]
    r = client.post("/sales/feedback", content=json.dumps(FEEDBACK | extra).encode())
    assert 400 <= r.status_code < 500 and field in r.json()["error"], r.text
    with app.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.transitions)).scalar_one() == 0


def test_a_deep_or_non_utf8_feedback_body_is_a_400(api):
    for body in (b"[" * 40_000 + b"]" * 40_000, b'{"email": "\xff"}'):
        assert api[0].post("/sales/feedback", content=body).status_code == 400


# -- property-based: any JSON at all, never a 500 ------------------------------------------
HOSTILE_STRINGS = st.sampled_from([
    "", "a" * 300, "x\x00y", "9999-12-31T23:59:59+14:00", "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+01:00", "2099-01-01T00:00:00Z", "m@example.com", "page_view",
    "accept", "reject", "competitor", "\udcff".encode("utf-8", "surrogatepass").decode(
        "utf-8", "replace"), "é" * 200])
ATOMS = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
         | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
         | HOSTILE_STRINGS)
JSON_VALUES = st.recursive(ATOMS, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=8) | HOSTILE_STRINGS, kids,
                                             max_size=4), max_leaves=12)
VALID_ACTIVITY = activity("p1", properties={"url": "/"})
VALID_FEEDBACK = {"email": "m@example.com", "action": "accept", "reason": None, "note": "n",
                  "actor": "crm", "at": (NOW - timedelta(hours=1)).isoformat()}


def almost(valid: dict):
    """A valid body with one to three fields replaced by hostile values (or removed): the
    shape that gets past the first checks and reaches the database."""
    return st.dictionaries(st.sampled_from(sorted(valid)), JSON_VALUES | st.just(...),
                           min_size=1, max_size=3).map(
        lambda swap: {k: swap.get(k, v) for k, v in valid.items() if swap.get(k) is not ...})


BODIES = st.one_of(
    st.tuples(st.just("/activities"), st.lists(almost(VALID_ACTIVITY), min_size=1,
                                                max_size=3)),
    st.tuples(st.just("/sales/feedback"), almost(VALID_FEEDBACK)),
    st.tuples(st.sampled_from(["/activities", "/sales/feedback"]), JSON_VALUES))


def test_no_json_body_gets_a_500(api):
    client, _ = api
    statuses: dict[int, int] = {}

    @settings(max_examples=200, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=BODIES)
    def check(case):
        path, body = case
        r = client.post(path, content=json.dumps(body).encode())
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (path, body, r.text)

    check()
    assert sum(statuses.values()) >= 100
