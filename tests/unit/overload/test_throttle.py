"""SRE adaptive client throttling: max(0, (requests - K*accepts) / (requests + 1))."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailfort.overload.throttle import AdaptiveThrottle, rejection_probability


def test_formula() -> None:
    assert rejection_probability(0, 0) == 0.0
    assert rejection_probability(100, 100) == 0.0
    assert rejection_probability(100, 50) == 0.0  # K=2: half accepted is still fine
    assert rejection_probability(100, 25) == pytest.approx(50 / 101)
    assert rejection_probability(100, 0) == pytest.approx(100 / 101)
    assert rejection_probability(100, 25, k=4.0) == 0.0


@given(st.integers(0, 10_000), st.integers(0, 10_000), st.floats(1.0, 10.0))
def test_probability_is_in_unit_interval_and_below_one(
    requests: int, accepts: int, k: float
) -> None:
    p = rejection_probability(requests, min(accepts, requests), k)
    assert 0.0 <= p < 1.0


def test_healthy_backend_is_never_throttled() -> None:
    t = AdaptiveThrottle()
    for i in range(1000):
        assert t.allow(float(i) / 10, rand=0.0)
        t.record_accepted(float(i) / 10)
    assert t.rejection_probability(100.0) == 0.0


def test_failing_backend_is_throttled_locally_but_probes_still_pass() -> None:
    rng = random.Random(7)
    t = AdaptiveThrottle(k=2.0, window_seconds=120.0)
    sent = 0
    for i in range(2000):
        if t.allow(i * 0.01, rng.random()):
            sent += 1
            if i % 10 == 0:  # backend accepts ~10 % of what reaches it
                t.record_accepted(i * 0.01)
    requests, _ = t.counts(20.0)
    assert requests == 2000
    assert t.rejection_probability(20.0) > 0.5
    assert 0 < sent < 1000  # most rejected locally, some still go through to detect recovery


def test_rand_boundary_and_requests_counted_even_when_rejected() -> None:
    t = AdaptiveThrottle()
    for _ in range(9):
        t.allow(0.0, rand=0.99)
    p = t.rejection_probability(0.0)
    assert p == pytest.approx(9 / 10)
    assert t.allow(0.0, rand=p)  # reject only when rand < p
    p = t.rejection_probability(0.0)
    assert p == pytest.approx(10 / 11)  # the request counted even though it went through
    assert not t.allow(0.0, rand=p - 1e-9)
    assert t.counts(0.0) == (11, 0)


def test_window_forgets_old_outcomes() -> None:
    t = AdaptiveThrottle(window_seconds=120.0)
    for _ in range(100):
        t.allow(0.0, rand=0.99)
    assert t.rejection_probability(0.0) > 0.9
    assert t.rejection_probability(121.0) == 0.0


def test_bad_k() -> None:
    with pytest.raises(ValueError):
        AdaptiveThrottle(k=0.0)
