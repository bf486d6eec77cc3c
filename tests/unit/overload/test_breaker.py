"""Circuit breaker: every transition, jittered exponential backoff, per-destination registry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailfort.overload.breaker import BreakerConfig, BreakerState, CircuitBreaker, CircuitBreakers

CFG = BreakerConfig(
    failure_threshold=3,
    failure_rate=0.5,
    min_calls=10,
    window_seconds=60.0,
    base_backoff_seconds=10.0,
    max_backoff_seconds=100.0,
    jitter=0.5,
    probe_timeout_seconds=30.0,
)


def breaker(rand: float = 0.0) -> CircuitBreaker:
    return CircuitBreaker(CFG, rand=lambda: rand)


def tripped(rand: float = 0.0, now: float = 0.0) -> CircuitBreaker:
    b = breaker(rand)
    for _ in range(CFG.failure_threshold):
        b.record_failure(now)
    return b


def test_closed_allows_and_successes_reset_consecutive_failures() -> None:
    b = breaker()
    for i in range(20):  # 1 failure in 3: below the rate, never 3 in a row
        assert b.allow(float(i))
        b.record_failure(float(i))
        b.record_success(float(i))
        b.record_success(float(i))
    assert b.state(20.0) is BreakerState.CLOSED


def test_consecutive_failures_open() -> None:
    b = breaker()
    b.record_failure(0.0)
    b.record_failure(0.0)
    assert b.state(0.0) is BreakerState.CLOSED
    b.record_failure(0.0)
    assert b.state(0.0) is BreakerState.OPEN
    assert not b.allow(0.0)
    assert b.retry_at == pytest.approx(10.0)


def test_failure_rate_over_window_opens() -> None:
    b = breaker()
    for i in range(5):  # alternate: never 3 in a row, but 50 % failures over 10 calls
        b.record_success(float(i))
        assert b.state(float(i)) is BreakerState.CLOSED
        b.record_failure(float(i))
    assert b.state(5.0) is BreakerState.OPEN


def test_old_failures_leave_the_window() -> None:
    b = breaker()
    for i in range(4):
        b.record_success(float(i))
        b.record_failure(float(i))
    later = 1000.0
    b.record_success(later)
    b.record_failure(later)  # 1 of 2 in the window: below min_calls
    assert b.state(later) is BreakerState.CLOSED


def test_open_to_half_open_after_backoff_then_one_probe() -> None:
    b = tripped()
    assert b.state(9.99) is BreakerState.OPEN
    assert not b.allow(9.99)
    assert b.state(10.0) is BreakerState.HALF_OPEN
    assert b.retry_at is None
    assert b.allow(10.0)  # the probe
    assert not b.allow(10.0)  # only one probe at a time


def test_half_open_success_closes() -> None:
    b = tripped()
    assert b.allow(10.0)
    b.record_success(11.0)
    assert b.state(11.0) is BreakerState.CLOSED
    assert b.trips == 0
    assert b.allow(11.0)
    # Closing clears the window: two failures later do not reopen it.
    b.record_failure(12.0)
    b.record_failure(12.0)
    assert b.state(12.0) is BreakerState.CLOSED


def test_half_open_failure_reopens_with_doubled_backoff_up_to_cap() -> None:
    b = tripped()
    now = 0.0
    expected = [10.0, 20.0, 40.0, 80.0, 100.0, 100.0]
    for i, backoff in enumerate(expected):
        assert b.retry_at == pytest.approx(now + backoff)
        now += backoff
        assert b.allow(now)
        if i < len(expected) - 1:
            b.record_failure(now)
            assert b.state(now) is BreakerState.OPEN
    assert b.trips == len(expected)


def test_lost_probe_is_given_up_after_timeout() -> None:
    b = tripped()
    assert b.allow(10.0)
    assert not b.allow(39.0)
    assert b.allow(40.0)


def test_results_while_open_are_ignored() -> None:
    b = tripped()
    b.record_success(1.0)
    assert b.state(1.0) is BreakerState.OPEN
    b.record_failure(2.0)
    assert b.retry_at == pytest.approx(10.0)


@given(st.floats(min_value=0.0, max_value=1.0, exclude_max=True), st.integers(1, 200))
def test_jittered_backoff_is_bounded(rand: float, trips: int) -> None:
    b = breaker(rand)
    backoff = b.backoff_seconds(trips, rand)
    full = min(CFG.max_backoff_seconds, CFG.base_backoff_seconds * 2 ** (trips - 1))
    assert full * (1 - CFG.jitter) <= backoff <= full


def test_jitter_spreads_probes() -> None:
    early, late = tripped(rand=0.99), tripped(rand=0.0)
    assert early.retry_at is not None and late.retry_at is not None
    assert early.retry_at < late.retry_at


def test_registry_is_per_destination_and_prunes_idle_closed() -> None:
    breakers = CircuitBreakers(CFG, rand=lambda: 0.0)
    for _ in range(3):
        breakers.record_failure("mx.bad.test", 0.0)
    breakers.record_success("mx.good.test", 0.0)
    assert not breakers.allow("mx.bad.test", 1.0)
    assert breakers.allow("mx.good.test", 1.0)
    assert [d for d, _ in breakers.not_closed(1.0)] == ["mx.bad.test"]
    assert breakers.prune(500.0, idle_seconds=300.0) == 1  # good one; bad is half-open
    assert len(breakers) == 1


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError):
        BreakerConfig(failure_rate=0.0)
    with pytest.raises(ValueError):
        BreakerConfig(base_backoff_seconds=10.0, max_backoff_seconds=1.0)


def test_delivering_means_closed_with_a_recent_success() -> None:
    b = breaker()
    assert not b.delivering(0.0, 60.0)  # nothing known yet: in doubt
    b.record_success(5.0)
    assert b.delivering(30.0, 60.0)
    assert not b.delivering(70.0, 60.0)  # too long ago to vouch for the destination
    b.record_success(70.0)
    for _ in range(CFG.failure_threshold):
        b.record_failure(71.0)
    assert not b.delivering(72.0, 60.0)  # open: not delivering, whatever it did before
