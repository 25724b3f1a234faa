"""The outbox is the chaos harness's sink: a second send of the same touch must never silently
replace the first message (that would hide a duplicate email). It is kept, and recorded."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nurture.adapters.delivery.outbox import OutboxTransport
from nurture.core.config import Config
from nurture.core.messages import build_message
from nurture.core.rendering import Renderer

UNSUB = "https://nurture.acme.example/unsubscribe/tok"
SEND_AT = datetime(2026, 11, 18, 14, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def make(templates_dir: Path, config: Config):
    renderer = Renderer(templates_dir)
    campaign = next(c for c in config.campaigns if c.name == "inbound-saas")
    track = campaign.tracks[0]

    def _make(touch_id: int, first_name: str):
        step = track.steps[0]
        lead = {"email": "jordan.lee@example.com", "first_name": first_name,
                "last_name": "Lee", "company": "Acme", "title": "VP", "industry": "software",
                "company_size": 50, "country": "US", "timezone": "UTC"}
        rendered = renderer.render(campaign, track, step, None, lead, UNSUB)
        return build_message(touch_id, lead, campaign.sender, rendered, UNSUB, SEND_AT,
                             campaign.name, step.id, None)

    return _make


def test_a_second_send_of_a_touch_keeps_the_first_file_and_is_recorded(make, tmp_path):
    outbox = OutboxTransport(tmp_path)
    (first,) = outbox.send_many([make(7, "Jordan")])
    path = tmp_path / "0000" / "touch-7.eml"
    original = path.read_bytes()
    (again,) = outbox.send_many([make(7, "Someone-Else")])
    assert path.read_bytes() == original  # never overwritten
    assert (again.ok, again.message_id) == (True, first.message_id)
    dups = [json.loads(x) for x in (tmp_path / "duplicates.jsonl").read_text().splitlines()]
    assert [(d["touch_id"], d["to"], d["campaign"], d["file"]) for d in dups] == [
        (7, "jordan.lee@example.com", "inbound-saas", "0000/touch-7.eml")]
    assert not [p for p in tmp_path.rglob("*") if p.suffix == ".tmp"]
    rows = (tmp_path / "index.jsonl").read_text().splitlines()
    assert len(rows) == 1  # the index lists messages written, once each


def test_distinct_touches_write_no_duplicates_file(make, tmp_path):
    outbox = OutboxTransport(tmp_path)
    outbox.send_many([make(1, "A"), make(2, "B")])
    assert not (tmp_path / "duplicates.jsonl").exists()
    assert sorted(p.name for p in tmp_path.rglob("*.eml")) == ["touch-1.eml", "touch-2.eml"]
