"""The bad-input corpus, through the real doors, on SQLite and PostgreSQL: `nurture` as a
subprocess (import-leads, activities import, validate, every time/number option) and
`nurture serve` over loopback HTTP. Counts: tracebacks in any output, HTTP 500s, and good
rows lost (rows counted in the database). All three must be 0.

Run with `-s` to see the totals, one JSON line per backend:
    pytest tests/integration/test_bad_input_corpus.py -s
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select

from nurture.store import tables as t
from nurture.store.db import make_engine

sys.path.insert(0, str(Path(__file__).parent))
from test_import_bad_input import BAD_ACTIVITY_LINES, BAD_LEAD_ROWS  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
KEY = "corpus-api-key-0123456789"
NOW = datetime.now(UTC).replace(microsecond=0)
HOSTILE_TIMES = ["9999-12-31T23:59:59+14:00", "9999-12-31T23:59:59-14:00",
                 "0001-01-01T00:00:00+01:00", "2500-01-01", "1900-01-01", "yesterday"]
BOMB = "a: &a [" + ",".join(['"lol"'] * 8) + "]\n" + "".join(
    f"{c}: &{c} [{','.join(['*' + p] * 8)}]\n" for p, c in zip("abcdefgh", "bcdefghi",
                                                                 strict=True))


def env_for(db_url: str, root: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NURTURE_", "PREFECT_", "SENDGRID_"))}
    env.update(NURTURE_DATABASE_URL=db_url, NURTURE_OUTBOX_DIR=str(root / "outbox"),
               NURTURE_CAMPAIGNS_DIR=str(REPO / "campaigns"),
               NURTURE_TEMPLATES_DIR=str(REPO / "templates"), NURTURE_API_KEY=KEY,
               PREFECT_HOME=str(root / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               COLUMNS="200", PYTHONPATH=str(REPO))
    return env


class Tally:
    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.cases = self.tracebacks = self.http_500 = 0
        self.good_expected = self.good_found = 0
        self.failures: list[str] = []

    def output(self, what: str, *texts: str) -> None:
        self.cases += 1
        if any("Traceback" in (x or "") for x in texts):
            self.tracebacks += 1
            self.failures.append(f"traceback: {what}")

    def totals(self) -> dict:
        return {"backend": self.backend, "cases": self.cases, "tracebacks": self.tracebacks,
                "http_500": self.http_500, "good_rows_expected": self.good_expected,
                "good_rows_found": self.good_found,
                "good_rows_lost": self.good_expected - self.good_found}


def run(env, root, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nurture", *args], env=env, cwd=root,
                          capture_output=True, text=True, timeout=timeout,
                          errors="replace")


def leads_csv(root: Path) -> tuple[Path, int]:
    """Good rows between every hostile row; a header with padded names; a stray quote
    near the end (the rows after it are good and must land)."""
    good = 0
    parts = [b" email , first_name ,company,company_size,created_at,timezone,plan\n"]
    bad = [r.encode() for r in BAD_LEAD_ROWS.values()]
    bad.append(b"latin@example.com,Jos\xe9,Acme,,,UTC,\n")
    for i, row in enumerate(bad):
        parts += [f"g{i}@example.com,Good,Acme,10,2024-01-02T03:04:05Z,UTC,pro\n".encode(),
                  row]
        good += 1
    parts.append(b'quote@example.com,"Never closed,Acme,,,UTC,\n')
    for i in range(5):
        parts.append(f"after{i}@example.com,After,Acme,,,UTC,\n".encode())
        good += 1
    path = root / "corpus.csv"
    path.write_bytes(b"".join(parts))
    return path, good


def activities_jsonl(root: Path) -> tuple[Path, int]:
    at = (NOW - timedelta(hours=2)).isoformat()
    lines = []
    for i, line in enumerate(BAD_ACTIVITY_LINES.values()):
        lines.append(json.dumps({"id": f"good-{i}", "email": "a@example.com",
                                 "type": "page_view", "occurred_at": at}).encode())
        lines.append(line)
    path = root / "corpus.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, len(BAD_ACTIVITY_LINES)


def cli_option_cases() -> list[tuple[str, ...]]:
    cases: list[tuple[str, ...]] = []
    for value in HOSTILE_TIMES:
        cases += [("cycle", "--as-of", value), ("lead", "show", "a@example.com", "--as-of",
                                                value),
                  ("report", "funnel", "--as-of", value),
                  ("sales", "accept", "a@example.com", "--at", value)]
    cases += [("cycle", "--chunk-size", "0"), ("cycle", "--chunk-size", "10" * 20),
              ("demo", "--leads", "-1"), ("demo", "--days", "100000"),
              ("serve", "--port", "99999"), ("fake-sendgrid", "--latency-ms", "nan"),
              ("fake-sendgrid", "--port", "-1")]
    return cases


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_cases() -> list[tuple[str, bytes]]:
    at = (NOW - timedelta(hours=1)).isoformat()

    def act(i, **kw):
        return {"id": i, "email": "h@example.com", "type": "page_view", "occurred_at": at} | kw

    hostile_items = [
        json.dumps(act("x", properties={"v": "@@"})).replace('"@@"', "NaN"),
        json.dumps(act("x", properties={"v": "@@"})).replace('"@@"', "1e400"),
        json.dumps(act("x", occurred_at="9999-12-31T23:59:59-14:00")),
        json.dumps(act("x", occurred_at="0001-01-01T00:00:00+14:00")),
        json.dumps(act("x" * 300)), json.dumps(act("n\x00ul")), json.dumps(act(True)),
        json.dumps(act("x", type="t" * 300)), json.dumps(act("x", email="e" * 330)),
        json.dumps(act("x", properties={"k": "v\x00"})), json.dumps(act(["x"], email=1)),
    ]
    cases = []
    for n, item in enumerate(hostile_items):
        body = f"[{json.dumps(act(f'http-good-{n}'))}, {item}]"
        cases.append(("/activities", body.encode()))
    for raw in (b"[" * 40_000 + b"]" * 40_000, b'{"id": "\xff"}', b"NaN", b"1e400"):
        cases += [("/activities", raw), ("/sales/feedback", raw)]
    base = {"email": "h@example.com", "action": "accept"}
    for extra in ({"at": v} for v in HOSTILE_TIMES + [float("nan"), 1e400, 7]):
        cases.append(("/sales/feedback", json.dumps(base | extra).encode()))
    for extra in ({"actor": "a" * 300}, {"note": "n\x00"}, {"action": "reject",
                                                          "reason": "r" * 300},
                  {"email": "e" * 400}, {"email": None}, {"actor": {"x": 1}}):
        cases.append(("/sales/feedback", json.dumps(base | extra).encode()))
    return cases


def count(engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def test_bad_input_corpus(db_url, tmp_path):
    tally = Tally("postgresql" if db_url.startswith("postgresql") else "sqlite")
    env = env_for(db_url, tmp_path)
    proc = run(env, tmp_path, "db", "upgrade")
    assert proc.returncode == 0, proc.stderr
    engine = make_engine(db_url)
    try:
        # -- CSV ---------------------------------------------------------------------------
        path, good = leads_csv(tmp_path)
        proc = run(env, tmp_path, "import-leads", str(path), "--json")
        tally.output("import-leads corpus.csv", proc.stdout, proc.stderr)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        tally.good_expected += good
        tally.good_found += count(engine, t.leads)
        assert report["inserted"] == good
        assert report["quarantined"] == len(BAD_LEAD_ROWS) + 2  # + non-UTF-8, stray quote

        dup = tmp_path / "dup.csv"
        dup.write_text("email,name,email\nd@example.com,D,e@example.com\n", encoding="utf-8")
        proc = run(env, tmp_path, "import-leads", str(dup))
        tally.output("import-leads dup.csv", proc.stdout, proc.stderr)
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1

        # -- JSONL ---------------------------------------------------------------------------
        path, good = activities_jsonl(tmp_path)
        proc = run(env, tmp_path, "activities", "import", str(path), "--json")
        tally.output("activities import corpus.jsonl", proc.stdout, proc.stderr)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["quarantined"] == len(BAD_ACTIVITY_LINES)
        tally.good_expected += good
        tally.good_found += count(engine, t.activities,
                                  t.activities.c.external_id.like("good-%"))

        # -- YAML ---------------------------------------------------------------------------
        campaigns = Path(shutil.copytree(REPO / "campaigns", tmp_path / "campaigns"))
        (campaigns / "bomb.yaml").write_text(BOMB, encoding="utf-8")
        (campaigns / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
        started = time.perf_counter()
        proc = run(env, tmp_path, "validate", str(campaigns), timeout=60)
        tally.output("validate bomb", proc.stdout, proc.stderr)
        assert proc.returncode == 1 and time.perf_counter() - started < 30
        assert "bomb.yaml:" in proc.stdout and "latin1.yaml:1: (file): not UTF-8" in proc.stdout

        # -- CLI options ------------------------------------------------------------------
        with ThreadPoolExecutor(max_workers=2) as pool:
            procs = list(pool.map(lambda args: (args, run(env, tmp_path, *args)),
                                  cli_option_cases()))
        for args, proc in procs:
            tally.output(" ".join(args), proc.stdout, proc.stderr)
            lines = proc.stderr.strip().splitlines()
            if not (proc.returncode == 1 and len(lines) == 1
                    and lines[0].startswith("error: ")):
                tally.failures.append(f"not one sentence: {args}: {proc.stderr[-300:]}")

        # -- HTTP (`nurture serve` on loopback) ------------------------------------------
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "nurture", "serve", "--port",
                                   str(port), "--log-level", "warning"], env=env, cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  errors="replace")
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.time() + 60
            while True:
                try:
                    httpx.get(url + "/health", timeout=2)
                    break
                except httpx.TransportError:
                    if time.time() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.2)
            auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
            http_good = 0
            with httpx.Client(base_url=url, headers=auth, timeout=30) as client:
                for route, body in http_cases():
                    r = client.post(route, content=body)
                    tally.cases += 1
                    if r.status_code >= 500:
                        tally.http_500 += 1
                        tally.failures.append(f"500: {route} {body[:80]!r}")
                    elif not 400 <= r.status_code < 500:
                        tally.failures.append(f"{r.status_code}: {route} {body[:80]!r}")
                    http_good += b"http-good-" in body
        finally:
            server.terminate()
            out, err = server.communicate(timeout=30)
        tally.output("nurture serve log", out, err)
        tally.good_expected += http_good
        tally.good_found += count(engine, t.activities,
                                  t.activities.c.external_id.like("http-good-%"))
    finally:
        engine.dispose()
    print(json.dumps(tally.totals()))
    assert tally.failures == [], "\n".join(tally.failures)
    assert tally.totals() | {"cases": 0} == {
        "backend": tally.backend, "cases": 0, "tracebacks": 0, "http_500": 0,
        "good_rows_expected": tally.good_expected, "good_rows_found": tally.good_expected,
        "good_rows_lost": 0}
