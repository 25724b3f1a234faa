"""The `nurture simulate --out` page: a simulation's totals, daily charts and day-by-day table,
side by side with a baseline (and their differences) when there is one."""

from __future__ import annotations

from typing import Any

from nurture.views.html_kit import esc, page


def _chart(series: dict[str, list[int]], title: str) -> str:
    """A small inline-SVG line chart (no library, no network)."""
    w, h, pad = 640, 200, 30
    n = max((len(v) for v in series.values()), default=1)
    top = max([1] + [max(v) for v in series.values() if v])
    colors = ["#2f5bea", "#f59e0b", "#10b981", "#ef4444"]
    lines = []
    for i, (name, values) in enumerate(series.items()):
        pts = " ".join(f"{pad + (w - 2 * pad) * j / max(1, n - 1):.1f},"
                       f"{h - pad - (h - 2 * pad) * v / top:.1f}" for j, v in enumerate(values))
        lines.append(f'<polyline fill="none" stroke="{colors[i % 4]}" stroke-width="2" '
                     f'points="{pts}"><title>{name}</title></polyline>')
    legend = " ".join(f'<span style="color:{colors[i % 4]}">■ {name}</span>'
                      for i, name in enumerate(series))
    return (f'<figure class="card"><figcaption><b>{title}</b> · {legend}</figcaption>'
            f'<svg viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="{title}">'
            f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#cbd5e1"/>'
            f'<text x="2" y="{pad}" font-size="11" fill="#6b7280">{top}</text>'
            f'<text x="2" y="{h - pad}" font-size="11" fill="#6b7280">0</text>'
            f'{"".join(lines)}</svg></figure>')


def _row(name: str, values: list, diff: bool) -> str:
    """One compared figure; with two runs, their difference (highlighted when not zero)."""
    cells = "".join(f"<td>{esc(str(v))}</td>" for v in values)
    delta = ""
    if diff and all(isinstance(v, int) for v in values):
        d = values[0] - values[1]
        delta = f'<td class="{"warn" if d else "muted"}">{d:+d}</td>'
    return f"<tr><th>{esc(name)}</th>{cells}{delta}</tr>"


def _keyed_rows(tot: dict[str, Any], labels: list[str], key: str, diff: bool) -> str:
    """One row per name seen under `tot[run][key]` in any run, 0 where a run lacks it."""
    names = sorted({s for lbl in labels for s in tot[lbl][key]})
    return "".join(_row(s, [tot[lbl][key].get(s, 0) for lbl in labels], diff) for s in names)


def _charts(runs: dict[str, Any], labels: list[str]) -> str:
    charts = _chart({f"sent ({lbl})": [d["sent"] for d in runs[lbl]["days"]]
                     for lbl in labels}, "Emails sent per day")
    charts += _chart({f"MQLs ({lbl})": [d["mqls"] for d in runs[lbl]["days"]]
                      for lbl in labels}, "New MQLs per day")
    return charts


def _day_table(label: str, days: list[dict[str, Any]]) -> str:
    day_rows = "".join(
        f"<tr><td>{esc(d['day'])}</td><td>{d['sent']}</td><td>{d['mqls']}</td>"
        f"<td>{d['sla_expired']}</td><td>{d['recycled']}</td>"
        f"<td>{esc(', '.join(f'{k} {v}' for k, v in sorted(d['skips'].items())))}</td></tr>"
        for d in days)
    return (f"<h2>Day by day ({esc(label)})</h2><div class=table-wrap><table><thead>"
            "<tr><th>day</th><th>sent</th><th>MQLs</th><th>SLA expired</th><th>recycled</th>"
            f"<th>skips</th></tr></thead><tbody>{day_rows}</tbody></table></div>")


def _intro(result: dict[str, Any]) -> str:
    return (f'<div class="card">{result["days"]} simulated days from '
            f'{esc(result["start"][:10])}, {esc(str(result["leads"]))} leads, seed '
            f'{result["seed"]}; engagement rates from {esc(result["rates"])}. The real '
            "engine ran on a scratch copy: nothing in the real store changed.</div>")


def report_html(result: dict[str, Any]) -> str:
    """The page for one `simulate` result (a proposed run, perhaps with a baseline)."""
    runs = result["runs"]
    labels = list(runs)
    tot = result["totals"]
    diff = len(labels) == 2
    dhead = "".join(f"<th>{esc(lbl)}</th>" for lbl in labels) + \
        ("<th>difference</th>" if diff else "")

    def table(title: str, rows: str) -> str:
        return (f"<h2>{title}</h2><div class=table-wrap><table><thead><tr><th></th>{dhead}"
                f"</tr></thead><tbody>{rows}</tbody></table></div>")

    summary = "".join(_row(k.replace("_", " "), [tot[lbl][k] for lbl in labels], diff)
                      for k in ("sent", "mqls", "sla_expired", "recycled"))
    body = (_intro(result) + table("Totals", summary) + _charts(runs, labels)
            + table("Emails per campaign / track / step",
                    _keyed_rows(tot, labels, "sends_by_step", diff))
            + table("Leads skipped, by reason (lead-days)",
                    _keyed_rows(tot, labels, "skips", diff))
            + table("Where the leads ended up (lifecycle stage)",
                    _keyed_rows(tot, labels, "funnel", diff))
            + _day_table(labels[0], runs[labels[0]]["days"]))
    return page("Campaign simulation" + (" — proposed vs baseline" if diff else ""), body)
