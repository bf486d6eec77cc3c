"""Subscription attempts per client address and network, and verifications in flight."""

from __future__ import annotations

from mailfort.status.web.subscribe_limits import AttemptWindow, SubscribeLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_attempts_are_counted_per_address_and_per_network_over_the_window() -> None:
    clock = Clock()
    limits = SubscribeLimits(per_ip=2, per_network=3, window=100, clock=clock)
    net = "192.0.2.0/24"
    assert limits.attempt("192.0.2.1", net) == 0
    assert limits.attempt("192.0.2.1", net) == 0
    assert limits.attempt("192.0.2.1", net) == 100  # the address has had its two
    assert limits.attempt("192.0.2.2", net) == 0  # a neighbour: the network's third
    assert limits.attempt("192.0.2.3", net) == 100  # the network has had its three
    assert limits.attempt("198.51.100.1", "198.51.100.0/24") == 0  # elsewhere: unaffected
    clock.now += 60
    assert limits.attempt("192.0.2.3", net) == 40  # refused attempts are not counted
    clock.now += 41
    assert limits.attempt("192.0.2.3", net) == 0


def test_verifications_in_flight_are_bounded_in_all_and_per_network() -> None:
    limits = SubscribeLimits(max_verifying=8, network_share=0.25)
    assert [limits.start_verifying("a") for _ in range(3)] == [True, True, False]
    assert all(limits.start_verifying(n) for n in ("b", "b", "c", "c", "d", "d"))
    assert not limits.start_verifying("e"), "all eight taken"
    limits.done_verifying("a")
    assert limits.start_verifying("e")


def test_memory_is_bounded_whatever_the_number_of_clients() -> None:
    window = AttemptWindow(3, max_tracked=100)
    for n in range(10_000):
        window.record(f"client{n}")
        window.record(f"client{n}")
    assert len(window._times) == 100
    assert all(len(times) <= 3 for times in window._times.values())
