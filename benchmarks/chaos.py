"""Chaos harness: kill -9, provider faults and concurrent writers against the real engine.

    python benchmarks/chaos.py --trials 100 --rounds 20            # the full run (~40 min)
    python benchmarks/chaos.py --trials 3 --rounds 1 --backend sqlite --transport outbox

Kill trials, per transport (outbox | sendgrid) x backend (sqlite | postgresql): restore the
seeded database, start `nurture cycle --as-of DAY` in its own process group, kill -9 the group
at a uniformly random moment within the measured duration of an undisturbed run, run the
cycle again to completion (waiting for fencing if the engine fences), and for SendGrid let
in-doubt touches settle: the fake posts signed processed/delivered events for what it
accepted to `nurture serve`, then the cycle runs once more with
NURTURE_IN_DOUBT_SETTLE_MINUTES=0. The fake runs in its own process with ~30 ms latency and
random 429/5xx/timeout faults. A CONTROL run (same data, same day, no faults, no kill) says
which (lead, campaign, step, round) must be delivered; each trial must deliver exactly that.

Concurrent rounds, per backend: two daily cycles, instant routing (`process_engagement`),
sales feedback (`nurture sales` and POST /sales/feedback), signed webhook batches and two
`nurture handoffs deliver` start together on one database; then one more cycle and one
delivery run finish the day, and the harness counts duplicate emails, lost touches,
duplicate open handoffs, duplicate MQL transitions, duplicate CRM posts and impossible
final states.

With `--workers 2`, every cycle works on several chunks at once (NURTURE_WORKERS: a local
Dask cluster of worker processes on PostgreSQL, threads on SQLite) — kill -9 takes the whole
process group, the Dask workers with it — and the same counts must stay 0.

Prints a table (and `--json`: one JSON object); exit 1 when any count that must be 0 is not,
2 when the harness itself could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nurture.devtools import chaos_count as cc  # noqa: E402
from nurture.devtools import chaos_env as ce  # noqa: E402

TRIAL_ZERO = ("duplicates", "lost", "unwanted", "unsettled", "rerun_failed")
ROUND_ZERO = ("duplicates", "lost", "unsettled", "dup_open_handoffs", "dup_handoffs",
              "dup_mql_transitions", "dup_crm_posts", "crm_missing", "impossible_states",
              "rerun_failed", "hung")
COMPLETE_WITHIN = 150.0  # seconds a re-run may take to finish the day (fencing waits)
ROUND_DAYS = 7  # the concurrent rounds run this many days after the seeded day
SETUP = threading.Lock()  # Alembic's migration context is process-global: one lane at a time


@dataclass
class Ctx:
    args: argparse.Namespace
    work: Path
    prefect_api: str
    as_of: str
    tick: Any
    log: Any


@dataclass
class LaneResult:
    backend: str
    transport: str
    kind: str  # "kill" | "round"
    runs: int = 0
    counts: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    undisturbed_seconds: float | None = None
    control_keys: int | None = None
    error: str | None = None
    per_run: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "transport": self.transport, "kind": self.kind,
                "runs": self.runs, "counts": dict(self.counts),
                "seconds": round(self.seconds, 1),
                "seconds_per_run": round(self.seconds / self.runs, 2) if self.runs else None,
                "undisturbed_cycle_seconds": self.undisturbed_seconds,
                "control_deliveries": self.control_keys, "error": self.error,
                "per_run": self.per_run}


def cycle_args(as_of: str) -> list[str]:
    return ["cycle", "--as-of", as_of, "--json"]


def complete(args: list[str], env: dict[str, str], within: float = COMPLETE_WITHIN) -> bool:
    """Run a command until it exits 0 (a re-run may have to wait for a dead run's claims)."""
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            if ce.run_cli(args, env, timeout=left).returncode == 0:
                return True
        except Exception:  # noqa: BLE001 - a timeout counts as not completed
            return False
        time.sleep(1.0)


# -- kill trials ------------------------------------------------------------------------------
def kill_lane(ctx: Ctx, backend: str, transport: str, rng: random.Random) -> LaneResult:
    a = ctx.args
    res = LaneResult(backend, transport, "kill")
    name = f"{backend[:2]}-{transport}"
    lane_dir = ctx.work / name
    lane_dir.mkdir(parents=True, exist_ok=True)
    db = ce.LaneDB(backend, ctx.work, name.replace("-", "_"), a.pg_url)
    fake = serve = None
    try:
        with SETUP:
            db.upgrade()
            ce.seed(db, ctx.work, a.leads, a.seed, a.start)
        db.snapshot("seed")
        env = ce.base_env(ctx.prefect_api) | ce.workers_env(a.workers, a.leads) | {
            "NURTURE_DATABASE_URL": db.url, "NURTURE_SENDGRID_TIMEOUT_SECONDS": "1"}
        # the control: no faults, no kill — what a correct engine delivers for this day
        t0 = time.monotonic()
        if transport == "outbox":
            control_env = env | {"NURTURE_OUTBOX_DIR": str(lane_dir / "control")}
            r = ce.run_cli(cycle_args(ctx.as_of), control_env)
            duration = time.monotonic() - t0
            deliveries = cc.outbox_deliveries(lane_dir / "control")
        else:
            fake0 = ce.FakeSendGridProcess(lane_dir, "control", a.latency_ms, 0.0, 1.5, a.seed)
            try:
                t0 = time.monotonic()
                r = ce.run_cli(cycle_args(ctx.as_of), env | fake0.env())
                duration = time.monotonic() - t0
                deliveries = cc.fake_log_deliveries(fake0.log_path)
            finally:
                fake0.stop()
        if r.returncode != 0:
            raise RuntimeError(f"control cycle failed: {r.stderr.strip()[-400:]}")
        touches = cc.touch_keys(db.engine)
        control = set(cc.delivered_keys(deliveries, touches))
        if len(control) != len(deliveries) or not control:
            raise RuntimeError(f"control run delivered {len(deliveries)} messages for "
                               f"{len(control)} keys: cannot serve as the control")
        res.undisturbed_seconds = round(duration, 2)
        res.control_keys = len(control)
        ctx.log(f"{name}: control delivered {len(control)} in {duration:.1f} s")
        if transport == "sendgrid":
            fake = ce.FakeSendGridProcess(lane_dir, "chaos", a.latency_ms, a.fault_rate, 1.5,
                                          a.seed)
            serve = ce.ServeProcess(lane_dir, "chaos", env | {
                "NURTURE_SENDGRID_WEBHOOK_PUBLIC_KEY": fake.public_key})
            env = env | fake.env() | {"NURTURE_SENDGRID_WEBHOOK_PUBLIC_KEY": fake.public_key}
        start = time.monotonic()
        for i in range(a.trials):
            res.per_run.append(one_kill_trial(ctx, db, env, lane_dir, i, duration, control,
                                              fake, serve, rng))
            for k in TRIAL_ZERO + ("killed", "delivered"):
                res.counts[k] += res.per_run[-1].get(k, 0)
            res.runs += 1
            res.seconds = time.monotonic() - start
            ctx.tick()
    except Exception as exc:  # noqa: BLE001 - reported, exit status 2
        res.error = f"{type(exc).__name__}: {exc}"
        ctx.log(f"{name}: harness error\n{traceback.format_exc()}")
    finally:
        for svc in (serve, fake):
            if svc is not None:
                svc.stop()
        db.drop()
    return res


def one_kill_trial(ctx: Ctx, db, env: dict[str, str], lane_dir: Path, i: int, duration: float,
                   control: set, fake, serve, rng: random.Random) -> dict[str, Any]:
    db.restore("seed")
    t_env = dict(env)
    out_dir = lane_dir / f"trial-{i:03d}"
    ce.rmtree(out_dir)
    t_env["NURTURE_OUTBOX_DIR"] = str(out_dir)
    offset = fake.clear() if fake is not None else 0
    kill_at = rng.uniform(0, duration)
    proc = ce.spawn([str(ce.BIN / "nurture"), *cycle_args(ctx.as_of)], t_env)
    killed = 0
    try:
        proc.wait(timeout=kill_at)
        proc.communicate()
    except Exception:  # noqa: BLE001 - still running at the chosen moment: kill -9 it
        ce.kill_group(proc)
        killed = 1
    ok = complete(cycle_args(ctx.as_of), t_env)
    if fake is not None:
        time.sleep(2.0)  # requests the killed run had in flight are answered by now
        for _ in range(2):  # a re-sent touch can time out again: settle twice at most
            fake.post_events(f"{serve.url}/webhooks/sendgrid", ["processed", "delivered"])
            ok = complete(cycle_args(ctx.as_of),
                          t_env | {"NURTURE_IN_DOUBT_SETTLE_MINUTES": "0"}) and ok
            touches = cc.touch_keys(db.engine)
            if not any(s in cc.UNSETTLED for _, s in touches.values()):
                break
        deliveries = cc.fake_log_deliveries(fake.log_path, offset)
    else:
        deliveries = cc.outbox_deliveries(out_dir)
    touches = cc.touch_keys(db.engine)
    counts = cc.count_trial(deliveries, touches, control)
    counts.update(trial=i, kill_at=round(kill_at, 2), killed=killed, rerun_failed=int(not ok))
    if fake is None:
        ce.rmtree(out_dir)
    return counts


# -- concurrent rounds ------------------------------------------------------------------------
def round_lane(ctx: Ctx, backend: str, rng: random.Random) -> LaneResult:
    from datetime import datetime

    from sqlalchemy import text

    from nurture.devtools.fake_sendgrid import FakeSendGrid, Recorded

    a = ctx.args
    res = LaneResult(backend, "outbox", "round")
    name = f"{backend[:2]}-rounds"
    lane_dir = ctx.work / name
    lane_dir.mkdir(parents=True, exist_ok=True)
    db = ce.LaneDB(backend, ctx.work, name.replace("-", "_"), a.pg_url)
    serve = crm = None
    try:
        with SETUP:
            db.upgrade()
            ce.seed(db, ctx.work, a.leads, a.seed, a.start)
        env = ce.base_env(ctx.prefect_api) | ce.workers_env(a.workers, a.leads) | {
            "NURTURE_DATABASE_URL": db.url}
        day0 = ctx.as_of
        # a week later: next steps are due (cadence) and day 0's MQLs are past their SLA,
        # so sales feedback races the SLA expiry as well as the cycles
        day1_dt = datetime.fromisoformat(day0) + timedelta(days=ROUND_DAYS)
        # day 0 makes MQLs (for sales feedback) and sent touches (for webhook events)
        r = ce.run_cli(cycle_args(day0), env | {"NURTURE_OUTBOX_DIR": str(lane_dir / "day0")})
        if r.returncode != 0:
            raise RuntimeError(f"day-0 cycle failed: {r.stderr.strip()[-400:]}")
        with db.engine.connect() as c:
            nurturing = c.execute(text("SELECT email FROM leads WHERE lifecycle_stage = "
                                       "'nurturing' ORDER BY id")).scalars().all()
            mqls = c.execute(text("SELECT l.id, l.email FROM leads l WHERE lifecycle_stage = "
                                  "'mql' ORDER BY l.id")).all()
            sent = c.execute(text("SELECT t.id, l.email, t.campaign, t.step, "
                                  "t.provider_message_id FROM touches t JOIN leads l ON "
                                  "l.id = t.lead_id WHERE t.status = 'sent' ORDER BY t.id")
                             ).all()
        raisers = random.Random(a.seed).sample(list(nurturing), min(16, len(nurturing)))
        acts = lane_dir / "hand-raisers.jsonl"
        ce.hand_raiser_activities(acts, raisers, day1_dt, "round")
        r = ce.run_cli(["activities", "import", str(acts)], env)
        if r.returncode != 0:
            raise RuntimeError(f"activity import failed: {r.stderr.strip()[-400:]}")
        db.snapshot("round")
        before = cc.max_ids(db.engine)
        signer = FakeSendGrid(validate=False)
        recs = [Recorded(mid or f"m{tid}", {"personalizations": [{
            "to": [{"email": email}], "custom_args": {"touch_id": str(tid), "campaign": camp,
                                                      "step": step}}],
            "categories": [f"campaign:{camp}", f"step:{step}"]}, 0.0)
            for tid, email, camp, step, mid in sent]
        serve = ce.ServeProcess(lane_dir, "rounds", env | {
            "NURTURE_SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_key})
        crm = ce.CrmReceiver()
        start = time.monotonic()
        for i in range(a.rounds):
            out = one_round(ctx, db, env, lane_dir, i, day1_dt, list(mqls), recs, signer,
                            serve, crm, before, rng)
            res.per_run.append(out)
            for k, v in out.items():
                if k != "round":
                    res.counts[k] += v
            res.runs += 1
            res.seconds = time.monotonic() - start
            ctx.tick()
    except Exception as exc:  # noqa: BLE001 - reported, exit status 2
        res.error = f"{type(exc).__name__}: {exc}"
        ctx.log(f"{name}: harness error\n{traceback.format_exc()}")
    finally:
        if serve is not None:
            serve.stop()
        if crm is not None:
            crm.stop()
        db.drop()
    return res


def one_round(ctx: Ctx, db, env: dict[str, str], lane_dir: Path, i: int, day1_dt, mqls,
              recs, signer, serve, crm, before: dict[str, int], rng: random.Random
              ) -> dict[str, Any]:
    import httpx

    db.restore("round")
    crm.posts.clear()
    out_dir = lane_dir / f"round-{i:03d}"
    ce.rmtree(out_dir)
    day1 = day1_dt.isoformat()
    r_env = env | {"NURTURE_OUTBOX_DIR": str(out_dir), "NURTURE_HANDOFF_WEBHOOK_URL": crm.url}
    rng.shuffle(mqls)
    cli_accept, cli_reject, http_accept, http_reject = (mqls[0:2], mqls[2:3], mqls[3:4],
                                                        mqls[4:5])
    nurture = str(ce.BIN / "nurture")
    engagement = ("from nurture.flows.process_engagement import process_engagement; "
                  f"process_engagement(as_of={day1!r})")
    cmds: list[tuple[str, list[str], int | None]] = [
        ("cycle", [nurture, *cycle_args(day1)], None),
        ("cycle", [nurture, *cycle_args(day1)], None),
        ("engagement", [str(ce.BIN / "python"), "-c", engagement], None),
        ("deliver", [nurture, "handoffs", "deliver"], None),
        ("deliver", [nurture, "handoffs", "deliver"], None)]
    cmds += [("accept", [nurture, "sales", "accept", e, "--at", day1, "--json"], lid)
             for lid, e in cli_accept]
    cmds += [("reject", [nurture, "sales", "reject", e, "--reason", "not_ready", "--at", day1,
                         "--json"], lid) for lid, e in cli_reject]
    acked: dict[str, list[int]] = {"accept": [], "reject": []}

    def side_traffic() -> None:
        """Webhook batches and HTTP sales feedback while the processes run."""
        pick = rng.sample(recs, min(60, len(recs)))
        at = day1_dt.timestamp() - 6 * 3600
        for part in (pick[:20], pick[20:40], pick[40:]):
            events = signer.events_for(["delivered", "open", "click"], part,
                                       seconds_after=600, at=at)
            with contextlib.suppress(httpx.HTTPError):
                signer.post_events(f"{serve.url}/webhooks/sendgrid", events)
            for action, leads in (("accept", http_accept), ("reject", http_reject)):
                for lid, email in leads:
                    try:
                        rr = httpx.post(f"{serve.url}/sales/feedback", json={
                            "email": email, "action": action, "reason": "not_ready",
                            "at": day1, "actor": "chaos"}, timeout=60,
                            headers={"Authorization": f"Bearer {ce.API_KEY}"})
                    except httpx.HTTPError:
                        continue
                    if rr.status_code == 200 and lid not in acked[action]:
                        acked[action].append(lid)

    procs = [(kind, ce.spawn(cmd, r_env), lid) for kind, cmd, lid in cmds]
    side = threading.Thread(target=side_traffic)
    side.start()
    hung = 0
    deadline = time.monotonic() + 240
    for kind, p, lid in procs:
        try:
            p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - a process that never ends is a finding too
            ce.kill_group(p)
            hung += 1
            continue
        if kind in acked and p.returncode == 0:
            acked[kind].append(lid)
    side.join(timeout=120)
    # finish the day the way an operator would: one more cycle, one more delivery run
    ok = complete(cycle_args(day1), r_env)
    ok = complete(["handoffs", "deliver"], r_env) and ok
    send_before = day1_dt + timedelta(hours=72)
    counts = cc.count_round(db.engine, cc.outbox_deliveries(out_dir), list(crm.posts), before,
                            acked["accept"], acked["reject"], send_before)
    counts.update(rerun_failed=int(not ok), hung=hung)
    ce.rmtree(out_dir)
    return {"round": i, **counts}


# -- reporting --------------------------------------------------------------------------------
def failing(results: list[LaneResult]) -> list[str]:
    out = []
    for r in results:
        zero = TRIAL_ZERO if r.kind == "kill" else ROUND_ZERO
        out += [f"{r.backend}/{r.transport}/{r.kind}: {k}={r.counts[k]}" for k in zero
                if r.counts.get(k)]
    return out


def print_table(results: list[LaneResult], wall: float) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    kills = [r for r in results if r.kind == "kill"]
    if kills:
        t = Table(title="Kill -9 trials (counts summed over trials)", title_justify="left")
        for col in ("backend", "transport", "trials", "killed", "control", "duplicates",
                    "lost", "unwanted", "unsettled", "re-run failed", "undisturbed s",
                    "s/trial"):
            t.add_column(col, justify="left" if col in ("backend", "transport") else "right")
        for r in kills:
            c = r.counts
            t.add_row(r.backend, r.transport, str(r.runs), str(c["killed"]),
                      str(r.control_keys or "-"), str(c["duplicates"]), str(c["lost"]),
                      str(c["unwanted"]), str(c["unsettled"]), str(c["rerun_failed"]),
                      f"{r.undisturbed_seconds or 0:.1f}",
                      f"{r.seconds / r.runs:.1f}" if r.runs else "-")
        console.print(t)
    rounds = [r for r in results if r.kind == "round"]
    if rounds:
        t = Table(title="Concurrent rounds (counts summed over rounds)", title_justify="left")
        cols = ("duplicates", "lost", "unsettled", "dup_open_handoffs", "dup_handoffs",
                "dup_mql_transitions", "dup_crm_posts", "crm_missing", "impossible_states",
                "rerun_failed", "hung")
        t.add_column("backend")
        t.add_column("rounds", justify="right")
        for col in cols:
            t.add_column(col.replace("_", " "), justify="right")
        t.add_column("s/round", justify="right")
        for r in rounds:
            t.add_row(r.backend, str(r.runs), *(str(r.counts[c]) for c in cols),
                      f"{r.seconds / r.runs:.1f}" if r.runs else "-")
        console.print(t)
    for r in results:
        if r.error:
            console.print(f"[red]{r.backend}/{r.transport}/{r.kind}: harness error: "
                          f"{r.error}[/red]")
    bad = failing(results)
    console.print(f"Wall time {wall:.0f} s. " + ("All counts that must be 0 are 0." if not bad
                                                 else "NOT ZERO: " + "; ".join(bad)))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=100,
                   help="kill -9 trials per transport and backend (default 100)")
    p.add_argument("--rounds", type=int, default=20,
                   help="concurrent rounds per backend (default 20)")
    p.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--transport", choices=["outbox", "sendgrid", "both"], default="both")
    p.add_argument("--seed", type=int, default=7, help="data, kill times and faults")
    p.add_argument("--leads", type=int, default=400, help="synthetic leads (default 400)")
    p.add_argument("--fault-rate", type=float, default=0.05,
                   help="share of SendGrid requests answered 429/5xx/too late (default 0.05)")
    p.add_argument("--latency-ms", type=float, default=30.0,
                   help="the fake SendGrid's answer delay (default 30)")
    p.add_argument("--jobs", type=int, default=2, help="lanes run at once (default 2)")
    p.add_argument("--workers", type=int, default=1,
                   help="workers per cycle (NURTURE_WORKERS): above 1, chunks run at once on "
                        "a local Dask cluster (PostgreSQL) or threads (SQLite), in chunks "
                        "small enough that each worker gets several (default 1)")
    p.add_argument("--pg-url", default=ce.PG_DEFAULT,
                   help="PostgreSQL to use; each lane gets a fresh schema")
    p.add_argument("--keep", type=Path, help="work in this directory and keep it (logs)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = p.parse_args(argv)
    for name in ("trials", "rounds"):
        if getattr(args, name) < 0:
            p.error(f"--{name} must be 0 or more")
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    if args.workers < 1:
        p.error("--workers must be at least 1")
    if not 0 <= args.fault_rate <= 1:
        p.error("--fault-rate must be between 0 and 1")
    return args


def main(argv: list[str] | None = None) -> int:
    from nurture.devtools.demo_data import DEFAULT_START

    args = parse_args(argv)
    args.start = DEFAULT_START
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    transports = ["outbox", "sendgrid"] if args.transport == "both" else [args.transport]
    work = args.keep or Path(tempfile.mkdtemp(prefix="nurture-chaos-"))
    if args.keep:
        ce.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    total = args.trials * len(backends) * len(transports) + args.rounds * len(backends)
    t_wall = time.monotonic()
    lock = threading.Lock()

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    err = Console(stderr=True, highlight=False)
    bar = Progress("[bold]chaos", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err, transient=True, disable=not sys.stderr.isatty())
    prefect = None
    results: list[LaneResult] = []
    with bar:
        task = bar.add_task("trials", total=total)

        def tick() -> None:
            with lock:
                bar.advance(task)

        def log(msg: str) -> None:
            bar.console.print(f"[dim]{time.monotonic() - t_wall:6.0f}s[/dim] {msg}",
                              soft_wrap=True)

        try:
            prefect, api = ce.start_prefect(work)
        except Exception as exc:  # noqa: BLE001
            err.print(f"error: could not start a Prefect server: {exc}")
            return 2
        log(f"Prefect server at {api}; work dir {work}")
        ctx = Ctx(args, work, api, (args.start + timedelta(hours=1)).isoformat(), tick, log)
        jobs = []
        if args.trials:
            jobs += [(kill_lane, (b, t, random.Random(rng.random()))) for b in backends
                     for t in transports]
        if args.rounds:
            jobs += [(round_lane, (b, random.Random(rng.random()))) for b in backends]
        try:
            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                futures = [pool.submit(fn, ctx, *fa) for fn, fa in jobs]
                results = [f.result() for f in futures]
        finally:
            prefect.stop()
            if not args.keep:
                ce.rmtree(work)
    wall = time.monotonic() - t_wall
    bad = failing(results)
    if args.json:
        print(json.dumps({"wall_seconds": round(wall, 1), "leads": args.leads,
                          "workers": args.workers,
                          "fault_rate": args.fault_rate, "seed": args.seed,
                          "results": [r.as_dict() for r in results], "not_zero": bad,
                          "errors": [r.error for r in results if r.error]}))
    else:
        print_table(results, wall)
    if any(r.error for r in results):
        return 2
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
