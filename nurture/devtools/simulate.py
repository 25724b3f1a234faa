"""`nurture simulate`: what a campaign config would do over the next N days, before it ships.

The real engine (`nurture.services.cycle.run_cycle`, with a `MemoryTransport`) runs day by day on a
*scratch* SQLite copy — built from synthetic leads or copied read-only from the store — so
the real store is never written. After each day, simulated leads react to what they got:
opens, clicks, pricing-page views and demo requests, drawn from per-step rates (from the
store's own provider events when it has them, else the stated defaults), seeded so the same
inputs give the same run. With a baseline config, both configs run on the same leads and the
same random draws, and the report shows the differences side by side.

It lives in devtools, beside the demo, because like the demo it composes a whole engine (store,
memory transport, the cycle, the synthetic data generator); its page is
`nurture.views.simulation_html`.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

from nurture.adapters.delivery.memory import MemoryTransport
from nurture.core.rendering import Renderer
from nurture.core.rules import Rules
from nurture.devtools.demo_data import (
    generate_activities,
    generate_leads,
    write_activities_jsonl,
    write_leads_csv,
)
from nurture.services.cycle import SendContext, run_cycle
from nurture.services.ingest import import_activities_jsonl, import_leads_csv
from nurture.services.validation import load_valid_config
from nurture.store import tables as t
from nurture.store.db import make_engine, upgrade
from nurture.store.store import LeadStore

# stated defaults, per buying stage of the track: open, click, pricing view, demo request
DEFAULT_RATES = {
    "research": {"email_open": 0.30, "email_click": 0.05, "pricing_page_view": 0.01,
                 "demo_request": 0.002},
    "evaluation": {"email_open": 0.40, "email_click": 0.10, "pricing_page_view": 0.06,
                   "demo_request": 0.02},
    "recycled": {"email_open": 0.20, "email_click": 0.03, "pricing_page_view": 0.01,
                 "demo_request": 0.003},
}


@dataclass
class DayReport:
    day: str
    sends: Counter = field(default_factory=Counter)      # "campaign/track/step" -> n
    skips: Counter = field(default_factory=Counter)      # reason -> n
    mqls: int = 0
    sla_expired: int = 0
    recycled: int = 0
    exhausted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day, "sent": sum(self.sends.values()), "sends": dict(self.sends),
                "skips": dict(self.skips), "mqls": self.mqls, "sla_expired": self.sla_expired,
                "recycled": self.recycled, "exhausted": self.exhausted}


def history_rates(engine) -> dict[tuple[str, str], dict[str, float]]:
    """(campaign, step) -> open/click rate from the store's own sent touches and provider
    events; steps with fewer than 50 sends are left to the defaults."""
    T, PE = t.touches, t.provider_events
    out: dict[tuple[str, str], dict[str, float]] = {}
    with engine.connect() as conn:
        sent = {(r.campaign, r.step): r.n for r in conn.execute(
            select(T.c.campaign, T.c.step, func.count().label("n"))
            .where(T.c.status == "sent").group_by(T.c.campaign, T.c.step))}
        for kind, name in (("open", "email_open"), ("click", "email_click")):
            for r in conn.execute(
                    select(T.c.campaign, T.c.step, func.count(func.distinct(PE.c.touch_id))
                           .label("n")).join(PE, PE.c.touch_id == T.c.id)
                    .where(PE.c.event == kind).group_by(T.c.campaign, T.c.step)):
                if sent.get((r.campaign, r.step), 0) >= 50:
                    out.setdefault((r.campaign, r.step), {})[name] = r.n / sent[
                        (r.campaign, r.step)]
    return out


def _scratch_from_synthetic(path: Path, n: int, seed: int, start: datetime):
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    store = LeadStore(engine)
    rows = list(generate_leads(n, seed=seed, start=start))
    write_leads_csv(path.with_suffix(".leads.csv"), rows)
    write_activities_jsonl(path.with_suffix(".acts.jsonl"),
                           generate_activities(rows, start - timedelta(days=1), 1, seed=seed))
    import_leads_csv(store, path.with_suffix(".leads.csv"))
    import_activities_jsonl(store, path.with_suffix(".acts.jsonl"))
    engine.dispose()


def _scratch_from_db(path: Path, source_url: str) -> None:
    """Copy every table row by row (read-only on the source, either backend)."""
    src = make_engine(source_url)
    dst = make_engine(f"sqlite:///{path}")
    upgrade(dst)
    with src.connect() as s, dst.begin() as d:
        for table in t.metadata.sorted_tables:
            d.execute(table.delete())
        for table in t.metadata.sorted_tables:
            rows = [dict(r._mapping) for r in s.execute(select(table))]
            for i in range(0, len(rows), 2000):
                d.execute(insert(table), rows[i:i + 2000])
    src.dispose()
    dst.dispose()


def run_one(scratch: Path, campaigns_dir: Path, templates_dir: Path, days: int,
            start: datetime, seed: int, rates: dict, default_tz: str = "UTC",
            chunk_size: int = 5000) -> dict[str, Any]:
    """Run the engine `days` times on the scratch database; returns per-day reports."""
    config = load_valid_config(campaigns_dir, templates_dir)
    rules = Rules.compile(config)
    engine = make_engine(f"sqlite:///{scratch}")
    store = LeadStore(engine)
    transport = MemoryTransport()
    ctx = SendContext(rules=rules, renderer=Renderer(templates_dir), transport=transport,
                      secret="simulation-secret-0123456789", public_url="https://sim.invalid")
    track_of = {(c.name, s.id): (t.name, t.stage) for c in config.campaigns
                for t in c.tracks for s in t.steps}
    daily = [_run_day(store, engine, ctx, transport, start + timedelta(days=day), track_of,
                      seed, rates, default_tz, chunk_size) for day in range(days)]
    funnel = store.stage_counts()
    engine.dispose()
    return {"days": [d.as_dict() for d in daily], "funnel": funnel}


def _run_day(store: LeadStore, engine, ctx: SendContext, transport: MemoryTransport,
             as_of: datetime, track_of: dict, seed: int, rates: dict, default_tz: str,
             chunk_size: int) -> DayReport:
    """One cycle, then the simulated leads' reactions to what it sent that day."""
    seen = len(transport.sent)
    summary = run_cycle(store, ctx, as_of, default_tz, chunk_size)
    rep = DayReport(as_of.date().isoformat())
    rep.skips.update(summary["skipped"])
    rep.exhausted = sum(v for k, v in summary["skipped"].items() if "exhaust" in k)
    rep.mqls, rep.recycled = summary["mqls"], summary["recycled"]
    acts = []
    for m in transport.sent[seen:]:
        track, stage = track_of.get((m.campaign, m.step), ("?", "research"))
        rep.sends[f"{m.campaign}/{track}/{m.step}"] += 1
        acts.extend(_reactions(m, stage, seed, rates))
    if acts:
        store.insert_activities(acts, source="simulation")
    rep.sla_expired = _count_sla(engine, as_of)
    return rep


def _reactions(m: Any, stage: str, seed: int, rates: dict) -> list[dict[str, Any]]:
    """The activities one lead does after one message, drawn from the step's rates."""
    r = dict(DEFAULT_RATES.get(stage, DEFAULT_RATES["research"]))
    r.update(rates.get((m.campaign, m.step), {}))
    # one draw per message, whatever the config: both runs of a baseline comparison
    # see the same lead react the same way to the same step
    draw = random.Random(f"{seed}:{m.to_email}:{m.campaign}:{m.step}").random
    at = m.send_at + timedelta(hours=2)
    return [{"id": f"sim-{m.touch_id}-{kind}", "email": m.to_email, "type": kind,
             "occurred_at": at, "properties": {}}
            for kind in ("email_open", "email_click", "pricing_page_view", "demo_request")
            if draw() < r[kind]]


def _count_sla(engine, as_of: datetime) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(t.handoffs).where(
            t.handoffs.c.status == "expired", t.handoffs.c.resolved_at > as_of - timedelta(
                days=1), t.handoffs.c.resolved_at <= as_of)).scalar_one()


def simulate(campaigns_dir: Path, templates_dir: Path, days: int, *,
             synthetic: int | None = None, from_db: str | None = None,
             baseline_dir: Path | None = None, seed: int = 7,
             start: datetime | None = None) -> dict[str, Any]:
    """The whole what-if: build the scratch store once, copy it per config, run, compare."""
    t0 = time.perf_counter()
    start = start or datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)
    work = Path(tempfile.mkdtemp(prefix="nurture-simulate-"))
    try:
        seedfile = work / "seed.db"
        rates: dict = {}
        if from_db:
            _scratch_from_db(seedfile, from_db)
            eng = make_engine(from_db)
            rates = history_rates(eng)
            eng.dispose()
        else:
            _scratch_from_synthetic(seedfile, synthetic or 1000, seed, start)
        runs = {}
        for label, cdir in (("proposed", campaigns_dir), ("baseline", baseline_dir)):
            if cdir is None:
                continue
            scratch = work / f"{label}.db"
            shutil.copyfile(seedfile, scratch)
            runs[label] = run_one(scratch, Path(cdir), templates_dir, days, start, seed, rates)
        return {"days": days, "seed": seed, "start": start.isoformat(),
                "leads": synthetic if not from_db else "from-db",
                "rates": "history" if rates else "defaults", "default_rates": DEFAULT_RATES,
                "runs": runs, "totals": {k: totals(v) for k, v in runs.items()},
                "seconds": round(time.perf_counter() - t0, 1)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def totals(run: dict[str, Any]) -> dict[str, Any]:
    sends: Counter = Counter()
    skips: Counter = Counter()
    agg: Counter = Counter()
    for d in run["days"]:
        sends.update(d["sends"])
        skips.update(d["skips"])
        for k in ("sent", "mqls", "sla_expired", "recycled"):
            agg[k] += d[k]
    return dict(agg) | {"sends_by_step": dict(sorted(sends.items())),
                        "skips": dict(sorted(skips.items())), "funnel": run["funnel"]}
