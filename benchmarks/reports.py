"""How long each results report takes over a large store.

    python benchmarks/reports.py --leads 100000 --days 90 --backend sqlite
    python benchmarks/reports.py --leads 100000 --days 90 --backend postgresql

Builds a migrated store (a SQLite file under --dir, or a fresh PostgreSQL schema that is
dropped afterwards) with bulk inserts: leads created over --days, a weekly touch per lead
(variants a/b on one step), SendGrid-like engagement per touch (human and machine opens,
human and scanner clicks, unsubscribes, spam reports, hard bounces) and stage transitions
(MQL with its handoff, SAL, opportunity, won with amounts; rejects, SLA expiries and cold
leads recycled). Then times each report (SQL + Python, the `--json` payload) and prints one
table; `--json` prints one JSON object. The funnel report: benchmarks/funnel.py.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SOURCES = ("website", "webinar", "content_syndication", "partner", "trade_show", "referral")
CAMPAIGNS = ("inbound-saas", "webinar-followup", "events")
BATCH = 20_000


def build(engine, n_leads: int, days: int, seed: int = 7, engagement: bool = True
          ) -> dict[str, int]:
    """The store; `engagement=False` leaves out touches and activities (the funnel report
    reads only leads, transitions and handoffs)."""
    from nurture.store import tables as t

    r = random.Random(seed)
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=days)
    counts = {"leads": 0, "touches": 0, "activities": 0, "transitions": 0, "handoffs": 0}
    leads, touches, acts, trans, hands = [], [], [], [], []
    # parents first: leads before what refers to them
    pending = ((t.leads, leads, "leads"), (t.touches, touches, "touches"),
               (t.activities, acts, "activities"), (t.transitions, trans, "transitions"),
               (t.handoffs, hands, "handoffs"))
    tid = 0
    for lid in range(1, n_leads + 1):
        lead = _lead_row(r, lid, start, days)
        created = lead["created_at"]
        leads.append(lead)
        trans.append({"lead_id": lid, "from_stage": "new", "to_stage": "nurturing",
                      "reason": "enrolled", "actor": "bench", "at": created})
        if engagement:
            tid = _touch_rows(r, lid, created, end, tid, touches, acts)
        trans.extend(_stage_rows(r, lid, created, end, hands))
        if max(len(leads), len(touches), len(acts), len(trans)) >= BATCH:
            _flush(engine, pending, counts)
    _flush(engine, pending, counts)
    return counts


def _flush(engine, pending, counts: dict[str, int]) -> None:
    """Insert and clear every non-empty batch, in the order given."""
    for table, rows, key in pending:
        if rows:
            with engine.begin() as conn:
                conn.execute(insert(table), rows)
            counts[key] += len(rows)
            rows.clear()


def _lead_row(r: random.Random, lid: int, start: datetime, days: int) -> dict:
    """One nurturing lead created at a random time in the window."""
    created = start + timedelta(seconds=r.random() * days * 86400)
    src = r.choice(SOURCES)
    first = src if r.random() < 0.8 else r.choice(SOURCES)
    utm = f"utm-{r.randrange(10)}"
    return {"id": lid, "email": f"lead{lid}@bench.example", "attributes": {},
            "source": src, "first_source": first, "utm_campaign": utm,
            "first_utm_campaign": utm, "created_at": created, "updated_at": created,
            "lifecycle_stage": "nurturing", "stage_entered_at": created,
            "recycle_count": 0}


def _touch_rows(r: random.Random, lid: int, created: datetime, end: datetime, tid: int,
                touches: list[dict], acts: list[dict]) -> int:
    """A weekly touch from the day after `created` (at most 12), with engagement on the
    delivered ones; appends the rows and returns the last touch id used."""
    campaign = CAMPAIGNS[lid % len(CAMPAIGNS)]
    j = 0
    sent = created + timedelta(days=1)
    while sent < end and j < 12:
        tid += 1
        bounced = r.random() < 0.015
        touches.append({
            "id": tid, "lead_id": lid, "campaign": campaign, "track": "main",
            "step": f"step-{j}", "round": 0, "variant": ("a", "b")[tid % 2] if j == 2
            else None, "status": "sent", "planned_at": sent, "send_at": sent,
            "sent_at": sent, "updated_at": sent,
            "delivered_at": None if bounced else sent + timedelta(minutes=1),
            "delivery_status": "bounced" if bounced else "delivered"})
        if not bounced:
            acts.extend(_engagement_rows(r, lid, tid, sent))
        j += 1
        sent += timedelta(days=7)
    return tid


_ENGAGEMENT = (("email_machine_open", 0.25, 60), ("email_open", 0.35, 3600),
               ("email_click", 0.09, 3700), ("email_scanner_click", 0.03, 70),
               ("unsubscribe", 0.003, 3800), ("spam_report", 0.0005, 3900))


def _engagement_rows(r: random.Random, lid: int, tid: int, sent: datetime) -> list[dict]:
    """SendGrid-like activities for one delivered touch: each kind with its own odds."""
    rows = []
    for kind, p, dt in _ENGAGEMENT:
        if r.random() < p:
            at = sent + timedelta(seconds=dt)
            rows.append({"external_id": f"b-{tid}-{kind}", "lead_id": lid, "type": kind,
                         "occurred_at": at, "properties": {"touch_id": tid},
                         "source": "sendgrid", "received_at": at})
    return rows


def _stage_rows(r: random.Random, lid: int, created: datetime, end: datetime,
                handoffs: list[dict]) -> list[dict]:
    """For ~6 % of leads, the way through MQL (with its handoff), SAL, opportunity and won
    (with amounts), as far as it got before `end`; MQLs sales did not accept are rejected
    or expire and are recycled. ~3 % of the others go cold and are recycled."""
    if r.random() >= 0.06:
        cold = created + timedelta(days=30 + r.random() * 30)
        if r.random() < 0.03 and cold < end:
            return [{"lead_id": lid, "from_stage": "nurturing", "to_stage": "recycled",
                     "reason": "went cold: no engagement for 30 days", "actor": "bench",
                     "rule": "routing.recycle.when.any[0]", "at": cold}]
        return []
    at = created + timedelta(days=1 + r.random() * 40)
    if at >= end:
        return []
    stages = [("nurturing", "mql", None)]
    accepted = r.random() < 0.6
    if accepted:
        stages.append(("mql", "sal", None))
        if r.random() < 0.35:
            amount = round(r.lognormvariate(9.8, 0.6), -2)
            stages.append(("sal", "opportunity", amount))
            if r.random() < 0.4:
                stages.append(("opportunity", "customer", amount))
    rows = []
    for a, b, amount in stages:
        if at >= end:
            break
        rows.append({"lead_id": lid, "from_stage": a, "to_stage": b, "reason": "bench",
                     "actor": "bench", "at": at, "amount": amount})
        at += timedelta(days=r.random() * 10)
    handoffs.append(_handoff_row(r, rows, accepted, end))
    recycle = handoffs[-1]["status"] in ("rejected", "expired")
    if recycle and handoffs[-1]["resolved_at"] < end:
        why = handoffs[-1]["outcome_reason"]
        rule = ("routing.mql.sla_hours" if why == "sla_expired"
                else f"routing.sales_rejected.{why}")
        rows.append({"lead_id": lid, "from_stage": "mql", "to_stage": "recycled",
                     "reason": f"{why}: bench", "actor": "bench", "rule": rule,
                     "at": handoffs[-1]["resolved_at"]})
    return rows


def _handoff_row(r: random.Random, rows: list[dict], accepted: bool, end: datetime) -> dict:
    """The handoff of the MQL transition rows[0]: accepted when the lead went on to SAL
    (then at the SAL transition, sometimes after the 48 h SLA), else rejected with a code,
    expired at its SLA, or still pending."""
    at = rows[0]["at"]
    due = at + timedelta(hours=48)
    status, resolved, why = "pending", None, None
    if accepted and len(rows) > 1:
        status, resolved = "accepted", rows[1]["at"]
    elif not accepted and r.random() < 0.55:
        status, resolved = "rejected", at + timedelta(hours=r.random() * 72)
        why = r.choice(("not_ready", "bad_fit", "no_budget"))
    elif not accepted and due < end:
        status, resolved, why = "expired", due, "sla_expired"
    if resolved is not None and resolved >= end:  # not yet: the store is built as of `end`
        status, resolved, why = "pending", None, None
    return {"lead_id": rows[0]["lead_id"], "owner": "rep@bench.example", "status": status,
            "rule": "routing.mql.when.any[0]", "reason": "bench", "created_at": at,
            "sla_due_at": due, "resolved_at": resolved, "outcome_reason": why}


def time_reports(engine, days: int) -> list[dict]:
    from nurture.core.reporting import Window
    from nurture.wiring import results_report

    now = datetime.now(UTC)
    out = []
    for name, kw in (("steps", {}), ("ab", {}), ("sources", {}),
                     ("sources --by month", {"by": "month"}), ("attribution", {}),
                     ("deliverability", {}),
                     ("steps --from 30d --campaign", {"campaign": "inbound-saas",
                                                       "start": 30})):
        report = name.split()[0]
        w = Window(now - timedelta(days=kw.get("start", days + 1)), now + timedelta(1),
                   kw.get("campaign"))
        t0 = time.perf_counter()
        rep = results_report(engine, report, w, by=kw.get("by", "source"))
        secs = time.perf_counter() - t0
        rows = len(rep.get("rows") or rep.get("tests") or rep.get("by_step") or [])
        out.append({"report": name, "seconds": round(secs, 2), "rows": rows})
    return out


def main() -> int:
    from nurture.store.db import make_engine, upgrade

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--dir", default=None, help="where the SQLite file goes (default tmp)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    schema = None
    if args.backend == "sqlite":
        d = Path(args.dir or tempfile.mkdtemp(prefix="nurture-bench-reports-"))
        url = f"sqlite:///{d / 'bench.db'}"
        (d / "bench.db").unlink(missing_ok=True)
    else:
        import psycopg

        schema = f"bench_reports_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as c:
            c.execute(f'CREATE SCHEMA "{schema}"')
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    try:
        upgrade(engine)
        t0 = time.perf_counter()
        counts = build(engine, args.leads, args.days)
        built = time.perf_counter() - t0
        if args.backend == "postgresql":
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        else:
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        timings = time_reports(engine, args.days)
    finally:
        engine.dispose()
        if schema:
            import psycopg

            with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as c:
                c.execute(f'DROP SCHEMA "{schema}" CASCADE')
    result = {"backend": args.backend, "rows": counts, "build_seconds": round(built, 1),
              "reports": timings}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.backend}: {counts} built in {built:.0f} s")
        for t in timings:
            print(f"  {t['report']:<32} {t['seconds']:>7.2f} s  ({t['rows']} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
