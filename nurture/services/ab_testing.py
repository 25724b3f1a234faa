"""The A/B test of the results reports: per multi-variant step, each variant against the
control with a two-proportion z-test and a Newcombe interval of the difference.

Pure arithmetic on the steps report's rows, so every figure can be checked by hand.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from nurture.core.domain import MQL

MIN_SAMPLE = 100           # A/B: sends per variant below which the test is not trusted
ALPHA = 0.05
Z = 1.959963984540054      # two-sided 95 %


def ratio(a: float, b: float, places: int = 4) -> float | None:
    return round(a / b, places) if b else None


def wilson(x: int, n: int, z: float = Z) -> tuple[float, float]:
    """Wilson score interval for x successes in n trials."""
    if n == 0:
        return 0.0, 1.0
    p = x / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def newcombe(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) for p2 − p1."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1)
    l2, u2 = wilson(x2, n2)
    d = p2 - p1
    return (d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2),
            d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2))


def z_test(x1: int, n1: int, x2: int, n2: int) -> tuple[float | None, float | None]:
    """Two-proportion z-test, pooled; (z, two-sided p). None when undefined."""
    if not n1 or not n2:
        return None, None
    pool = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pool * (1 - pool) * (1 / n1 + 1 / n2))
    if se == 0:
        return None, None
    z = (x2 / n2 - x1 / n1) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def ab_report(steps: list[dict[str, Any]], metric: str = "click") -> list[dict[str, Any]]:
    """Per multi-variant step: each variant's rates, and against the control (the first
    variant by id) the difference, its 95 % CI, the z-test and a sample warning."""
    key = {"click": "clicks", "open": "opens", "mql": MQL}[metric]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in steps:
        if r["variant"]:
            groups[(r["campaign"], r["track"], r["step"])].append(r)
    out = []
    for (campaign, track, step), vs in groups.items():
        if len(vs) < 2:
            continue
        vs = sorted(vs, key=lambda r: r["variant"])
        variants = [_variant(v, vs[0], key) for v in vs]
        small = [v["variant"] for v in variants
                 if v["sent"] < MIN_SAMPLE or v["successes"] < 5
                 or v["sent"] - v["successes"] < 5]
        out.append({"campaign": campaign, "track": track, "step": step, "metric": metric,
                    "test": "two-proportion z-test; 95% Newcombe CI of the difference",
                    "variants": variants, "min_sample_warning": bool(small),
                    "verdict": _verdict(variants, small)})
    return out


def _variant(v: dict[str, Any], ctrl: dict[str, Any], key: str) -> dict[str, Any]:
    """One variant's rate and interval; against the control, the difference and the test."""
    x1, n1 = ctrl[key], ctrl["sent"]
    x, n = v[key], v["sent"]
    lo, hi = wilson(x, n)
    item = {"variant": v["variant"], "sent": n, "successes": x,
            "rate": ratio(x, n), "rate_ci": [round(lo, 4), round(hi, 4)],
            "open_rate": v["open_rate"], "click_rate": v["click_rate"],
            "mql_rate": v["mql_rate"], "control": v is ctrl}
    if v is not ctrl and n and n1:
        z, p = z_test(x1, n1, x, n)
        dlo, dhi = newcombe(x1, n1, x, n)
        item.update(difference=round(x / n - x1 / n1, 4),
                    difference_ci=[round(dlo, 4), round(dhi, 4)],
                    z=None if z is None else round(z, 3),
                    p_value=None if p is None else round(p, 4),
                    significant=p is not None and p < ALPHA)
    return item


def _verdict(variants: list[dict[str, Any]], small: list[str]) -> str:
    if small:
        return "not enough data (" + ", ".join(small) + ")"
    if any(v.get("significant") for v in variants):
        best = max(variants, key=lambda v: v["rate"] or 0)
        return f"{best['variant']} leads (significant at {ALPHA:g})"
    return "no significant difference"
