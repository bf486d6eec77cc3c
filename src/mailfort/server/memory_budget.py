"""The node's budget of message octets held in memory for store writes.

A spooled message must be in memory while the store writes it (an SQLite BLOB, a PostgreSQL
bytea). Without a bound, N sessions committing 25 MB messages at once would take N x 25 MB.
Each such write holds its size from this budget (`[limits] max_message_bytes_in_memory`) from
reading the spool to the end of the store call; past the budget it waits, first come first
served, at most `wait` seconds, then gives up with `Busy` (SMTP 451 4.3.0, IMAP NO
[UNAVAILABLE]: the client tries again later, nothing was accepted).

Only spooled messages take from it: one under the spool threshold is already in memory, bounded
per session, and must never queue behind large ones. A write larger than the whole budget waits
until it has the budget to itself. The store driver may copy the octets once more while it
writes (sqlite3 binds a BLOB as a copy); the budget counts the message once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

from mailfort.errors import Busy


class MemoryBudget:
    def __init__(self, limit: int, *, wait: float = 10.0) -> None:
        self.limit = max(1, limit)
        self.wait = wait
        self.held = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @contextlib.asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        """Hold `size` octets of the budget for the block; raises Busy after `wait` seconds."""
        size = min(max(size, 0), self.limit)
        if size:  # nothing to hold never queues behind others
            await self._acquire(size)
        try:
            yield
        finally:
            self.held -= size
            self._grant()

    async def _acquire(self, size: int) -> None:
        if not self._waiting and self.held + size <= self.limit:
            self.held += size
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((size, waiter))
        try:
            async with asyncio.timeout(self.wait):
                await waiter
        except (TimeoutError, asyncio.CancelledError) as exc:
            if waiter.done() and not waiter.cancelled():
                # Granted just as the wait ended: give it back.
                self.held -= size
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiting.remove((size, waiter))
            self._grant()  # a large write that gave up may have blocked smaller ones
            if isinstance(exc, TimeoutError):
                raise Busy("no memory for message data, try again later") from None
            raise

    def _grant(self) -> None:
        while self._waiting:
            size, waiter = self._waiting[0]
            if waiter.done():
                self._waiting.popleft()
                continue
            if self.held + size > self.limit:
                return
            self._waiting.popleft()
            self.held += size
            waiter.set_result(None)
