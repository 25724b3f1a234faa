"""The run report as operators read it in the Prefect UI at 1280 px: a narrow headline table
first (human headers, no empty cells), detail tables below, dry runs marked."""

from __future__ import annotations

from nurture.views.summary import headline_rows, summary_markdown


def _summary(dry_run: bool = False) -> dict:
    def camp(sent, failed, mqls, recycled, retrying=0, in_doubt=0):
        return {"scored": 10, "by_buying_stage": {"evaluating": 4, "researching": 6},
                "due": sent + failed, "sent": sent, "failed": failed,
                "skipped": {"cadence": 3, "not_in_window": 2}, "mqls": mqls,
                "recycled": recycled, "retrying": retrying, "in_doubt": in_doubt}

    return {"as_of": "2026-11-23T07:00:00+00:00", "dry_run": dry_run, "leads_scored": 20,
            "touches_planned": 9, "touches_sent": 7, "touches_failed": 2, "mqls": 3,
            "recycled": 2, "skipped": {"cadence": 6, "not_in_window": 4},
            "by_buying_stage": {"evaluating": 8, "researching": 12},
            "touches_retrying": 1, "touches_in_doubt": 1, "ledger": {},
            "campaigns": {"inbound-saas": camp(5, 1, 2, 1, retrying=1),
                          "webinar-followup": camp(2, 1, 1, 1, in_doubt=1)},
            "seconds": {}, "sla_expired": 1, "sla_expired_by_campaign": {"inbound-saas": 1}}


def test_headline_table_has_seven_narrow_human_columns_and_a_total():
    rows = headline_rows(_summary())
    assert list(rows[0]) == ["Campaign", "Sent", "Failed", "Retrying / in doubt", "MQLs",
                             "Recycled", "SLA expired"]
    assert rows[-1] == {"Campaign": "Total", "Sent": 7, "Failed": 2,
                        "Retrying / in doubt": "1 / 1", "MQLs": 3, "Recycled": 2,
                        "SLA expired": 1}
    assert rows[1]["SLA expired"] == 0  # zero, not an empty cell the UI shows as "•"
    for row in rows:
        assert all(v not in ("", None) for v in row.values())


def test_markdown_puts_the_headline_first_and_keeps_every_table_narrow():
    md = summary_markdown(_summary())
    lines = md.splitlines()
    assert lines[0] == "# Nurture cycle 2026-11-23 07:00 UTC"
    first_table = next(i for i, line in enumerate(lines) if line.startswith("| "))
    assert lines[first_table].startswith("| Campaign | Sent | Failed | Retrying / in doubt |")
    assert lines.index("## Why leads got no touch today") > first_table
    assert "| not in window | 4 |" in md and "| researching | 12 |" in md
    for line in lines:
        if line.startswith("| "):
            assert line.count(" | ") <= 6, line
    assert "by_buying_stage" not in md and "•" not in md


def test_a_dry_run_report_says_so_first():
    md = summary_markdown(_summary(dry_run=True))
    assert md.splitlines()[0].endswith("DRY RUN")
    assert "nothing was written or sent" in md
