"""The login throttle: counted per address, network and account, before any work is done for
an attempt, and never held against an account's owner on a network the owner logged in from."""

from __future__ import annotations

from mailfort.auth.throttle import (
    AuthThrottle,
    NeedsTrust,
    Reservation,
    Scope,
    ThrottleLimits,
)

LIMITS = ThrottleLimits(
    per_address=3, per_network=5, per_account=4, window=60.0, base_delay=1.0, max_delay=2.5
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(limits: ThrottleLimits = LIMITS) -> tuple[AuthThrottle, Clock]:
    clock = Clock()
    return AuthThrottle(limits, clock=clock), clock


def reserve(
    t: AuthThrottle, ip: str, account: str = "a@x.test", trusted: bool = False
) -> Reservation:
    got = t.reserve(ip)
    assert isinstance(got, Reservation), got
    assert got.include_account(account, trusted=trusted) is None
    return got


def test_failures_per_address_are_delayed_more_each_time_then_refused() -> None:
    t, _ = throttle()
    delays = [reserve(t, "192.0.2.1", f"u{n}@x.test").failed() for n in range(3)]
    assert delays == [1.0, 2.0, 2.5]  # base × failures, capped
    assert t.blocked("192.0.2.1") is Scope.ADDRESS
    assert t.reserve("192.0.2.1") is Scope.ADDRESS
    assert t.blocked("192.0.2.2") is None  # a neighbour has its own count


def test_the_addresses_of_one_network_share_its_count() -> None:
    t, _ = throttle()
    for n in range(5):  # five addresses, one failure each: none at its own limit
        reserve(t, f"192.0.2.{n + 1}", f"u{n}@x.test").failed()
    assert t.blocked("192.0.2.77") is Scope.NETWORK
    assert t.reserve("192.0.2.77") is Scope.NETWORK
    assert t.blocked("198.51.100.1") is None
    # IPv6: one machine owns the whole /64.
    for n in range(5):
        reserve(t, f"2001:db8::{n + 1}", f"w{n}@x.test").failed()
    assert t.blocked("2001:db8::ffff") is Scope.NETWORK


def test_concurrent_attempts_are_counted_before_anything_is_done_for_them() -> None:
    """70 attempts in flight at once get exactly the limits' worth of work: the reservation is
    the count, not the failure that comes later."""
    t, _ = throttle(ThrottleLimits(per_address=10, per_network=1000, per_account=20, window=60))
    got = [t.reserve("192.0.2.1") for _ in range(70)]
    held = [g for g in got if isinstance(g, Reservation)]
    assert len(held) == 10 and got[10:] == [Scope.ADDRESS] * 60
    for r in held:
        r.failed()
    # Spread over many networks, the account's limit is what holds.
    t, _ = throttle(ThrottleLimits(per_address=10, per_network=10, per_account=20, window=60))
    sources = [t.reserve(f"10.{n}.0.1") for n in range(70)]
    assert all(isinstance(r, Reservation) for r in sources)
    answers = [
        r.include_account("victim@x.test", trusted=False)
        for r in sources
        if isinstance(r, Reservation)
    ]
    assert answers[:20] == [None] * 20 and answers[20:] == [Scope.ACCOUNT] * 50


def test_a_success_or_the_platforms_failure_is_not_counted() -> None:
    t, _ = throttle()
    for _ in range(10):
        reserve(t, "192.0.2.1").cancel()  # logged in, or the store could not check it
    assert t.blocked("192.0.2.1") is None and not t.account_full("a@x.test")
    r = reserve(t, "192.0.2.1")
    r.failed()
    r.failed()  # settled once only
    r.cancel()
    assert t.blocked("192.0.2.1") is None
    assert not t.account_full("a@x.test")


def test_failures_expire_with_the_window() -> None:
    t, clock = throttle()
    for _ in range(3):
        reserve(t, "192.0.2.1").failed()
    assert t.blocked("192.0.2.1") is Scope.ADDRESS
    clock.now += 61
    assert t.blocked("192.0.2.1") is None
    assert reserve(t, "192.0.2.1").failed() == 1.0  # the delay starts over too


def test_the_account_limit_spares_the_owners_known_networks() -> None:
    t, _ = throttle()
    for n in range(4):  # an attacker spread over four networks: one failure each
        reserve(t, f"10.{n}.0.1", "alice@x.test").failed()
    assert t.account_full("alice@x.test")
    # Undecided until the caller says whether the source is the owner's.
    owner = t.reserve("192.0.2.1")
    assert isinstance(owner, Reservation)
    assert owner.include_account("alice@x.test", trusted=None) is NeedsTrust.ACCOUNT_FULL
    assert owner.include_account("alice@x.test", trusted=True) is None
    owner.cancel()
    stranger = t.reserve("10.9.0.1")
    assert isinstance(stranger, Reservation)
    assert stranger.include_account("alice@x.test", trusted=False) is Scope.ACCOUNT
    stranger.failed()  # refused unchecked, it still counts against its source
    assert t.blocked("10.9.0.1") is None
    # The owner's own typos from a known network do not fill the account's count ...
    for _ in range(2):
        reserve(t, "192.0.2.1", "bob@x.test", trusted=True).failed()
    assert not t.account_full("bob@x.test")
    # ... but still count for the address: a known network is not a licence to guess.
    reserve(t, "192.0.2.1", "bob@x.test", trusted=True).failed()
    assert t.reserve("192.0.2.1") is Scope.ADDRESS
    # Below the account's limit nobody needs to know the source.
    other = t.reserve("198.51.100.1")
    assert isinstance(other, Reservation)
    assert other.include_account("carol@x.test", trusted=None) is None


def test_memory_is_bounded() -> None:
    t = AuthThrottle(LIMITS, clock=Clock(), max_tracked=100)
    for n in range(1000):
        reserve(t, f"10.{n // 250}.{n % 250}.1", f"u{n}@x.test").failed()
    assert t.tracked <= 300
    # A reservation whose keys were dropped meanwhile settles without harm.
    r = reserve(t, "192.0.2.1")
    for n in range(300):
        reserve(t, f"10.200.{n % 250}.{n // 250 + 1}", f"v{n}@x.test").cancel()
    r.failed()
    assert t.tracked <= 300
