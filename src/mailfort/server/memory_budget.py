"""The node's budget of message octets held in memory: store writes of large messages, and large
FETCH answers until the client has taken them.

A spooled message must be in memory while the store writes it (an SQLite BLOB, a PostgreSQL
bytea); a FETCH of a large message holds it, and its rendered answer, until the client has read
them. Without a bound, N sessions doing that with 25 MB messages at once would take N x 25 MB
(10 sessions that FETCHed a 20 MB message and read nothing took 520 MB). Each such piece of work
holds its size from this budget (`[limits] max_message_bytes_in_memory`) while it has the octets;
past the budget it waits, at most `wait` seconds, then gives up with `Busy` (SMTP 451 4.3.0, IMAP
NO [UNAVAILABLE]: the client tries again later, nothing was accepted).

One owner (an account, a client network) holds at most `owner_share` of the budget, or one piece
of work of any size when it holds nothing else: a client that FETCHes large messages and stops
reading keeps what it holds until its write times out, and must not make everyone else wait
for that. A waiter held back by its own owner's share does not hold up the waiters behind it.

Only large messages take from it: one under the spool threshold is already in memory, bounded
per session, and must never queue behind large ones. A piece of work larger than the whole budget
waits until it has the budget to itself. The store driver may copy the octets once more while it
writes (sqlite3 binds a BLOB as a copy); the budget counts the message once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Hashable

from mailfort.errors import Busy


class MemoryBudget:
    def __init__(self, limit: int, *, wait: float = 10.0, owner_share: float = 0.25) -> None:
        self.limit = max(1, limit)
        self.wait = wait
        self.owner_limit = max(1, int(self.limit * owner_share))
        self.held = 0
        self._held_by: Counter[Hashable] = Counter()
        self._waiting: list[tuple[int, Hashable | None, asyncio.Future[None]]] = []

    @contextlib.asynccontextmanager
    async def hold(self, size: int, owner: Hashable | None = None) -> AsyncIterator[None]:
        """Hold `size` octets of the budget for the block, counted to `owner`; raises Busy after
        `wait` seconds."""
        size = min(max(size, 0), self.limit)
        if size:  # nothing to hold never queues behind others
            await self._acquire(size, owner)
        try:
            yield
        finally:
            if size:
                self._give_back(size, owner)
                self._grant()

    def _fits(self, size: int, owner: Hashable | None) -> bool:
        if self.held + size > self.limit:
            return False
        if owner is None:
            return True
        mine = self._held_by[owner]
        return mine == 0 or mine + size <= self.owner_limit

    def _take(self, size: int, owner: Hashable | None) -> None:
        self.held += size
        if owner is not None:
            self._held_by[owner] += size

    def _give_back(self, size: int, owner: Hashable | None) -> None:
        self.held -= size
        if owner is not None:
            self._held_by[owner] -= size
            if self._held_by[owner] <= 0:
                del self._held_by[owner]

    async def _acquire(self, size: int, owner: Hashable | None) -> None:
        if not self._waiting and self._fits(size, owner):
            self._take(size, owner)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, owner, waiter)
        self._waiting.append(entry)
        self._grant()  # those ahead may be held back by their own owners' shares only
        if waiter.done():
            return
        try:
            async with asyncio.timeout(self.wait):
                await waiter
        except (TimeoutError, asyncio.CancelledError) as exc:
            if waiter.done() and not waiter.cancelled():
                # Granted just as the wait ended: give it back.
                self._give_back(size, owner)
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiting.remove(entry)
            self._grant()  # a large piece that gave up may have held back smaller ones
            if isinstance(exc, TimeoutError):
                raise Busy("no memory for message data, try again later") from None
            raise

    def _grant(self) -> None:
        """Wake the waiters that fit, first come first served; one held back only by its own
        owner's share is passed over, one that does not fit the budget stops the round (a large
        piece must not be overtaken for ever by small ones)."""
        for entry in list(self._waiting):
            size, owner, waiter = entry
            if waiter.done():
                self._waiting.remove(entry)
                continue
            if self.held + size > self.limit:
                return
            if not self._fits(size, owner):
                continue  # its owner holds its share: the next owner's turn
            self._waiting.remove(entry)
            self._take(size, owner)
            waiter.set_result(None)
