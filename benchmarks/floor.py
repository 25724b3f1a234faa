"""The floor: the least code that does one daily cycle's job on the same data.

    python benchmarks/floor.py --db sqlite:///bench.db --as-of 2026-03-02T09:00:00+00:00 \
        --transport memory --json

Against a database already built by `benchmarks/daily_cycle.py` (so both run on the same
leads), with no orchestration, no leases and no compare-and-set, in windows of `WINDOW` lead
ids (so a million leads fit in flat memory, as the engine's chunks do):

1. read the due leads — per window: the leads (with campaign state, suppression and
   open handoff joined), their activities inside the scoring horizon and their touch history;
2. score, segment, route and pick the step by calling the pure `nurture.core.evaluation.
   evaluate` (the rules ARE the job, so the floor shares them with the engine);
3. render the same templates with the same safety (sandboxed, StrictUndefined, autoescaped
   Jinja — `OwnRenderer` below; `--render engine` uses `nurture.core.rendering.Renderer`
   instead, which picks up any work on the engine's renderer). The text part is prepared
   once per template as the engine does (`nurture.core.text_template`: the text template
   derived from the HTML one, checked once against `html_to_text`), a second small render
   per message; `html_to_text` per message only where a template cannot be derived;
4. build the message (`nurture.core.messages.build_message`, then `to_eml` for the outbox,
   written create-once like the outbox does; the SendGrid v3 JSON dict for memory);
5. record: one bulk INSERT per window of a touch row per message into the scratch table
   `floor_touches` (dropped and created by this script): the engine's tables stay untouched.

Prints seconds, touches, µs per touch and peak RSS (stderr; `--json`: one JSON line).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from nurture.core.domain import (  # noqa: E402
    CYCLE_STAGES,
    IN_DOUBT,
    LEAD_FIELDS,
    SENDING,
    ActivityFact,
    LeadSnapshot,
    TouchFact,
)
from nurture.core.evaluation import evaluate  # noqa: E402
from nurture.core.html_text import tidy  # noqa: E402
from nurture.core.messages import build_message, to_eml  # noqa: E402
from nurture.core.rendering import RenderedEmail, html_to_text, one_line, sample_lead  # noqa: E402
from nurture.core.rules import Rules  # noqa: E402
from nurture.core.text_template import (  # noqa: E402
    MarkupValue,
    TextEnvironment,
    adversarial_contexts,
    mismatch,
)
from nurture.core.unsubscribe import make_token, unsubscribe_url  # noqa: E402

COLS = [c for c in LEAD_FIELDS if c != "created_at"]
STAGES = ", ".join(f"'{s}'" for s in CYCLE_STAGES)
DUE = (f"l.id BETWEEN :lo AND :hi AND l.lifecycle_stage IN ({STAGES}) "
       "AND (l.next_check_at IS NULL OR l.next_check_at <= :as_of)")
WINDOW = 20_000  # lead ids read, decided and emitted at a time: memory stays flat at 1M
LEADS_SQL = f"""
SELECT l.id, l.email, l.attributes, l.created_at, {", ".join("l." + c for c in COLS)},
       l.timezone, l.lifecycle_stage, l.stage_entered_at, l.engagement_since, l.recycle_count,
       l.recycle_until, l.version, cs.campaign, cs.track, cs.track_rounds,
       s.email IS NOT NULL, h.id, h.sla_due_at
FROM leads l
LEFT JOIN campaign_states cs ON cs.lead_id = l.id
LEFT JOIN suppressions s ON s.email = l.email
LEFT JOIN handoffs h ON h.lead_id = l.id AND h.status = 'pending'
WHERE {DUE} ORDER BY l.id"""
ACTS_SQL = f"""
SELECT a.lead_id, a.type, a.occurred_at FROM activities a JOIN leads l ON l.id = a.lead_id
WHERE {DUE} AND a.occurred_at >= :since AND a.occurred_at <= :as_of
ORDER BY a.lead_id, a.occurred_at"""
TOUCH_SQL = f"""
SELECT t.lead_id, t.campaign, t.step, t.round, t.status,
       COALESCE(t.sent_at, CASE WHEN t.status IN ('{IN_DOUBT}', '{SENDING}') THEN t.send_at END)
FROM touches t JOIN leads l ON l.id = t.lead_id WHERE {DUE}"""
SCRATCH = """CREATE TABLE floor_touches (id INTEGER PRIMARY KEY, lead_id INTEGER NOT NULL,
  campaign VARCHAR(100) NOT NULL, track VARCHAR(100) NOT NULL, step VARCHAR(100) NOT NULL,
  round INTEGER NOT NULL, variant VARCHAR(50), status VARCHAR(20) NOT NULL,
  send_at TIMESTAMP, sent_at TIMESTAMP, subject TEXT, transport VARCHAR(20),
  provider_message_id VARCHAR(200))"""
INSERT = text("INSERT INTO floor_touches VALUES (:id, :lead_id, :campaign, :track, :step, "
              ":round, :variant, 'sent', :send_at, :sent_at, :subject, :transport, :mid)")


def when(v: Any) -> datetime | None:
    """A raw driver timestamp as aware UTC (SQLite hands back naive UTC text)."""
    if v is None or isinstance(v, datetime):
        return v if v is None or v.tzinfo else v.replace(tzinfo=UTC)
    return datetime.fromisoformat(v).replace(tzinfo=UTC)


def as_json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


def read(conn, as_of: datetime, rules: Rules, tz: str, lo: int, hi: int
         ) -> list[LeadSnapshot]:
    """Step 1: the due leads with ids in [lo, hi] with their activities and touches."""
    p: dict[str, Any] = {"as_of": as_of, "since": as_of - timedelta(days=rules.horizon_days)}
    if conn.dialect.name == "sqlite":  # the store keeps naive UTC text on SQLite
        p = {k: v.astimezone(UTC).replace(tzinfo=None).isoformat(" ") for k, v in p.items()}
    p.update(lo=lo, hi=hi)
    points = {k: v[0] for k, v in rules.scores.points.items()}
    acts: dict[int, list[ActivityFact]] = defaultdict(list)
    for lid, typ, at in conn.execute(text(ACTS_SQL), p):
        acts[lid].append(ActivityFact(typ, when(at), points.get(typ, 0.0)))
    tch: dict[int, list[TouchFact]] = defaultdict(list)
    for lid, camp, step, rnd, status, at in conn.execute(text(TOUCH_SQL), p):
        tch[lid].append(TouchFact(camp, step, rnd, status, when(at)))
    out = []
    n = len(COLS)
    for r in conn.execute(text(LEADS_SQL), p):
        fields = dict(as_json(r[2]) or {})
        fields.update(zip(COLS, r[4:4 + n], strict=True))
        fields["created_at"] = when(r[3]).isoformat() if r[3] else None
        (zone, stage, entered, since, rc, until, version, camp, track, rounds, supp, hid,
         due) = r[4 + n:]
        out.append(LeadSnapshot(
            id=r[0], email=r[1], fields=fields, timezone=zone or tz, lifecycle_stage=stage,
            stage_entered_at=when(entered), engagement_since=when(since), recycle_count=rc,
            recycle_until=when(until), suppressed=bool(supp), activities=acts.get(r[0], []),
            touches=tch.get(r[0], []), campaign=camp, track=track,
            track_rounds=dict(as_json(rounds) or {}), handoff_id=hid, sla_due_at=when(due),
            version=version))
    return out


class OwnRenderer:
    """The least rendering code with the engine's safety: sandboxed, StrictUndefined,
    autoescaped Jinja over the same templates; per-step context parts built once, and per
    template the text part derived once (as the engine's renderer does)."""

    def __init__(self, templates: Path) -> None:
        from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape

        from nurture.core.sandbox import Sandbox
        self.env = Sandbox(
            loader=FileSystemLoader(str(templates)), undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html", "htm", "j2"),
                                         default_for_string=False),
            trim_blocks=True, lstrip_blocks=True)
        self.text_env = Sandbox(undefined=StrictUndefined)
        self.derived_env = TextEnvironment(self.env)
        self.steps: dict[tuple, tuple] = {}
        self.texts: dict[str, Any] = {}

    def text_template(self, name: str, html_t, ctx: dict[str, Any]):
        """The derived text template for `name` (None: `html_to_text` per message), checked
        once against `html_to_text` on this context and adversarial leads."""
        if name not in self.texts:
            try:
                derived = self.derived_env.get_template(name)
            except Exception:  # Underivable
                derived = None
            if derived is not None and mismatch(
                    html_t, derived, [ctx, *adversarial_contexts(ctx, sample_lead())],
                    html_to_text, tidy):
                derived = None
            self.texts[name] = derived
        return self.texts[name]

    def render(self, campaign, track, step, variant, lead, url) -> RenderedEmail:
        key = (campaign.name, step.id, variant)
        got = self.steps.get(key)
        if got is None:
            subject, template = step.content(variant)
            base = {"campaign": SimpleNamespace(name=campaign.name,
                                                description=campaign.description),
                    "track": SimpleNamespace(name=track.name, stage=track.stage),
                    "step": SimpleNamespace(id=step.id, variant=variant),
                    "sender": SimpleNamespace(**campaign.sender.model_dump())}
            got = self.steps[key] = (self.text_env.from_string(subject),
                                     self.env.get_template(template), template, base)
        subject_t, html_t, name, base = got
        ctx = {**base, "lead": lead, "unsubscribe_url": url}
        html = html_t.render(ctx)
        text_t = self.text_template(name, html_t, ctx)
        try:
            text = tidy(text_t.render(ctx)) if text_t is not None else html_to_text(html)
        except MarkupValue:
            text = html_to_text(html)
        return RenderedEmail(one_line(subject_t.render(ctx)), html, text)


def sendgrid_json(m) -> dict:
    """The v3 Mail Send body `nurture.adapters.delivery.sendgrid.build_mail` produces."""
    to = {"email": m.to_email} | ({"name": m.to_name} if m.to_name else {})
    body = {"from": {"email": m.sender.from_email, "name": m.sender.from_name},
            "subject": m.subject,
            "personalizations": [{"to": [to], "custom_args": m.custom_args, "headers": {
                "List-Unsubscribe": f"<{m.unsubscribe_url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}}],
            "content": [{"type": "text/plain", "value": m.text},
                        {"type": "text/html", "value": m.html}],
            "categories": m.categories}
    if m.sender.reply_to:
        body["reply_to"] = {"email": m.sender.reply_to}
    return body


def write_eml(outbox: Path, m) -> None:
    """Create-once like the outbox: a temp file linked into place, plus an index line."""
    path = outbox / f"{m.touch_id // 10000:04d}" / f"touch-{m.touch_id}.eml"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    tmp.write_bytes(to_eml(m))
    os.link(tmp, path)
    tmp.unlink()


def window(args: argparse.Namespace, engine, rules: Rules, renderer: Any, as_of: datetime,
           lo: int, hi: int, first_id: int, sec: dict[str, float]) -> tuple[int, int]:
    """Steps 1-5 for the leads with ids in [lo, hi]; returns (due leads, touches)."""
    t1 = time.perf_counter()
    with engine.connect() as conn:
        leads = read(conn, as_of, rules, args.timezone, lo, hi)
    t2 = time.perf_counter()
    decisions = [evaluate(lead, rules, as_of) for lead in leads]
    t3 = time.perf_counter()
    by_id = {lead.id: lead for lead in leads}
    rows: list[dict[str, Any]] = []
    for d in decisions:
        p = d.touch
        if p is None:
            continue
        lead = by_id[d.lead_id]
        camp = rules.campaign(p.campaign).campaign
        track, step = camp.step(p.step)
        tid = first_id + len(rows) + 1
        url = unsubscribe_url(args.public_url, make_token(args.secret, lead.email, p.campaign,
                                                          tid))
        r = renderer.render(camp, track, step, p.variant, lead.fields, url)
        m = build_message(tid, lead.fields, camp.sender, r, url, max(p.send_at, as_of),
                          p.campaign, p.step, p.variant)
        if args.transport == "outbox":
            write_eml(args.outbox, m)
        else:
            sendgrid_json(m)  # built, then let go (as the engine's memory transport does)
        rows.append({"id": tid, "lead_id": d.lead_id, "campaign": p.campaign,
                     "track": p.track, "step": p.step, "round": p.round,
                     "variant": p.variant, "send_at": m.send_at, "sent_at": m.send_at,
                     "subject": m.subject, "transport": args.transport,
                     "mid": f"{args.transport}-{tid}"})
    t4 = time.perf_counter()
    if engine.dialect.name == "sqlite":  # same storage convention as the store
        for row in rows:
            row["send_at"] = row["sent_at"] = row["send_at"].replace(tzinfo=None)
    with engine.begin() as conn:
        if rows:
            conn.execute(INSERT, rows)
    t5 = time.perf_counter()
    for k, v in (("read", t2 - t1), ("evaluate", t3 - t2), ("render_emit", t4 - t3),
                 ("record", t5 - t4)):
        sec[k] += v
    return len(leads), len(rows)


def run(args: argparse.Namespace) -> dict:
    from nurture.services.validation import load_valid_config
    rules = Rules.compile(load_valid_config(args.campaigns, args.templates))
    if args.render == "engine":
        from nurture.core.rendering import Renderer
        renderer: Any = Renderer(args.templates)
    else:
        renderer = OwnRenderer(args.templates)
    as_of = datetime.fromisoformat(args.as_of)
    engine = create_engine(args.db)
    sec: dict[str, float] = {}
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS floor_touches"))
        conn.execute(text(SCRATCH))
    t1, c1 = time.perf_counter(), time.process_time()
    with engine.connect() as conn:
        first, last = conn.execute(text("SELECT MIN(id), MAX(id) FROM leads")).one()
    totals = {"read": 0.0, "evaluate": 0.0, "render_emit": 0.0, "record": 0.0}
    due = emitted = 0
    for lo in range(first or 0, (last or -1) + 1, WINDOW):
        n_due, n_sent = window(args, engine, rules, renderer, as_of, lo, lo + WINDOW - 1,
                               emitted, totals)
        due, emitted = due + n_due, emitted + n_sent
    t5, cpu = time.perf_counter(), time.process_time() - c1
    if not args.keep_scratch:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS floor_touches"))
    engine.dispose()
    sec = totals
    total = t5 - t1
    n = max(emitted, 1)
    return {"due_leads": due, "touches": emitted, "seconds": round(total, 3),
            "us_per_touch": round(total / n * 1e6, 1),
            "phase_us_per_touch": {k: round(v / n * 1e6, 1) for k, v in sec.items()},
            "cpu_seconds": round(cpu, 3), "cpu_us_per_touch": round(cpu / n * 1e6, 1),
            "transport": args.transport, "render": args.render, "setup_s": round(t1 - t0, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--db", required=True, help="database URL (built by daily_cycle.py)")
    p.add_argument("--as-of", required=True, help="cycle time, ISO 8601 with offset")
    p.add_argument("--transport", choices=["memory", "outbox"], default="memory")
    p.add_argument("--outbox", type=Path, default=None, help="outbox directory (outbox)")
    p.add_argument("--render", choices=["own", "engine"], default="own",
                   help="own: the floor's minimal renderer; engine: nurture's Renderer")
    p.add_argument("--campaigns", type=Path, default=ROOT / "campaigns")
    p.add_argument("--templates", type=Path, default=ROOT / "templates")
    p.add_argument("--timezone", default="UTC", help="default lead timezone")
    p.add_argument("--secret", default="floor-benchmark-secret-0123456789")
    p.add_argument("--public-url", default="http://localhost:8000")
    p.add_argument("--keep-scratch", action="store_true", help="keep floor_touches")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    args = p.parse_args(argv)
    if args.transport == "outbox" and args.outbox is None:
        p.error("--outbox DIR is required with --transport outbox")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = run(args)
    print(f"floor: {out['touches']:,} touches from {out['due_leads']:,} due leads in "
          f"{out['seconds']:.2f} s = {out['us_per_touch']:.0f} µs/touch "
          f"({', '.join(f'{k} {v:.0f}' for k, v in out['phase_us_per_touch'].items())}); "
          f"peak RSS {out['peak_rss_mb']} MB", file=sys.stderr)
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
