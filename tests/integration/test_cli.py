"""The real `nurture` command line, run as a subprocess against a SQLite file, the repo's
campaigns and templates, and the outbox transport: what an operator types and sees.

The cycle runs a real Prefect flow (an ephemeral server per process, ≈15 s), so the whole file
makes exactly two `cycle` runs, shared by the tests through the module-scoped `cycled` world.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AS_OF = "2026-11-02T08:00:00+00:00"  # a Monday, before the 09:00 / 10:00 send windows

LEADS_CSV = """\
email,first_name,last_name,company,title,industry,company_size,source,timezone,favourite_colour
 Ada@Example.com ,Ada,Lovelace,Initech,VP Marketing,software,250,website,UTC,blue
bob@example.com,Bob,,Hooli,Engineer,retail,12,website,UTC,
dee@example.com,Dee,,Globex,Analyst,retail,30,webinar,UTC,
hot@example.com,Hot,,Umbrella,Manager,retail,40,website,UTC,
pat@example.com,Pat,,Partnerco,Manager,retail,40,partner,UTC,
"""
BAD_ROWS = """\
not-an-email,Bad,,X,,,,website,UTC,
,Nobody,,X,,,,website,UTC,
carol@example.com,Carol,,Acme,,retail,lots,website,UTC,
"""
ACTIVITIES = [
    {"id": "a1", "email": "ada@example.com", "type": "page_view",
     "occurred_at": "2026-10-30T10:00:00Z", "properties": {"url": "/blog"}},
    {"id": "h1", "email": "HOT@example.com ", "type": "demo_request",
     "occurred_at": "2026-10-31T12:00:00Z"},
    {"id": "e1", "email": "eve@example.com", "type": "page_view",
     "occurred_at": "2026-10-31T11:00:00Z"},
]


def nurture(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120
            ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nurture", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def make_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NURTURE_", "PREFECT_", "SENDGRID_"))}
    env.update(NURTURE_DATABASE_URL=f"sqlite:///{root / 'n.db'}",
               NURTURE_OUTBOX_DIR=str(root / "outbox"),
               NURTURE_CAMPAIGNS_DIR=str(REPO / "campaigns"),
               NURTURE_TEMPLATES_DIR=str(REPO / "templates"),
               PREFECT_HOME=str(root / "prefect"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false",
               COLUMNS="200",  # rich wraps tables and messages at 80 columns otherwise
               PYTHONPATH=str(REPO))
    return env


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc


def one_sentence_error(proc: subprocess.CompletedProcess) -> str:
    """A failure is exit 1 and a single `error: …` line on stderr, never a traceback."""
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def db_rows(root: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(root / "n.db") as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def world(tmp_path):
    """An empty, migrated database in a fresh working directory."""
    env = make_env(tmp_path)
    ok(nurture("db", "upgrade", env=env, cwd=tmp_path))
    return tmp_path, env


# -- help -----------------------------------------------------------------------------------
def _command_paths() -> list[tuple[str, ...]]:
    """Every command and subcommand the parser knows, so a new one cannot miss its test."""
    import argparse

    from nurture.entrypoints.cli.main import build_parser

    out: list[tuple[str, ...]] = []

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        out.append(path)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, (*path, name))

    walk(build_parser(), ())
    return out


def test_the_documented_commands_exist():
    # test_help below runs every command the parser has, including ones added later
    assert set(_command_paths()) >= {
        (), ("db",), ("db", "upgrade"), ("validate",), ("import-leads",), ("activities",),
        ("activities", "import"), ("cycle",), ("lead",), ("lead", "show"), ("demo",)}


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "nurture")
def test_help(path, tmp_path):
    proc = ok(nurture(*path, "--help", env=make_env(tmp_path), cwd=tmp_path))
    assert proc.stdout.startswith(f"usage: nurture {' '.join(path)}".rstrip())
    assert "-h, --help" in proc.stdout
    assert not (tmp_path / "n.db").exists()  # --help touches nothing


def test_no_command_prints_usage_and_fails(tmp_path):
    proc = nurture(env=make_env(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and "usage: nurture" in proc.stderr


def test_db_upgrade_twice(tmp_path):
    from nurture.store.db import head_revision

    env = make_env(tmp_path)
    head = head_revision()
    for _ in range(2):
        proc = ok(nurture("db", "upgrade", env=env, cwd=tmp_path))
        assert proc.stdout.strip() == (f"Database sqlite:///{tmp_path / 'n.db'} is at revision "
                                       f"{head} (up to date).")
    assert db_rows(tmp_path, "SELECT version_num FROM alembic_version") == [(head,)]


def test_commands_on_an_unmigrated_database_say_what_to_do(tmp_path):
    env = make_env(tmp_path)
    (tmp_path / "l.csv").write_text("email\na@example.com\n", encoding="utf-8")
    line = one_sentence_error(nurture("import-leads", "l.csv", env=env, cwd=tmp_path))
    assert "run `nurture db upgrade` first" in line


# -- validate -------------------------------------------------------------------------------
def test_validate_repo_campaigns(tmp_path):
    proc = ok(nurture("validate", env=make_env(tmp_path), cwd=tmp_path))
    assert proc.stdout.startswith(f"OK: {REPO / 'campaigns'}: lifecycle.yaml and 2 campaign(s) "
                                  "(webinar-followup, inbound-saas), 15 steps")
    assert proc.stderr == ""


def _copy_config(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "campaigns", tmp_path / "campaigns")
    return tmp_path / "campaigns"


def _inject(path: Path, old: str, new: str) -> int:
    """Replace `old` by `new` once; returns the 1-based line where `new` starts."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} not found once in {path.name}"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return text[:text.index(old)].count("\n") + 1 + new[:new.index(new.strip()[0])].count("\n")


BROKEN = {
    "unknown-key": (
        "inbound-saas.yaml", "    on_exhausted: hold                    # hold | restart\n",
        "    on_exhausted: hold\n    colour: blue\n", "tracks[0].colour", "unknown key"),
    "bad-regex": (
        "lifecycle.yaml", r"matches: '@(gmail|yahoo|hotmail|outlook)\.'",
        "matches: '@(gmail|yahoo'", "scoring.fit[3].matches",
        "invalid regular expression: missing ), unterminated subpattern at position 1"),
    "undefined-stage": (
        "inbound-saas.yaml", "    stage: evaluation\n", "    stage: consideration\n",
        "tracks[1].stage", "undefined buying stage 'consideration'; lifecycle.yaml defines "
                           "evaluation, research (or use `recycled`)"),
    "missing-template": (
        "webinar-followup.yaml", "template: webinar-followup/three-takeaways.html.j2",
        "template: webinar-followup/four-takeaways.html.j2", "tracks[0].steps[1].template",
        "template 'webinar-followup/four-takeaways.html.j2' not found in {templates}"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_validate_reports_file_line_and_key(case, tmp_path):
    name, old, new, key, message = BROKEN[case]
    campaigns = _copy_config(tmp_path)
    line = _inject(campaigns / name, old, new)
    if case == "unknown-key":
        line += 1  # the unknown key is the second of the two injected lines
    proc = nurture("validate", "campaigns", env=make_env(tmp_path), cwd=tmp_path)
    assert proc.returncode == 1, proc
    expected = f"campaigns/{name}:{line}: {key}: " + message.format(templates=REPO / "templates")
    assert proc.stdout.splitlines() == [expected]
    assert proc.stderr.strip() == "1 problem(s) found."


def test_validate_lists_problems_of_several_files_in_one_pass(tmp_path):
    campaigns = _copy_config(tmp_path)
    unknown_line = _inject(campaigns / "webinar-followup.yaml",
                           "    on_exhausted: hold\n    steps:\n      - id: recording",
                           "    on_exhausted: hold\n    font: comic\n    steps:\n"
                           "      - id: recording") + 1
    stage_line = _inject(campaigns / "inbound-saas.yaml", "    stage: evaluation\n",
                         "    stage: consideration\n")
    proc = nurture("validate", str(campaigns), "--templates", str(REPO / "templates"),
                   env=make_env(tmp_path), cwd=REPO)
    assert proc.returncode == 1
    assert sorted(proc.stdout.splitlines()) == sorted([
        f"{campaigns}/webinar-followup.yaml:{unknown_line}: tracks[0].font: unknown key",
        f"{campaigns}/inbound-saas.yaml:{stage_line}: tracks[1].stage: undefined buying stage "
        "'consideration'; lifecycle.yaml defines evaluation, research (or use `recycled`)"])
    assert proc.stderr.strip() == "2 problem(s) found."


# -- import-leads ---------------------------------------------------------------------------
def test_import_leads_quarantines_bad_rows_and_reimport_is_an_upsert(world):
    root, env = world
    (root / "leads.csv").write_text(LEADS_CSV + BAD_ROWS, encoding="utf-8")
    proc = ok(nurture("import-leads", "leads.csv", env=env, cwd=root))
    assert "3 bad row(s) quarantined to leads.quarantine.csv" in " ".join(proc.stdout.split())
    row = [c.strip() for c in proc.stdout.splitlines() if "│" in c][-1].split("│")
    assert [c.strip() for c in row if c.strip()] == ["8", "5", "0", "3"]

    with open(root / "leads.quarantine.csv", newline="", encoding="utf-8") as fh:
        quarantined = list(csv.DictReader(fh))
    assert [(q["line"], q["email"], q["reason"]) for q in quarantined] == [
        ("7", "not-an-email",
         "invalid email 'not-an-email': an email address must have an @-sign"),
        ("8", "", "email is empty"),
        ("9", "carol@example.com", "company_size 'lots' is not a whole number")]
    assert quarantined[0]["first_name"] == "Bad"  # the whole row is kept for fixing

    assert sorted(r[0] for r in db_rows(root, "SELECT email FROM leads")) == [
        "ada@example.com", "bob@example.com", "dee@example.com", "hot@example.com",
        "pat@example.com"]
    assert db_rows(root, "SELECT company_size, attributes FROM leads "
                         "WHERE email = 'ada@example.com'") == [(250, '{"favourite_colour": '
                                                                      '"blue"}')]

    (root / "again.csv").write_text(
        "email,company,plan\nADA@example.com,Hooli,pro\nzoe@example.com,Zcorp,\n",
        encoding="utf-8")
    again = json.loads(ok(nurture("import-leads", "again.csv", "--json", env=env,
                                  cwd=root)).stdout)
    assert again == {"file": "again.csv", "read": 2, "inserted": 1, "updated": 1,
                     "duplicates": 0, "leads_created": 0, "quarantined": 0,
                     "quarantine_file": None, "reasons": {}}
    assert not (root / "again.quarantine.csv").exists()
    assert db_rows(root, "SELECT count(*) FROM leads") == [(6,)]
    [(first, company, attrs)] = db_rows(root, "SELECT first_name, company, attributes "
                                              "FROM leads WHERE email = 'ada@example.com'")
    assert (first, company, json.loads(attrs)) == (
        "Ada", "Hooli", {"favourite_colour": "blue", "plan": "pro"})


def test_import_leads_json_and_quarantine_option(world):
    root, env = world
    (root / "leads.csv").write_text(LEADS_CSV + BAD_ROWS + "eve@example.com,Eve,,X,,,,"
                                    "website,UTC,red,surplus\n", encoding="utf-8")
    proc = ok(nurture("import-leads", "leads.csv", "--json", "--quarantine", "bad/q.csv",
                      env=env, cwd=root))  # bad/ does not exist yet: it is created
    report = json.loads(proc.stdout)
    assert report == {"file": "leads.csv", "read": 9, "inserted": 5, "updated": 0,
                      "duplicates": 0, "leads_created": 0, "quarantined": 4,
                      "quarantine_file": "bad/q.csv",
                      "reasons": {"invalid_email": 1, "missing_email": 1,
                                  "bad_company_size": 1, "extra_values": 1}}
    lines = (root / "bad" / "q.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("line,reason,email,")
    assert lines[-1].startswith("10,more values than header columns,eve@example.com")
    # the same file again: every good row is an update, nothing new
    again = json.loads(ok(nurture("import-leads", "leads.csv", "--json", "--quarantine",
                                  "bad/q.csv", env=env, cwd=root)).stdout)
    assert (again["inserted"], again["updated"], again["quarantined"]) == (0, 5, 4)
    assert db_rows(root, "SELECT count(*) FROM leads") == [(5,)]


def test_import_leads_without_an_email_column_is_one_clear_error(world):
    root, env = world
    (root / "nocol.csv").write_text("name,company\nZed,Zcorp\n", encoding="utf-8")
    line = one_sentence_error(nurture("import-leads", "nocol.csv", env=env, cwd=root))
    assert line == ("error: nocol.csv: missing required column(s) email in the header row "
                    "(found: name, company)")
    line = one_sentence_error(nurture("import-leads", "absent.csv", env=env, cwd=root))
    assert line == "error: absent.csv: file not found"
    (root / "bad.csv").write_text("email\nnot-an-email\n", encoding="utf-8")
    (root / "plainfile").write_text("", encoding="utf-8")
    line = one_sentence_error(nurture("import-leads", "bad.csv", "--quarantine",
                                      "plainfile/q.csv", env=env, cwd=root))
    assert line.startswith("error: plainfile/q.csv: cannot write the quarantine file")
    assert db_rows(root, "SELECT count(*) FROM leads") == [(0,)]


# -- activities import ----------------------------------------------------------------------
def test_activities_import_quarantines_bad_lines_and_dedupes(world):
    root, env = world
    (root / "leads.csv").write_text(LEADS_CSV, encoding="utf-8")
    ok(nurture("import-leads", "leads.csv", env=env, cwd=root))
    lines = [json.dumps(a) for a in ACTIVITIES]
    lines.insert(1, '{"id": "x1", "email": "ada@example.com", "type": "page_view", '
                    '"occurred_at": ')  # truncated: malformed JSON
    lines += ['{"id": "x2", "email": "ada@example.com", "type": "Page View", '
              '"occurred_at": "2026-10-31T11:00:00Z"}',
              "",
              json.dumps(ACTIVITIES[0])]  # the same id again in one file
    (root / "acts.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    report = json.loads(ok(nurture("activities", "import", "acts.jsonl", "--json", env=env,
                                   cwd=root)).stdout)
    assert report == {"file": "acts.jsonl", "read": 6, "inserted": 3, "updated": 0,
                      "duplicates": 1, "leads_created": 1, "quarantined": 2,
                      "quarantine_file": "acts.quarantine.jsonl",
                      "reasons": {"invalid_json": 1, "invalid_type": 1}}
    bad = [json.loads(x) for x in (root / "acts.quarantine.jsonl").read_text().splitlines()]
    assert [(b["line"], b["reason"]) for b in bad] == [
        (2, "invalid JSON: Expecting value"),
        (5, "invalid type 'Page View' (lower_snake_case expected)")]
    assert bad[0]["raw"] == lines[1]
    assert db_rows(root, "SELECT a.external_id, l.email FROM activities a JOIN leads l "
                         "ON l.id = a.lead_id ORDER BY a.external_id") == [
        ("a1", "ada@example.com"), ("e1", "eve@example.com"), ("h1", "hot@example.com")]

    proc = ok(nurture("activities", "import", "acts.jsonl", env=env, cwd=root))
    cells = [c.strip() for c in proc.stdout.splitlines() if "│" in c][-1].split("│")
    assert [c.strip() for c in cells if c.strip()] == ["6", "0", "4", "0", "2"]
    assert db_rows(root, "SELECT count(*) FROM activities") == [(3,)]


# -- the cycle (two real Prefect flow runs for the whole file) ------------------------------
@pytest.fixture(scope="module")
def cycled(tmp_path_factory):
    """Leads and activities imported, then `cycle --as-of … --json` run twice."""
    root = tmp_path_factory.mktemp("cli-cycle")
    env = make_env(root)
    ok(nurture("db", "upgrade", env=env, cwd=root))
    (root / "leads.csv").write_text(LEADS_CSV, encoding="utf-8")
    ok(nurture("import-leads", "leads.csv", env=env, cwd=root))
    (root / "acts.jsonl").write_text("\n".join(json.dumps(a) for a in ACTIVITIES) + "\n",
                                     encoding="utf-8")
    ok(nurture("activities", "import", "acts.jsonl", env=env, cwd=root))
    runs = [ok(nurture("cycle", "--as-of", AS_OF, "--json", env=env, cwd=root, timeout=300))
            for _ in range(2)]
    return root, env, runs


def test_cycle_prints_one_json_summary(cycled):
    _, _, (first, _) = cycled
    summary = json.loads(first.stdout)  # the whole of stdout is one JSON object
    assert {k: summary[k] for k in ("as_of", "dry_run", "leads_scored", "touches_planned",
                                    "touches_sent", "touches_failed", "mqls", "recycled",
                                    "skipped")} == {
        "as_of": AS_OF, "dry_run": False, "leads_scored": 6, "touches_planned": 3,
        "touches_sent": 3, "touches_failed": 0, "mqls": 1, "recycled": 0,
        "skipped": {"became_mql": 1, "no_campaign": 2}}
    assert summary["campaigns"]["inbound-saas"]["sent"] == 2
    assert summary["campaigns"]["webinar-followup"]["sent"] == 1
    assert summary["by_buying_stage"] == {"evaluation": 1, "research": 5}


def test_cycle_again_the_same_day_sends_nothing(cycled):
    root, _, (_, second) = cycled
    summary = json.loads(second.stdout)
    assert (summary["touches_sent"], summary["touches_planned"], summary["mqls"]) == (0, 0, 0)
    # the three leads sleep until their cadence (core.next_check): not even looked at
    assert summary["leads_scored"] == 0 and summary["skipped"] == {}
    assert db_rows(root, "SELECT status, count(*) FROM touches GROUP BY status") == [
        ("sent", 3)]


def test_outbox_holds_one_eml_per_sent_touch(cycled):
    root, _, _ = cycled
    files = sorted((root / "outbox").rglob("*.eml"))
    assert len(files) == 3
    mails = {}
    for f in files:
        raw = f.read_bytes()
        msg = message_from_bytes(raw, policy=default_policy)
        mails[msg["To"].addresses[0].addr_spec] = (raw, msg)
    assert set(mails) == {"ada@example.com", "bob@example.com", "dee@example.com"}
    raw, ada = mails["ada@example.com"]
    assert ada["Subject"] == "Ada, the buyer's guide to lead management"
    assert ada["From"] == "Acme Marketing <marketing@acme.example>"
    assert ada["X-Nurture-Step"] == "buyers-guide"
    assert ada["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # RFC 2369/8058: the header is a URL in angle brackets that mail clients read as is
    assert b"\nList-Unsubscribe: <http://localhost:8000/unsubscribe/" in raw
    url = str(ada["List-Unsubscribe"]).strip("<>")
    html = ada.get_body(("html",)).get_content()
    text = ada.get_body(("plain",)).get_content()
    assert url in html and "Acme Inc., 1 Main Street, Springfield, USA" in text
    _, dee = mails["dee@example.com"]
    assert dee["Subject"] == "Dee, your webinar recording and slides"
    assert dee["Date"] == "Mon, 02 Nov 2026 10:00:00 +0000"
    index = [json.loads(x) for x in (root / "outbox" / "index.jsonl").read_text().splitlines()]
    assert sorted(i["to"] for i in index) == sorted(mails)
    assert (root / "outbox" / "index.html").is_file()


def test_lead_show_json(cycled):
    root, env, _ = cycled
    proc = ok(nurture("lead", "show", "  ADA@example.com", "--json", "--as-of", AS_OF,
                      env=env, cwd=root))
    info = json.loads(proc.stdout)
    assert {k: info[k] for k in ("email", "name", "company", "lifecycle_stage",
                                 "buying_stage", "fit_score", "grade", "campaign", "track",
                                 "suppressed", "activities")} == {
        "email": "ada@example.com", "name": "Ada Lovelace", "company": "Initech",
        "lifecycle_stage": "nurturing", "buying_stage": "research", "fit_score": 45.0,
        "grade": "A", "campaign": "inbound-saas", "track": "education", "suppressed": None,
        "activities": 1}
    assert 0 < info["engagement_score"] < 1  # one page view four days ago, decayed
    assert info["score"] == round(info["fit_score"] + info["engagement_score"], 2)
    assert info["fields"]["favourite_colour"] == "blue"
    assert [{k: t[k] for k in ("step", "variant", "status", "sent_at")}
            for t in info["touches"]] == [
        {"step": "buyers-guide", "variant": None, "status": "sent",
         "sent_at": "2026-11-02T09:00:00+00:00"}]
    assert [{k: t[k] for k in ("from", "to", "reason", "actor", "at")}
            for t in info["transitions"]] == [
        {"from": "new", "to": "nurturing", "reason": "enrolled in campaign inbound-saas",
         "actor": "system:daily-cycle", "at": AS_OF}]


def test_lead_show_mql_has_its_handoff(cycled):
    root, env, _ = cycled
    info = json.loads(ok(nurture("lead", "show", "hot@example.com", "--json", env=env,
                                 cwd=root)).stdout)
    assert info["lifecycle_stage"] == "mql" and info["touches"] == []
    assert [(h["owner"], h["status"], h["sla_due_at"]) for h in info["handoffs"]] == [
        ("ana@acme.example", "pending", "2026-11-04T08:00:00+00:00")]
    assert info["transitions"][-1]["to"] == "mql"


def test_lead_show_text(cycled):
    root, env, _ = cycled
    proc = ok(nurture("lead", "show", "bob@example.com", env=env, cwd=root))
    assert proc.stdout.startswith("Bob <bob@example.com> — Hooli")
    assert "buyers-guide" in proc.stdout and "new → nurturing" in proc.stdout


def test_lead_show_unknown_email(cycled):
    root, env, _ = cycled
    for extra in ((), ("--json",)):
        proc = nurture("lead", "show", "Nobody@Example.com", *extra, env=env, cwd=root)
        assert one_sentence_error(proc) == "error: no lead with email 'nobody@example.com'"
        assert proc.stdout == ""


def test_cycle_rejects_a_bad_as_of_before_running(cycled):
    root, env, _ = cycled
    line = one_sentence_error(nurture("cycle", "--as-of", "yesterday", env=env, cwd=root))
    assert line == ("error: --as-of 'yesterday' is not an ISO 8601 date or datetime "
                    "(e.g. 2026-11-23T08:00:00Z)")


def test_report_html_creates_the_directory_it_writes_into(world):
    """`--out` into a directory that does not exist yet: written, not a traceback."""
    root, env = world
    out = root / "reports" / "2026-11" / "results.html"
    proc = ok(nurture("report", "html", "--out", str(out), env=env, cwd=root))
    assert out.is_file() and "<html" in out.read_text()
    assert str(out) in proc.stdout
