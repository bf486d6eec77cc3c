"""The lag-driven limit: shrinks while the loop is late, grows only while used and healthy."""

from __future__ import annotations

import pytest

from mailfort.overload.lag_limit import LagLimit, LagLimitConfig


def test_saturation_shrinks_it_to_its_minimum_and_no_further() -> None:
    limit = LagLimit(LagLimitConfig(initial=100, minimum=10, maximum=1000))
    for _ in range(100):
        limit.observe(0.5, 100)
    assert limit.limit == 10


def test_it_grows_only_when_healthy_and_used_and_never_past_its_maximum() -> None:
    limit = LagLimit(LagLimitConfig(initial=100, minimum=10, maximum=150))
    limit.observe(0.0, 10)  # healthy, hardly used: no evidence it needs more
    assert limit.limit == 100
    limit.observe(0.05, 100)  # between target and high: holds
    assert limit.limit == 100
    limit.observe(0.0, 90)  # healthy and used
    assert limit.limit == 106
    for _ in range(50):
        limit.observe(0.0, limit.limit)
    assert limit.limit == 150


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        LagLimitConfig(initial=5, minimum=10)
    with pytest.raises(ValueError):
        LagLimitConfig(target_lag=0.2, high_lag=0.1)
