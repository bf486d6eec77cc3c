"""Retry backoff: exponential, jittered, capped."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from mailfort.queue.schedule import next_delay


@given(
    attempts=st.integers(min_value=0, max_value=10_000),
    base=st.floats(min_value=0.001, max_value=3600),
    cap=st.floats(min_value=0.001, max_value=7 * 86400),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_delay_stays_within_bounds(attempts: int, base: float, cap: float, seed: int) -> None:
    delay = next_delay(attempts, base=base, cap=cap, rng=random.Random(seed))
    ceiling = min(cap, base * 2**attempts) if attempts < 64 else cap
    assert ceiling / 2 <= delay <= ceiling
    assert 0 < delay <= cap


def test_delay_grows_then_caps() -> None:
    rng = random.Random(1)
    assert 30 <= next_delay(0, base=60, cap=3600, rng=rng) <= 60
    assert 60 <= next_delay(1, base=60, cap=3600, rng=rng) <= 120
    assert 480 <= next_delay(4, base=60, cap=3600, rng=rng) <= 960
    for attempts in (6, 7, 50, 10_000):
        assert 1800 <= next_delay(attempts, base=60, cap=3600, rng=rng) <= 3600


def test_delay_is_jittered() -> None:
    rng = random.Random(7)
    delays = {next_delay(3, base=60, cap=3600, rng=rng) for _ in range(50)}
    assert len(delays) > 40
