"""How the planner writes durations, counts, shares and rates for people."""

from __future__ import annotations

import math

HOUR = 3600.0


def seconds(value: float | None) -> str:
    """A duration in the unit a person reads best; `never` for infinity, `-` for none."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "never"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 2 * HOUR:
        return f"{value / 60:.1f} min"
    return f"{value / HOUR:.1f} h"


def count(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.0f}"


def share(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2%}"


def rate(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:,.1f}/s"
