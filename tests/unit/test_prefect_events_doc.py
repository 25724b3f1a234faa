"""docs/prefect-events.md documents every event kind nurture records, and the automation
example is a valid Prefect automation."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import yaml

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_recorded_event_kind_is_documented():
    import nurture.core.sales as sales
    import nurture.services.planning as cycle

    text = (DOCS / "prefect-events.md").read_text()
    documented = set(re.findall(r"^\| `nurture\.lead\.(\w+)` \|", text, re.M))
    from nurture.core.domain import LeadEventKind

    cycle_kinds = set(cycle.EVENT_KINDS.values()) | {"sla_expired"}
    sales_kinds = {LeadEventKind[name] for name in re.findall(
        r"o\.events\.append\(LeadEventKind\.(\w+)\)", Path(sales.__file__).read_text())}
    assert cycle_kinds | sales_kinds == documented
    assert set(LeadEventKind) == documented  # the vocabulary has no kind nobody emits


def test_the_automation_example_is_a_valid_automation():
    from prefect.events.schemas.automations import AutomationCore

    spec = yaml.safe_load((DOCS / "automations" / "notify-owner-on-mql.yaml").read_text())
    (auto,) = spec["automations"]
    parsed = AutomationCore.model_validate(auto)
    assert parsed.trigger.expect == {"nurture.lead.mql"}
    assert uuid.UUID(str(parsed.actions[0].block_document_id))
