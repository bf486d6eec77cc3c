"""Connection admission: per address, per network (share and rate), per node; and the budget that
bounds what refusing may cost."""

from __future__ import annotations

from mailfort.server.admission import ConnectionLimiter, Refusal
from mailfort.server.listener import RefusalBudget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_address_then_network_then_node() -> None:
    limiter = ConnectionLimiter(max_total=8, max_per_ip=2, network_share=0.5)  # 4 per network
    assert limiter.admit("192.0.2.1") is None
    assert limiter.admit("192.0.2.1") is None
    assert limiter.admit("192.0.2.1") is Refusal.IP_FULL
    assert limiter.admit("192.0.2.2") is None
    assert limiter.admit("192.0.2.3") is None
    assert limiter.admit("192.0.2.4") is Refusal.NETWORK_FULL  # the /24 holds its 4
    for n in range(4):
        assert limiter.admit(f"198.51.{n}.1") is None
    assert limiter.admit("203.0.113.1") is Refusal.NODE_FULL
    assert limiter.refused[Refusal.NETWORK_FULL] == 1
    limiter.release("192.0.2.2")
    assert limiter.admit("192.0.2.9") is None  # the network has room again
    assert limiter.total == 8


def test_a_share_of_one_is_the_node_bound_not_a_network_one() -> None:
    limiter = ConnectionLimiter(max_total=3, max_per_ip=3, network_share=1.0)
    assert [limiter.admit("192.0.2.1") for _ in range(3)] == [None, None, None]
    assert limiter.admit("192.0.2.2") is Refusal.NODE_FULL


def test_ipv6_clients_count_per_64() -> None:
    limiter = ConnectionLimiter(max_total=8, max_per_ip=8, network_share=0.25)
    assert limiter.admit("2001:db8:1:2::1") is None
    assert limiter.admit("2001:db8:1:2:ffff::9") is None
    assert limiter.admit("2001:db8:1:2::3") is Refusal.NETWORK_FULL
    assert limiter.admit("2001:db8:1:3::1") is None


def test_a_network_that_connects_too_fast_is_refused_until_its_bucket_refills() -> None:
    clock = Clock()
    limiter = ConnectionLimiter(max_total=1000, max_per_ip=1000, network_rate=10.0, clock=clock)
    admitted = 0
    for n in range(30):  # a burst: one second's worth (10) gets in
        if limiter.admit(f"192.0.2.{n % 200 + 1}") is None:
            admitted += 1
    assert admitted == 10
    assert limiter.refused[Refusal.NETWORK_FULL] == 20
    assert limiter.admit("198.51.100.1") is None  # other networks have their own bucket
    clock.now += 0.5
    assert sum(limiter.admit("192.0.2.77") is None for _ in range(10)) == 5
    clock.now += 60.0  # a quiet minute saves up one second's worth, no more
    assert sum(limiter.admit("192.0.2.78") is None for _ in range(30)) == 10


def test_refusing_spends_a_budget_per_window() -> None:
    clock = Clock()
    budget = RefusalBudget(0.1, window=0.1, clock=clock)  # 10 ms of every 100 ms
    assert not budget.exhausted
    budget.spend(0.006)
    assert not budget.exhausted
    budget.spend(0.005)
    assert budget.exhausted
    end = budget.window_end
    assert end == clock.now + 0.1
    clock.now = end
    assert not budget.exhausted  # a new window
