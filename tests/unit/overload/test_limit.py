"""Adaptive concurrency limit: bounds, shrink on latency/stress/drops, regrowth, admission."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailfort.overload.limit import AdaptiveLimit, LimitConfig, Token

CFG = LimitConfig(initial_limit=50, min_limit=2, max_limit=200)
BASE = 0.020  # healthy latency, seconds

latencies = st.floats(min_value=0.0, max_value=30.0, allow_nan=False)


def saturated_samples(limit: AdaptiveLimit, latencies: list[float], now: float = 0.0) -> None:
    """Release one sample per latency while keeping the limit full (the node is saturated)."""
    held: list[Token] = []
    for latency in latencies:
        while (token := limit.acquire(now)) is not None:
            held.append(token)
        if not held:  # limit shrank below what we hold: nothing to release
            break
        held.pop(0).release(now, latency)
    for token in held:
        token.ignore()


def warmed(config: LimitConfig = CFG, samples: int = 50) -> AdaptiveLimit:
    limit = AdaptiveLimit(config)
    saturated_samples(limit, [BASE] * samples)
    return limit


operations = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.just(0.0), st.booleans()),
        st.tuples(st.just("release"), latencies, st.booleans()),
        st.tuples(st.just("stress"), st.floats(min_value=0.0, max_value=5.0), st.booleans()),
    ),
    max_size=300,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_bounds_and_admission_hold_under_any_sequence(
    ops: list[tuple[str, float, bool]],
) -> None:
    limit = AdaptiveLimit(CFG)
    held: list[Token] = []
    now = 0.0
    for kind, value, flag in ops:
        now += 0.01
        if kind == "acquire":
            before = limit.in_flight
            token = limit.acquire(now)
            if token is None:
                assert before >= limit.limit
            else:
                held.append(token)
                assert limit.in_flight <= limit.limit  # never more admitted than the limit
        elif kind == "release" and held:
            held.pop(0).release(now, value, dropped=flag)
        elif kind == "stress":
            limit.observe_stress(now, value)
        assert CFG.min_limit <= limit.limit <= CFG.max_limit
        assert CFG.min_limit <= limit.estimate <= CFG.max_limit
        assert limit.in_flight == len(held)


@settings(max_examples=100, deadline=None)
@given(
    factor=st.floats(min_value=2.0, max_value=100.0),
    samples=st.integers(min_value=5, max_value=60),
    warm=st.integers(min_value=CFG.warmup, max_value=200),
)
def test_latency_above_baseline_shrinks_the_limit(factor: float, samples: int, warm: int) -> None:
    limit = warmed(samples=warm)
    before = limit.estimate
    saturated_samples(limit, [BASE * factor] * samples)
    assert limit.estimate < before or before == CFG.min_limit
    assert limit.limit <= int(before)


@settings(max_examples=100, deadline=None)
@given(
    factor=st.floats(min_value=1.51, max_value=100.0),
    warm=st.integers(min_value=CFG.warmup, max_value=200),
)
def test_never_grows_while_latency_exceeds_tolerance(factor: float, warm: int) -> None:
    """Stepwise form: any sample above tolerance x baseline never raises the limit.

    (The baseline itself drifts towards a sustained new latency over ~long_window samples, as
    in Gradient2; the absolute stress target is what keeps a persistently slow store in check.)
    """
    limit = warmed(samples=warm)
    held = [t for _ in range(CFG.max_limit) if (t := limit.acquire(0.0)) is not None]
    for token in held:
        before = limit.estimate
        token.release(0.0, BASE * factor)
        if BASE * factor > CFG.tolerance * limit.baseline_latency:
            assert limit.estimate <= before


@settings(max_examples=100, deadline=None)
@given(samples=st.integers(min_value=1, max_value=100))
def test_healthy_latency_with_saturation_grows_back(samples: int) -> None:
    limit = warmed()
    saturated_samples(limit, [BASE * 20] * 40)
    shrunk = limit.estimate
    assert shrunk < 50
    saturated_samples(limit, [BASE] * samples)
    assert limit.estimate > shrunk
    saturated_samples(limit, [BASE] * 400)
    assert limit.limit == CFG.max_limit


def test_no_growth_while_app_limited() -> None:
    limit = AdaptiveLimit(CFG)
    for i in range(500):  # one request at a time, always fast
        token = limit.acquire(float(i))
        assert token is not None
        token.release(float(i), BASE)
    assert limit.limit == CFG.initial_limit


@settings(max_examples=200, deadline=None)
@given(st.lists(latencies, min_size=1, max_size=100), latencies, st.booleans())
def test_one_sample_moves_the_limit_only_a_little(
    history: list[float], latency: float, dropped: bool
) -> None:
    """Smoothing: no single sample, however extreme, swings the limit (no flapping)."""
    limit = AdaptiveLimit(CFG)
    saturated_samples(limit, history)
    tokens = [t for _ in range(CFG.max_limit) if (t := limit.acquire(0.0)) is not None]
    before = limit.estimate
    tokens[0].release(0.0, latency, dropped=dropped)
    max_drop = max(CFG.smoothing * (1 - CFG.min_gradient), 1 - CFG.backoff_ratio)
    assert limit.estimate >= min(before, before * (1 - max_drop) - 1e-9, CFG.max_limit)
    assert limit.estimate <= before + CFG.smoothing * CFG.queue_size + 1e-9


def test_jitter_within_tolerance_does_not_shrink() -> None:
    limit = warmed()
    before = limit.estimate
    saturated_samples(limit, [BASE * 0.8, BASE * 1.4] * 50)
    assert limit.estimate >= before


def test_slow_disk_stress_shrinks_even_with_fast_requests() -> None:
    limit = warmed()
    before = limit.estimate
    limit.observe_stress(0.0, 2.0)  # store commits take 2 s
    saturated_samples(limit, [BASE] * 30)
    assert limit.estimate < before
    # A persistently slow disk keeps shrinking even after the latency baseline has adapted.
    saturated_samples(limit, [BASE] * 300)
    assert limit.limit == CFG.min_limit
    # Stress recovers (smoothed over time): healthy samples grow the limit again.
    for second in range(1, 60):
        limit.observe_stress(float(second), 0.001)
    low = limit.estimate
    saturated_samples(limit, [BASE] * 30)
    assert limit.estimate > low


def test_stress_is_smoothed_over_time() -> None:
    limit = AdaptiveLimit(CFG)
    limit.observe_stress(0.0, 0.01)
    limit.observe_stress(0.1, 10.0)  # one 10 s spike after 0.1 s moves the average ~2 %
    assert limit.stress_seconds is not None
    assert limit.stress_seconds < 0.3
    limit.observe_stress(100.0, 10.0)  # sustained: the average follows
    assert limit.stress_seconds > 9.0


def test_drops_back_off_multiplicatively() -> None:
    limit = warmed()
    before = limit.estimate
    tokens = [t for _ in range(10) if (t := limit.acquire(0.0)) is not None]
    tokens[0].release(0.0, 0.0, dropped=True)
    assert limit.estimate == pytest.approx(before * CFG.backoff_ratio)
    baseline = limit.baseline_latency
    tokens[1].release(0.0, 60.0, dropped=True)  # a timeout does not poison the baseline
    assert limit.baseline_latency == baseline


def test_refuses_at_limit_and_keeps_admitted_work() -> None:
    limit = AdaptiveLimit(LimitConfig(initial_limit=3, min_limit=1, max_limit=3))
    tokens = [limit.acquire(0.0) for _ in range(3)]
    assert all(tokens)
    assert limit.acquire(0.0) is None
    first = tokens[0]
    assert first is not None
    first.release(1.0)  # latency defaults to now - acquired_at
    assert limit.in_flight == 2
    assert limit.acquire(1.0) is not None


def test_double_release_is_an_error() -> None:
    limit = AdaptiveLimit()
    token = limit.acquire(0.0)
    assert token is not None
    token.release(0.1, 0.1)
    assert token.released
    with pytest.raises(RuntimeError):
        token.release(0.2, 0.1)
    with pytest.raises(RuntimeError):
        token.ignore()
    assert limit.in_flight == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_limit": 0},
        {"initial_limit": 5000},
        {"smoothing": 0.0},
        {"min_gradient": 1.0},
        {"tolerance": 0.5},
        {"stress_target_seconds": 0.0},
    ],
)
def test_bad_config_is_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LimitConfig(**kwargs)  # type: ignore[arg-type]
