"""Run summaries as tables: rows for Prefect artifacts, markdown, and rich for terminals."""

from __future__ import annotations

from typing import Any


def _skips(skipped: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(skipped.items(), key=lambda kv: -kv[1])) or "-"


def _stages(stages: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in stages.items()) or "-"


def summary_table_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per campaign plus a total — the Prefect table artifact."""
    rows = []
    for name, c in summary["campaigns"].items():
        rows.append({"campaign": name, "scored": c["scored"],
                     "by_buying_stage": _stages(c["by_buying_stage"]), "due": c["due"],
                     "sent": c["sent"], "failed": c["failed"],
                     "skipped": _skips(c["skipped"]), "mqls": c["mqls"],
                     "recycled": c["recycled"]})
    rows.append({"campaign": "TOTAL", "scored": summary["leads_scored"],
                 "by_buying_stage": _stages(summary["by_buying_stage"]),
                 "due": summary["touches_planned"], "sent": summary["touches_sent"],
                 "failed": summary["touches_failed"], "skipped": _skips(summary["skipped"]),
                 "mqls": summary["mqls"], "recycled": summary["recycled"]})
    return rows


def summary_markdown(summary: dict[str, Any]) -> str:
    rows = summary_table_rows(summary)
    head = ["campaign", "scored", "by buying stage", "due", "sent", "failed", "skipped",
            "MQLs", "recycled"]
    lines = [f"# Nurture cycle {summary['as_of'][:10]}" + (" (dry run)" if summary["dry_run"]
                                                          else ""),
             "",
             f"**{summary['leads_scored']}** leads scored, **{summary['touches_sent']}** "
             f"touches sent, **{summary['mqls']}** MQLs handed to sales, "
             f"**{summary['recycled']}** recycled.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(str(v) for v in r.values()) + " |")
    return "\n".join(lines) + "\n"


def print_summary(summary: dict[str, Any], console=None) -> None:
    """A readable table on the terminal."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    title = f"Nurture cycle as of {summary['as_of'][:16].replace('T', ' ')} UTC"
    if summary["dry_run"]:
        title += " (dry run: nothing written or sent)"
    table = Table(title=title, title_justify="left")
    for col, just in (("campaign", "left"), ("scored", "right"), ("by buying stage", "left"),
                      ("due", "right"), ("sent", "right"), ("failed", "right"),
                      ("skipped", "left"), ("MQLs", "right"), ("recycled", "right")):
        table.add_column(col, justify=just)
    rows = summary_table_rows(summary)
    for i, r in enumerate(rows):
        table.add_row(*[escape(str(v)) for v in r.values()], end_section=i == len(rows) - 2,
                      style="bold" if r["campaign"] == "TOTAL" else None)
    console.print(table)
