"""POP3's one-session-per-maildrop lock (RFC 1939 §8) for every node sharing the store.

A lock is a lease row (`maildrop_locks`): taken at login if free or expired, renewed by a small
task every third of the lease while the session holds it, deleted at the end of the session.
A holder that dies stops renewing; the lease runs out and the next login anywhere gets it.
The owner written to the store is this node's name and a token of its own per session, so two
sessions of one node are as distinct as sessions of two nodes.

Implements `server.pop3_maildrop.MaildropLocks` (structurally: this package does not import
the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailfort.errors import StoreError
from mailfort.store.roles import Locks

log = logging.getLogger("mailfort.cluster")


@dataclass(slots=True)
class _Held:
    owner: object
    token: str
    renewer: asyncio.Task[None]


class StoreMaildropLocks:
    def __init__(
        self,
        store: Locks,
        node_name: str,
        *,
        lease_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.node_name = node_name
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._held: dict[int, _Held] = {}

    async def acquire(self, account_id: int, owner: object) -> bool:
        held = self._held.get(account_id)
        if held is not None:  # a session of this node has it: no need to ask the store
            return held.owner is owner
        token = f"{self.node_name}:{secrets.token_hex(8)}"
        now = self.clock()
        if not await self.store.acquire_maildrop(account_id, token, now + self.lease_seconds, now):
            return False
        if account_id in self._held:  # another session of ours won meanwhile; keep theirs
            await self.store.release_maildrop(account_id, token)
            return False
        renewer = asyncio.create_task(self._renew(account_id, token), name="maildrop-lease")
        self._held[account_id] = _Held(owner, token, renewer)
        return True

    async def release(self, account_id: int, owner: object) -> None:
        held = self._held.get(account_id)
        if held is None or held.owner is not owner:
            return
        del self._held[account_id]
        held.renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await held.renewer
        try:
            await self.store.release_maildrop(account_id, held.token)
        except StoreError as exc:  # it expires by itself
            log.warning("event=maildrop_release_failed account=%s error=%s", account_id, exc)

    async def close(self) -> None:
        """Give back every lock still held (the node is stopping)."""
        for account_id, held in list(self._held.items()):
            await self.release(account_id, held.owner)

    def held(self) -> int:
        return len(self._held)

    async def _renew(self, account_id: int, token: str) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                ours = await self.store.renew_maildrop(
                    account_id, token, self.clock() + self.lease_seconds
                )
            except StoreError as exc:
                log.warning("event=maildrop_renew_failed account=%s error=%s", account_id, exc)
                continue
            if not ours:
                # Expired and taken (this node could not reach the store for a whole lease).
                log.warning("event=maildrop_lock_lost account=%s", account_id)
                return
