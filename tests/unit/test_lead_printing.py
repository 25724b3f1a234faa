"""`nurture lead show` prints data, never interprets it: rule text and lead fields with
[brackets] (rich markup syntax) appear as written."""

from __future__ import annotations

from rich.console import Console

from nurture.entrypoints.cli.tables import print_lead


def test_brackets_in_rules_and_lead_data_are_printed_literally():
    info = {
        "name": "Ada [bold]Lovelace", "email": "ada@example.com", "company": "[red]Acme",
        "lifecycle_stage": "nurturing", "recycle_count": 0, "buying_stage": "research",
        "score": 10.0, "fit_score": 10.0, "engagement_score": 0.0, "grade": "C",
        "campaign": "inbound-saas", "track": "education", "suppressed": None,
        "recycle_until": None,
        "score_breakdown": {"fit": [{"rule": "industry in [software, fintech]",
                                     "points": 10.0}], "engagement": {}},
        "touches": [{"campaign": "inbound-saas", "track": "education", "step": "buyers-guide",
                     "variant": None, "status": "sent", "sent_at": "2026-11-02T09:00:00",
                     "send_at": None, "subject": "The [b]guide[/b]", "error": None}],
        "transitions": [{"at": "2026-11-02T07:00:00", "from": "new", "to": "nurturing",
                         "reason": "grade in [a, b]", "note": None, "actor": "system"}],
        "handoffs": [],
    }
    console = Console(record=True, width=200)
    print_lead(info, console)
    out = console.export_text()
    for text in ("Ada [bold]Lovelace", "[red]Acme", "industry in [software, fintech]",
                 "The [b]guide[/b]", "grade in [a, b]"):
        assert text in out
