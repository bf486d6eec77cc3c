"""The store's clock as a node reckons it: one reading carried forward, never ahead of the store."""

from __future__ import annotations

import pytest

from mailfort.cluster.clock import StoreClock
from mailfort.errors import StoreUnavailable


class Fake:
    """The store's clock and the node's elapsed-time clock, moved by hand."""

    def __init__(self) -> None:
        self.store = 1_800_000_000.0
        self.elapsed = 50.0
        self.trip = 0.0  # how long the reading takes to come back
        self.fail = False

    async def read(self) -> float:
        if self.fail:
            raise StoreUnavailable("down")
        reading = self.store
        self.store += self.trip
        self.elapsed += self.trip
        return reading


async def test_a_reading_is_carried_forward_on_the_elapsed_clock() -> None:
    f = Fake()
    clock = StoreClock(f.read, elapsed=lambda: f.elapsed)
    await clock.sync()
    assert clock.now() == f.store
    f.store += 7.0
    f.elapsed += 7.0
    assert clock.now() == f.store


async def test_the_reckoning_is_never_ahead_of_the_store() -> None:
    """The answer took a while to come back: the reading is older than it arrived, so the node
    sees a lease expire late, never early."""
    f = Fake()
    f.trip = 0.2
    clock = StoreClock(f.read, elapsed=lambda: f.elapsed)
    await clock.sync()
    assert f.store - 0.2 <= clock.now() <= f.store


async def test_without_the_store_the_last_reading_goes_on() -> None:
    f = Fake()
    clock = StoreClock(f.read, elapsed=lambda: f.elapsed)
    await clock.sync()
    f.fail = True
    with pytest.raises(StoreUnavailable):
        await clock.sync()
    f.store += 3.0
    f.elapsed += 3.0
    assert clock.now() == f.store


async def test_a_slow_reading_does_not_set_the_clock_back() -> None:
    f = Fake()
    clock = StoreClock(f.read, elapsed=lambda: f.elapsed)
    await clock.sync()
    first = clock.now()
    f.trip = 2.0
    await clock.sync()
    assert first <= clock.now() <= f.store
