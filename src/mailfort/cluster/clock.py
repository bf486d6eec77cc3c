"""The store's clock as a node reckons it: what leases, locks and heartbeats are written in.

Who owns work is decided by comparing times that different nodes wrote (a lease's end against
now). Each node's own wall clock would make that depend on the clocks agreeing: a node whose
clock steps forward (NTP, a VM resumed) sees every other node's lease as expired and delivers
their mail again; one whose clock is behind leaves a dead node's work stuck and reports live
nodes as dead. So every node reckons in the store's time (PostgreSQL's, the one clock the
cluster shares): a reading of it, carried forward on CLOCK_BOOTTIME, which no step of the wall
clock moves and which counts a suspended machine's sleep, and taken again every few seconds.

The reading is carried forward from when its answer arrived, so `now()` is never later than the
store's time (by at most one round trip): a lease is seen expired late, never early, and a lease
is written a little short, never long. Both are the safe side.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("mailfort.cluster")

RESYNC_SECONDS = 5.0


def _boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class StoreClock:
    def __init__(
        self,
        read: Callable[[], Awaitable[float]],
        *,
        elapsed: Callable[[], float] = _boottime,
        resync_seconds: float = RESYNC_SECONDS,
    ) -> None:
        self.read = read
        self.elapsed = elapsed
        self.resync_seconds = resync_seconds
        self._offset: float | None = None  # store time minus `elapsed()`
        self._last = 0.0

    async def sync(self) -> None:
        """Read the store's clock once (StoreError when it cannot be reached)."""
        store_now = await self.read()
        self._offset = store_now - self.elapsed()

    def now(self) -> float:
        """Seconds since the epoch by the store's clock (the wall clock before the first sync)."""
        if self._offset is None:
            return time.time()
        # A reading that came back slowly sets the reckoning back by up to that round trip; time
        # going backwards would confuse what measures intervals with it (the status evaluator).
        # The last answer was no later than the store's time then, so this one stays so too.
        self._last = max(self._last, self.elapsed() + self._offset)
        return self._last

    async def run(self) -> None:
        """Read the store's clock again every `resync_seconds` until cancelled."""
        while True:
            await asyncio.sleep(self.resync_seconds)
            try:
                await self.sync()
            except Exception as exc:  # the store being away: keep reckoning from the last reading
                log.warning("event=store_clock_failed error=%r", exc)
