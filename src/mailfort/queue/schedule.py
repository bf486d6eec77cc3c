"""When to try a queue item again: exponential backoff with full jitter, capped."""

from __future__ import annotations

import random


def next_delay(
    attempts: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Delay before attempt `attempts + 1`: uniform in [base·2^a / 2, base·2^a], at most `cap`."""
    ceiling = min(cap, base * (2 ** min(attempts, 30)))
    return (rng or random).uniform(ceiling / 2, ceiling)
