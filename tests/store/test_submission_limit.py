"""The sliding hour of the submission bound on both engines: the previous hour weighs in by the
share of it still inside the last 60 minutes; a message not stored gives its count back."""

from __future__ import annotations

from mailfort.protocol.smtp import replies as R
from mailfort.server.submission_limit import HOUR, SubmissionLimit, Taken
from mailfort.store.api import Store

USER = "u@example.test"
START = 1_000 * HOUR


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_the_previous_hour_weighs_in_as_the_window_slides(store: Store) -> None:
    clock = Clock(START + 0.5 * HOUR)
    limit = SubmissionLimit(store, messages_per_hour=10, recipients_per_hour=0, clock=clock)
    for _ in range(10):
        usage = await limit.usage(USER)
        assert limit.refusal(USER, usage, 1, "ip") is None
        assert isinstance(await limit.take(USER, usage, 1, "ip"), Taken)
    usage = await limit.usage(USER)
    assert limit.refusal(USER, usage, 0, "ip") == R.SENDING_RATE_EXCEEDED
    # 18 minutes into the next hour, 42 of the last hour's minutes still count: 7 of 10.
    clock.now = START + 1.3 * HOUR
    usage = await limit.usage(USER)
    assert (usage.carried_messages, usage.messages) == (7, 0)
    taken = [await limit.take(USER, await limit.usage(USER), 1, "ip") for _ in range(4)]
    assert [isinstance(t, Taken) for t in taken] == [True, True, True, False]
    clock.now = START + 1.35 * HOUR  # 6.5 is rounded up: still no room
    assert await limit.take(USER, await limit.usage(USER), 1, "ip") == R.SENDING_RATE_EXCEEDED
    # A message the store then failed to commit does not count.
    first = taken[0]
    assert isinstance(first, Taken)
    await limit.give_back(first)
    assert isinstance(await limit.take(USER, await limit.usage(USER), 1, "ip"), Taken)
    # Two hours on, nothing is carried any more.
    clock.now = START + 3 * HOUR
    usage = await limit.usage(USER)
    assert (usage.carried_messages, usage.messages) == (0, 0)


async def test_a_take_after_the_hour_turned_reads_the_hour_again(store: Store) -> None:
    clock = Clock(START + HOUR - 1)
    limit = SubmissionLimit(store, messages_per_hour=2, recipients_per_hour=3, clock=clock)
    usage = await limit.usage(USER)
    assert isinstance(await limit.take(USER, usage, 2, "ip"), Taken)
    usage = await limit.usage(USER)  # read at MAIL, just before the hour turns
    clock.now = START + HOUR + 1
    # Nearly all of the last hour still counts: 1 message, 2 recipients; 2 more do not fit.
    assert await limit.take(USER, usage, 2, "ip") == R.SENDING_RATE_EXCEEDED
    assert await store.submission_counts(USER, [START // HOUR + 1]) == {}
    assert isinstance(await limit.take(USER, usage, 1, "ip"), Taken)
    assert await store.submission_counts(USER, [START // HOUR + 1]) == {START // HOUR + 1: (1, 1)}
