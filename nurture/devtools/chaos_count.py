"""Counting what the chaos harness saw: deliveries at the sinks against the ledger.

A delivery is keyed by (lead, campaign, step, round) — the ledger's uniqueness rule — so a
touch sent twice under two touch ids counts as a duplicate just like one touch sent twice.
Sinks: the outbox directory (one `.eml` per touch id, never overwritten, plus one line in
`duplicates.jsonl` per further attempt) and the fake SendGrid's `--log` file (one line per
accepted message). Reads the database with plain SQL on the tables, not through the store,
so it keeps working while the store's code changes.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import text

Key = tuple[int, str, str, int]
UNSETTLED = ("in_doubt", "unknown", "sending")
MARKETING = ("new", "nurturing", "recycled")


def touch_keys(engine) -> dict[int, tuple[Key, str]]:
    """touch id -> ((lead, campaign, step, round), status)."""
    with engine.connect() as c:
        rows = c.execute(text('SELECT id, lead_id, campaign, step, "round", status '
                              "FROM touches")).all()
    return {r[0]: ((r[1], r[2], r[3], r[4]), r[5]) for r in rows}


def outbox_deliveries(directory: Path) -> list[int]:
    """One touch id per message the outbox received (files + recorded second attempts)."""
    directory = Path(directory)
    out = [int(p.stem.split("-", 1)[1]) for p in directory.glob("*/touch-*.eml")]
    dup = directory / "duplicates.jsonl"
    if dup.exists():
        out += [int(json.loads(line)["touch_id"]) for line in dup.read_text().splitlines()
                if line.strip()]
    return out


def fake_log_deliveries(path: Path, offset: int = 0) -> list[int]:
    """One touch id per message the fake SendGrid accepted after `offset` in its log."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        lines = fh.read().decode("utf-8").splitlines()
    return [int(json.loads(line)["touch_id"]) for line in lines if line.strip()]


def delivered_keys(deliveries: list[int], touches: dict[int, tuple[Key, str]]) -> Counter:
    """How many times each key reached the sink (unknown touch ids count under their id)."""
    out: Counter = Counter()
    for tid in deliveries:
        key = touches[tid][0] if tid in touches else (-tid, "?", "?", 0)
        out[key] += 1
    return out


def count_trial(deliveries: list[int], touches: dict[int, tuple[Key, str]],
                control: set[Key]) -> dict[str, int]:
    """duplicates: extra deliveries of a key; lost: control keys never delivered; unwanted:
    delivered keys the control did not deliver; unsettled: touches left in doubt/sending."""
    got = delivered_keys(deliveries, touches)
    return {
        "delivered": sum(got.values()),
        "duplicates": sum(n - 1 for n in got.values() if n > 1),
        "lost": len(control - set(got)),
        "unwanted": len(set(got) - control),
        "unsettled": sum(1 for _, status in touches.values() if status in UNSETTLED),
    }


def count_round(engine, deliveries: list[int], crm_posts: list[dict[str, Any]],
                before: dict[str, int], accepted: list[int], rejected: list[int],
                send_before) -> dict[str, int]:
    """The counts of one concurrent round. `before` holds the max ids of touches, handoffs
    and transitions when the round started; `accepted`/`rejected` the lead ids whose sales
    feedback was acknowledged; `send_before` the end of the schedule-ahead window."""
    touches = touch_keys(engine)
    got = delivered_keys(deliveries, touches)
    delivered_ids = set(deliveries)
    with engine.connect() as c:
        q = c.execute
        lost_sent = q(text("SELECT id FROM touches WHERE status = 'sent' AND id > :t"),
                      {"t": before["touches"]}).scalars().all()
        stuck = q(text(
            "SELECT count(*) FROM touches t JOIN leads l ON l.id = t.lead_id "
            "LEFT JOIN suppressions s ON s.email = l.email WHERE t.status = 'planned' "
            "AND t.send_at <= :sb AND s.email IS NULL AND l.lifecycle_stage IN "
            "('new', 'nurturing', 'recycled') AND (t.retry_at IS NULL OR t.retry_at <= :sb)"),
            {"sb": send_before}).scalar()
        open_dups = q(text("SELECT COALESCE(sum(n - 1), 0) FROM (SELECT lead_id, count(*) n "
                           "FROM handoffs WHERE status = 'pending' GROUP BY lead_id "
                           "HAVING count(*) > 1) x")).scalar()
        new_dups = q(text("SELECT COALESCE(sum(n - 1), 0) FROM (SELECT lead_id, count(*) n "
                          "FROM handoffs WHERE id > :h GROUP BY lead_id HAVING count(*) > 1) x"),
                     {"h": before["handoffs"]}).scalar()
        mql_dups = q(text("SELECT COALESCE(sum(n - 1), 0) FROM (SELECT lead_id, count(*) n "
                          "FROM transitions WHERE id > :tr AND to_stage = 'mql' "
                          "GROUP BY lead_id HAVING count(*) > 1) x"),
                     {"tr": before["transitions"]}).scalar()
        stages = dict(q(text("SELECT id, lifecycle_stage FROM leads")).all())
        last_tr = dict(q(text(
            "SELECT t.lead_id, t.to_stage FROM transitions t JOIN (SELECT lead_id, max(id) m "
            "FROM transitions GROUP BY lead_id) x ON x.m = t.id WHERE t.lead_id IN "
            "(SELECT lead_id FROM transitions WHERE id > :tr)"),
            {"tr": before["transitions"]}).all())
        pending = Counter(q(text("SELECT lead_id FROM handoffs WHERE status = 'pending'"))
                          .scalars().all())
        handoff_ids = set(q(text("SELECT id FROM handoffs")).scalars().all())
    posts = Counter(p["handoff_id"] for p in crm_posts if p.get("handoff_id") is not None)
    unexplained = sum(1 for lead, to in last_tr.items() if stages.get(lead) != to)
    mql_without = sum(1 for lead, st in stages.items() if st == "mql" and not pending[lead])
    handoff_not_mql = sum(1 for lead in pending if stages.get(lead) != "mql")
    accepted_lost = sum(1 for lead in accepted if stages.get(lead) != "sal")
    rejected_lost = sum(1 for lead in rejected
                        if stages.get(lead) not in ("recycled", "disqualified"))
    return {
        "delivered": sum(got.values()),
        "duplicates": sum(n - 1 for n in got.values() if n > 1),
        "lost": sum(1 for tid in lost_sent if tid not in delivered_ids) + int(stuck or 0),
        "unsettled": sum(1 for _, status in touches.values() if status in UNSETTLED),
        "dup_open_handoffs": int(open_dups or 0),
        "dup_handoffs": int(new_dups or 0),
        "dup_mql_transitions": int(mql_dups or 0),
        "crm_posts": sum(posts.values()),
        "dup_crm_posts": sum(n - 1 for n in posts.values() if n > 1),
        "crm_missing": len(handoff_ids - set(posts)),
        "impossible_states": unexplained + mql_without + handoff_not_mql + accepted_lost
        + rejected_lost,
    }


def max_ids(engine) -> dict[str, int]:
    with engine.connect() as c:
        return {t: int(c.execute(text(f"SELECT COALESCE(max(id), 0) FROM {t}")).scalar())
                for t in ("touches", "handoffs", "transitions")}
