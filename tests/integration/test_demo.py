"""`nurture demo` end to end, small: a fresh directory, the real flow for a few simulated
days, real .eml files, and quiet output (no Prefect noise on a first run)."""

from __future__ import annotations

import json

from test_cli import make_env, nurture, ok


def test_small_demo_runs_end_to_end(tmp_path):
    env = make_env(tmp_path)
    env.pop("NURTURE_DATABASE_URL")  # the demo makes its own database in --dir
    demo_dir = tmp_path / "demo"
    out = ok(nurture("demo", "--dir", str(demo_dir), "--leads", "60", "--days", "3", "--json",
                     env=env, cwd=tmp_path, timeout=300))
    res = json.loads(out.stdout)
    assert res["days"] == 3 and len(res["daily"]) == 3
    assert res["touches_sent"] > 0
    assert sum(res["lifecycle_stages"].values()) == 60
    emls = list((demo_dir / "outbox").rglob("*.eml"))
    assert len(emls) == res["touches_sent"]
    assert (demo_dir / "outbox" / "index.html").is_file()
    assert (demo_dir / ".nurture-demo").is_file()
    noisy = [line for line in out.stderr.splitlines()
             if any(w in line for w in ("Traceback", "ERROR", "Error", "Warning"))]
    assert noisy == []
    # run again: the directory is recreated, not appended to
    ok(nurture("demo", "--dir", str(demo_dir), "--leads", "20", "--days", "1", "--json",
               env=env, cwd=tmp_path, timeout=300))
    assert len(list((demo_dir / "outbox").rglob("*.eml"))) <= 20


def test_demo_refuses_a_directory_it_did_not_make(tmp_path):
    env = make_env(tmp_path)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    proc = nurture("demo", "--dir", str(precious), env=env, cwd=tmp_path)
    assert proc.returncode == 1 and "not a nurture demo directory" in proc.stderr
    assert (precious / "thesis.txt").read_text() == "do not delete"
