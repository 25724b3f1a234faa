"""The demo files written in one streaming pass are byte for byte the list-based ones, and
writing more leads costs no more memory; the steady-state day's sample and fresh activity are
seeded and well formed."""

from __future__ import annotations

import tracemalloc
from datetime import datetime, timedelta

from nurture.devtools.demo_data import (
    DEFAULT_START,
    generate_activities,
    generate_fresh_activities,
    generate_leads,
    sample_leads,
    write_activities_jsonl,
    write_demo_files,
    write_leads_csv,
)


def test_streamed_files_are_the_list_based_files(tmp_path):
    rows = list(generate_leads(700, seed=3, start=DEFAULT_START))
    write_leads_csv(tmp_path / "a.csv", rows)
    n_acts = write_activities_jsonl(tmp_path / "a.jsonl",
                                    generate_activities(rows, DEFAULT_START, 2, seed=3))
    counts = write_demo_files(tmp_path / "b.csv", tmp_path / "b.jsonl", 700, seed=3,
                              start=DEFAULT_START, days=2)
    assert counts == (700, n_acts) and n_acts > 700
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert write_demo_files(tmp_path / "e.csv", tmp_path / "e.jsonl", 0) == (0, 0)
    write_leads_csv(tmp_path / "e2.csv", [])
    assert (tmp_path / "e.csv").read_bytes() == (tmp_path / "e2.csv").read_bytes()


def _peak(tmp_path, n: int) -> int:
    write_demo_files(tmp_path / "warm.csv", tmp_path / "warm.jsonl", 50)  # tables cached
    tracemalloc.start()
    try:
        write_demo_files(tmp_path / f"{n}.csv", tmp_path / f"{n}.jsonl", n)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_writing_more_leads_needs_no_more_memory(tmp_path):
    small, large = _peak(tmp_path, 1000), _peak(tmp_path, 16000)
    # a list of 16,000 lead dicts alone would be well over 10 MB
    assert large < small + 2_000_000, (small, large)


def test_fresh_activity_is_a_seeded_sample_inside_its_day():
    day = DEFAULT_START + timedelta(days=1)
    emails = {r["email"] for r in generate_leads(2000)}
    picked = list(sample_leads(2000, 0.05))
    assert picked == list(sample_leads(2000, 0.05))
    assert 40 < len(picked) < 170 and {p["email"] for p in picked} <= emails
    acts = list(generate_fresh_activities(picked, day))
    assert acts == list(generate_fresh_activities(picked, day))
    assert len({a["id"] for a in acts}) == len(acts) >= len(picked)
    times = [datetime.fromisoformat(a["occurred_at"].replace("Z", "+00:00")) for a in acts]
    assert all(day <= at < day + timedelta(days=1) for at in times)
