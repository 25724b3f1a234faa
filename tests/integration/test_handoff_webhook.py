"""MQL handoffs reach a CRM webhook over real HTTP: signed, retried with backoff, delivered
exactly once, never lost (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from nurture.adapters.crm_webhook import deliver_pending, sign
from nurture.services.cycle import plan_chunk
from nurture.store import tables as t
from nurture.store.sales import SalesStore

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
SECRET = "crm-secret-0123456789"
RUN = 1  # the claiming run's id (claims are compare-and-set on it)


class Receiver:
    """A CRM stand-in: fails the first `fail` requests with 503, then records payloads."""

    def __init__(self, fail: int) -> None:
        self.fail, self.got, self.requests = fail, [], 0
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests += 1
                ok = self.headers["X-Nurture-Signature"] == sign(
                    SECRET, self.headers["X-Nurture-Timestamp"], raw)
                status = 401 if not ok else (503 if outer.requests <= outer.fail else 200)
                if status == 200:
                    outer.got.append(json.loads(raw))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/crm/leads"

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver(fail=2)
    yield r
    r.close()


def test_handoff_reaches_the_crm_once_despite_failures(store, rules, receiver):
    store.upsert_leads([{"email": "hot@example.com", "first_name": "Hot", "source": "website",
                         "company": "Initech", "timezone": "UTC", "created_at": T0}])
    store.insert_activities([{"id": "d", "email": "hot@example.com", "type": "demo_request",
                              "occurred_at": T0, "properties": {}}])
    plan_chunk(store, rules, 1, 10, T0 + timedelta(hours=1), "UTC")
    sales = SalesStore(store.engine)

    now = T0 + timedelta(hours=1)
    first = deliver_pending(sales, receiver.url, SECRET, now, claimer=RUN)
    assert first == {"due": 1, "delivered": 0, "retrying": 1}
    with store.engine.connect() as conn:
        h = conn.execute(select(t.handoffs)).one()
    assert (h.crm_status, h.crm_attempts) == ("pending", 1) and "503" in h.crm_error
    assert now + timedelta(seconds=30) <= h.crm_next_attempt_at <= now + timedelta(minutes=1)
    # not due again before its backoff
    assert deliver_pending(sales, receiver.url, SECRET, now + timedelta(seconds=10),
                           claimer=RUN)["due"] == 0
    later = now + timedelta(minutes=1)
    assert deliver_pending(sales, receiver.url, SECRET, later, claimer=RUN)["retrying"] == 1
    final = deliver_pending(sales, receiver.url, SECRET, later + timedelta(minutes=3),
                            claimer=RUN)
    assert final == {"due": 1, "delivered": 1, "retrying": 0}
    assert deliver_pending(sales, receiver.url, SECRET, later + timedelta(hours=1),
                           claimer=RUN)["due"] == 0
    [got] = receiver.got
    assert (got["event"], got["email"], got["company"], got["rule"]) == (
        "nurture.lead.mql", "hot@example.com", "Initech", "routing.mql.when.any[1]")
    assert got["owner"] in ("ana@acme.example", "ben@acme.example")
    assert receiver.requests == 3
    with store.engine.connect() as conn:
        h = conn.execute(select(t.handoffs)).one()
    assert (h.crm_status, h.crm_attempts, h.crm_error) == ("delivered", 3, None)


def test_a_wrong_secret_is_refused_and_stays_pending(store, rules, receiver):
    receiver.fail = 0
    store.upsert_leads([{"email": "x@example.com", "source": "website", "timezone": "UTC",
                         "created_at": T0}])
    store.insert_activities([{"id": "x", "email": "x@example.com", "type": "demo_request",
                              "occurred_at": T0, "properties": {}}])
    plan_chunk(store, rules, 1, 10, T0 + timedelta(hours=1), "UTC")
    out = deliver_pending(SalesStore(store.engine), receiver.url, "another-secret-000000",
                          T0 + timedelta(hours=1), claimer=RUN)
    assert out["retrying"] == 1 and receiver.got == []


def test_two_deliverers_at_once_post_each_handoff_once(store, rules, receiver):
    """#8: two `nurture handoffs deliver` at once used to POST every handoff twice."""
    receiver.fail = 0
    store.upsert_leads([{"email": f"h{i}@example.com", "source": "website", "timezone": "UTC",
                         "created_at": T0} for i in range(12)])
    store.insert_activities([{"id": f"d{i}", "email": f"h{i}@example.com",
                              "type": "demo_request", "occurred_at": T0, "properties": {}}
                             for i in range(12)])
    plan_chunk(store, rules, 1, 100, T0 + timedelta(hours=1), "UTC")
    runs = [store.ledger.runs.register("handoff-delivery") for _ in range(2)]
    outs: list = []

    def go(run):
        outs.append(deliver_pending(SalesStore(store.engine), receiver.url, SECRET,
                                    T0 + timedelta(hours=1), claimer=run))

    threads = [threading.Thread(target=go, args=(r,)) for r in runs]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    ids = sorted(g["handoff_id"] for g in receiver.got)
    assert len(ids) == 12 and len(set(ids)) == 12
    assert sum(o["delivered"] for o in outs) == 12
