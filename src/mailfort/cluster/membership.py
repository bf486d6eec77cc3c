"""A node's membership: registered at start, a heartbeat with its load, gone at a clean stop.

The heartbeat is also how a node hears the operator: `mailfort node drain NAME` writes
`state = draining`, the node reads it back with its next heartbeat and calls `on_drain`, which
runs the same orderly stop as SIGTERM. A node that stops heartbeating (killed, frozen, cut off)
is not marked by anyone: readers call it dead once its heartbeat is `DEAD_AFTER` intervals old.
Its queue leases expire on their own and the survivors take the items over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from mailfort.errors import StoreError
from mailfort.store.roles import Cluster

log = logging.getLogger("mailfort.cluster")

# A node whose last heartbeat is older than this many intervals is dead.
DEAD_AFTER = 3


class Membership:
    def __init__(
        self,
        store: Cluster,
        name: str,
        *,
        interval: float,
        load: Callable[[], Mapping[str, object]],
        on_drain: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.name = name
        self.interval = interval
        self.load = load
        self.on_drain = on_drain
        self.clock = clock
        self.draining = False
        self._listeners: list[dict[str, object]] = []

    async def join(self, listeners: Sequence[Mapping[str, object]]) -> None:
        """Register (or come back as) an active node; work starts flowing to it at once."""
        self._listeners = [dict(x) for x in listeners]
        await self.store.register_node(self.name, self._listeners, self.clock())
        log.info("event=node_registered node=%s", self.name)

    async def beat(self) -> str | None:
        """One heartbeat; returns the state the store holds for this node."""
        state = await self.store.heartbeat(self.name, self.load(), self.clock())
        if state is None:  # the row was removed under us: come back
            await self.store.register_node(self.name, self._listeners, self.clock())
            return "active"
        if state in ("draining", "gone") and not self.draining:
            self.draining = True
            log.info("event=node_drain_requested node=%s", self.name)
            self.on_drain()
        return state

    async def run(self) -> None:
        """Heartbeat every `interval` until cancelled; the store being away is only logged."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.beat()
            except StoreError as exc:
                log.warning("event=heartbeat_failed node=%s error=%s", self.name, exc)
            except Exception:
                log.exception("event=heartbeat_error node=%s", self.name)

    async def draining_now(self) -> None:
        """Tell the others this node is leaving (shown as draining while sessions finish)."""
        self.draining = True
        await self.store.set_node_state(self.name, "draining")

    async def leave(self) -> None:
        """A clean stop: final load, state gone."""
        await self.store.heartbeat(self.name, {}, self.clock())
        await self.store.set_node_state(self.name, "gone")
        log.info("event=node_gone node=%s", self.name)
