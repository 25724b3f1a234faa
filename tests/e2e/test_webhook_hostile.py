"""No input gives a 500: generated hostile Event Webhook batches and unsubscribe requests
against the uvicorn-served app on SQLite and PostgreSQL; the valid events of a mixed batch
are applied; forged signatures are 403."""

from __future__ import annotations

import json
import math
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from nurture.store import tables as t

NOW = datetime.now(UTC)
TS = int(NOW.timestamp()) - 600


@pytest.fixture
def hostile_world(db_url, tmp_path, serve, campaigns_dir, templates_dir):
    from nurture.entrypoints.http.app import create_app
    from nurture.settings import Settings
    from nurture.store.db import make_engine, upgrade
    from nurture.wiring import App

    engine = make_engine(db_url)
    upgrade(engine)
    engine.dispose()
    app = App(Settings(database_url=db_url, campaigns_dir=campaigns_dir,
                       templates_dir=templates_dir, webhook_allow_unsigned=True,
                       secret_key="hostile-secret-0123456789", transport="outbox",
                       outbox_dir=tmp_path / "outbox"))
    app.store.upsert_leads([{"email": "ana@example.com", "first_name": "Ana",
                             "source": "website", "timezone": "UTC",
                             "created_at": NOW - timedelta(days=2)}])
    server = serve(create_app(app))
    yield app, server
    app.engine.dispose()


# -- generators ---------------------------------------------------------------------------
def nested(depth: int):
    return st.recursive(st.none(), lambda inner: st.lists(inner, max_size=1)
                        | st.dictionaries(st.just("k"), inner, max_size=1), max_leaves=depth)


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**40, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e20, -5, 0, 2**63]),
    st.text(max_size=40), st.sampled_from(["abc", "", "\x00", "\ud800", "9" * 30, "-1",
                                           "1e20", "NaN"]))
values = st.one_of(scalars, st.lists(scalars, max_size=4),
                   st.dictionaries(st.text(max_size=5), scalars, max_size=3), nested(30))
KEYS = ["event", "email", "timestamp", "sg_event_id", "sg_message_id", "touch_id", "url",
        "reason", "type", "useragent", "sg_machine_open", "response", "campaign", "step",
        "asm_group_id"]
hostile_event = st.one_of(
    values,
    st.fixed_dictionaries({}, optional={k: values for k in KEYS}),
    st.builds(lambda k, v: {"event": "open", "email": "ana@example.com", "timestamp": TS,
                            "sg_event_id": uuid.uuid4().hex} | {k: v},
              st.sampled_from(KEYS), values))


def valid_open(n: int) -> dict:
    return {"event": "open", "email": "ana@example.com", "timestamp": TS - n,
            "sg_event_id": f"ok-{uuid.uuid4().hex}", "sg_machine_open": False}


def applied(app, event_ids: list[str]) -> dict[str, str]:
    with app.engine.connect() as conn:
        return dict(conn.execute(select(t.provider_events.c.event_id,
                                        t.provider_events.c.outcome)
                                 .where(t.provider_events.c.event_id.in_(event_ids))).all())


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(junk=st.lists(hostile_event, max_size=12), n_valid=st.integers(0, 3),
       corrupt=st.sampled_from([None, None, None, "utf8", "deep", "nan-literal"]))
def test_hostile_batches_never_give_a_500(hostile_world, junk, n_valid, corrupt):
    app, server = hostile_world
    good = [valid_open(i) for i in range(n_valid)]
    batch = good + junk
    body = json.dumps(batch, allow_nan=True).encode("utf-8", "surrogatepass")
    if corrupt == "utf8":
        body = body[:len(body) // 2] + b"\xff\xc3(" + body[len(body) // 2:]
    elif corrupt == "deep":
        body = b"[" + b"[" * 100_000 + b"]" * 100_000 + b"," + body[1:] if len(body) > 2 \
            else b"[" * 100_000
    elif corrupt == "nan-literal":
        body = body.replace(b"]", b", {\"event\": \"open\", \"timestamp\": NaN}]", 1) \
            if body.endswith(b"]") else body
    r = httpx.post(f"{server.url}/webhooks/sendgrid", content=body, timeout=60,
                   headers={"Content-Type": "application/json"})
    assert r.status_code < 500, r.text
    ids = [e["sg_event_id"] for e in good]
    valid_json = corrupt not in ("utf8", "deep") and b"\xed\xa0" not in body
    if r.status_code == 200 and ids:
        assert set(applied(app, ids).values()) == {"applied"}
    elif valid_json:
        # the lone-surrogate text above is valid JSON for Python but not UTF-8 on the wire
        assert r.status_code in (200, 400), r.text


def test_a_mixed_batch_applies_its_valid_events(hostile_world):
    app, server = hostile_world
    good = [valid_open(i) for i in range(3)]
    bad = [{"event": "open", "email": "ana@example.com", "timestamp": ts,
            "sg_event_id": f"bad-{i}"} for i, ts in enumerate([1e20, "abc", -5])]
    body = json.dumps(good[:1] + bad + good[1:] + [[], 7, {"email": {"x": 1}}]).encode()
    body = body.replace(b"1e+20", b"NaN")  # a NaN literal, as some JSON writers emit
    r = httpx.post(f"{server.url}/webhooks/sendgrid", content=body)
    assert r.status_code == 200, r.text
    assert r.json()["errors"] == 6 and r.json()["activities"] == 3
    got = applied(app, [e["sg_event_id"] for e in good] + ["bad-0", "bad-1", "bad-2"])
    assert got == {**{e["sg_event_id"]: "applied" for e in good},
                   "bad-0": "error", "bad-1": "error", "bad-2": "error"}


def test_a_huge_array_within_the_size_limit(hostile_world):
    from nurture.adapters.sendgrid_events import MAX_EVENTS

    app, server = hostile_world
    r = httpx.post(f"{server.url}/webhooks/sendgrid", content=b"[" + b"0," * MAX_EVENTS
                   + b"0]", timeout=60)
    assert r.status_code == 413 and "events" in r.json()["error"]
    started = time.perf_counter()
    n = 5000
    r = httpx.post(f"{server.url}/webhooks/sendgrid", content=json.dumps(
        [{"event": "open", "email": "ana@example.com", "timestamp": 1e20,
          "sg_event_id": f"x{i}"} for i in range(n)]).encode(), timeout=120)
    took = time.perf_counter() - started
    assert r.status_code == 200 and r.json()["errors"] == n, r.text
    print(f"\n{n} bad events stored as errors in {took:.2f} s")
    with app.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.provider_events)
                            ).scalar_one() == n


@pytest.fixture
def signed_world(tmp_path, fake_sendgrid, serve, campaigns_dir, templates_dir):
    from nurture.entrypoints.http.app import create_app
    from nurture.settings import Settings
    from nurture.store.db import upgrade
    from nurture.wiring import App

    app = App(Settings(database_url=f"sqlite:///{tmp_path / 's.db'}",
                       campaigns_dir=campaigns_dir, templates_dir=templates_dir,
                       sendgrid_webhook_public_key=fake_sendgrid.public_key,
                       secret_key="signed-secret-0123456789"))
    upgrade(app.engine)
    server = serve(create_app(app))
    yield app, fake_sendgrid, server
    app.engine.dispose()


# what a header can carry on the wire (no surrounding blanks)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=120
                      ).map(str.strip)


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sig=header_text, ts=st.one_of(header_text, st.sampled_from(
    ["1e20", "NaN", "-5", "9" * 5000, "", "1_0", str(int(time.time())), "0x10"])))
def test_signed_requests_with_garbage_headers_are_403(signed_world, sig, ts):
    app, fake, server = signed_world
    body = json.dumps([valid_open(0)]).encode()
    r = httpx.post(f"{server.url}/webhooks/sendgrid", content=body, headers={
        "X-Twilio-Email-Event-Webhook-Signature": sig,
        "X-Twilio-Email-Event-Webhook-Timestamp": ts})
    assert r.status_code == 403, r.text


def test_signed_events_with_absurd_timestamps_are_kept_not_a_500(signed_world):
    app, fake, server = signed_world
    events = [valid_open(0) | {"timestamp": ts, "sg_event_id": f"e{i}"}
              for i, ts in enumerate([1e20, math.inf, -5, "abc", TS])]
    r = fake.post_events(f"{server.url}/webhooks/sendgrid", events)
    assert r.status_code == 200, r.text
    assert r.json()["errors"] == 4 and r.json()["unmatched"] == 1


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(token=st.text(min_size=1, max_size=300), body=st.binary(max_size=300))
def test_unsubscribe_never_gives_a_500(hostile_world, token, body):
    app, server = hostile_world
    url = f"{server.url}/unsubscribe/{quote(token, safe='')}"
    assert httpx.post(url, content=body).status_code < 500
    assert httpx.get(url).status_code < 500
