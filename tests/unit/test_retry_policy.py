"""Remote retry policy: backoff bounded by the lifetime, expiry, one delay warning."""

from __future__ import annotations

import random

from mailfort.queue.retry import RetryPolicy
from mailfort.store.records import QueueItem

T0 = 1_800_000_000.0
POLICY = RetryPolicy(lifetime=5 * 86400, delay_warning=4 * 3600, base=300, cap=4000)


def item(attempts: int = 0, warned: bool = False, sender: str = "a@b.test") -> QueueItem:
    return QueueItem(
        id=1,
        queue_id="Q",
        sender=sender,
        recipient="x@remote.test",
        original="x@remote.test",
        account_id=None,
        size=100,
        received=T0,
        attempts=attempts,
        next_attempt=T0,
        last_error=None,
        lease_owner=None,
        lease_until=None,
        warned=warned,
    )


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(7)
    first = [POLICY.next_attempt(item(0), T0, rng) - T0 for _ in range(200)]
    assert all(150 <= d <= 300 for d in first)
    assert max(first) - min(first) > 50  # jittered, not one value
    late = [POLICY.next_attempt(item(20), T0, rng) - T0 for _ in range(200)]
    assert all(2000 <= d <= 4000 for d in late)


def test_the_last_attempt_is_at_the_end_of_the_lifetime() -> None:
    near_end = T0 + 5 * 86400 - 10
    assert POLICY.next_attempt(item(20), near_end) == T0 + 5 * 86400
    assert not POLICY.expired(item(), near_end)
    assert POLICY.expired(item(), T0 + 5 * 86400)
    # Claimed late (the node was down): the next attempt is not in the past.
    late = T0 + 6 * 86400
    assert POLICY.next_attempt(item(20), late) == late


def test_delay_warning_once_and_never_to_the_null_sender() -> None:
    later = T0 + 4 * 3600
    assert not POLICY.should_warn(item(), later - 1)
    assert POLICY.should_warn(item(), later)
    assert not POLICY.should_warn(item(warned=True), later)
    assert not POLICY.should_warn(item(sender=""), later)
    assert not POLICY.should_warn(item(), T0 + 5 * 86400)  # expired: it bounces instead
    never = RetryPolicy(delay_warning=0)
    assert not never.should_warn(item(), T0 + 86400)
