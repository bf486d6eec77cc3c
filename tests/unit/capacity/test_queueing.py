"""The closed forms against values worked by hand and against their own definitions."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from mailfort.capacity.queueing import (
    drain_seconds,
    erlang_b,
    erlang_c,
    little_in_system,
    mmc_wait_mean,
    mmc_wait_quantile,
)


def test_erlang_values_worked_by_hand() -> None:
    # c = 2, a = 1.5: B = a²/2 / (1 + a + a²/2) = 1.125/3.625; C = B / (1 − ρ(1 − B)).
    b = 1.125 / 3.625
    assert math.isclose(erlang_b(2, 1.5), b)
    assert math.isclose(erlang_c(2, 1.5), b / (1 - 0.75 * (1 - b)))
    # M/M/1: C = ρ, Wq = ρ / (μ − λ).
    assert math.isclose(erlang_c(1, 0.6), 0.6)
    assert math.isclose(mmc_wait_mean(0.6, 1.0, 1), 0.6 / 0.4)


def test_unstable_queues_never_drain_and_wait_forever() -> None:
    assert erlang_c(4, 4.0) == 1.0
    assert mmc_wait_mean(5.0, 1.0, 4) == math.inf
    assert mmc_wait_quantile(5.0, 1.0, 4, 0.99) == math.inf
    assert drain_seconds(1000, capacity=10, arrivals=10) == math.inf
    assert drain_seconds(0, capacity=10, arrivals=20) == 0.0


def test_little_and_drain() -> None:
    assert little_in_system(50, 0.2) == 10
    assert drain_seconds(250_000, capacity=1100, arrivals=350) == 250_000 / 750


@given(
    servers=st.integers(1, 64),
    load=st.floats(0.01, 0.99),
    rate=st.floats(0.1, 1000),
)
def test_the_p99_wait_is_where_the_tail_is_one_percent(
    servers: int, load: float, rate: float
) -> None:
    arrivals = load * servers * rate
    t = mmc_wait_quantile(arrivals, rate, servers, 0.99)
    c = erlang_c(servers, arrivals / rate)
    tail = c * math.exp(-(servers * rate - arrivals) * t)
    assert (t == 0.0 and c <= 0.01) or math.isclose(tail, 0.01, rel_tol=1e-6)


@given(servers=st.integers(1, 40), load=st.floats(0.01, 0.98), rate=st.floats(0.1, 100))
def test_more_servers_never_wait_longer(servers: int, load: float, rate: float) -> None:
    arrivals = load * servers * rate
    assert mmc_wait_mean(arrivals, rate, servers + 1) <= mmc_wait_mean(arrivals, rate, servers)
    assert 0.0 <= erlang_c(servers, arrivals / rate) <= 1.0
