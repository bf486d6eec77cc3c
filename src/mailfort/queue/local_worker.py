"""Delivers queue items for local accounts that could not be delivered at acceptance time.

Most local mail never reaches this worker: it is delivered in the acceptance transaction. An item
lands here only when its INBOX was missing at that moment (a user re-created mid-flight), or when
the account was deleted after the SMTP session resolved its address (the directory remembers
resolutions for a few seconds, see `mail/directory.py`).
The worker leases items, delivers each in one transaction with the item's deletion (exactly once),
and defers what still fails.

An item whose account is gone (account ids are never reused, so no account has its id) can never
be delivered. It is dropped with a warning once nothing else of its message is queued; until then
it is deferred like any failure, because the store deletes queue items only per message. A later
issue turns the drop into a bounce (DSN) to the sender.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from mailfort.errors import StoreError
from mailfort.mail.trace import delivery_prefix
from mailfort.queue.schedule import next_delay
from mailfort.store.api import QueueItem, Store

log = logging.getLogger("mailfort.queue")

MAILBOX_UNAVAILABLE = "450 4.2.0 mailbox unavailable"
ACCOUNT_GONE = "550 5.1.1 recipient account no longer exists"


class LocalWorker:
    def __init__(
        self,
        store: Store,
        *,
        owner: str,
        lease_seconds: float,
        poll_interval: float,
        retry_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.retry_seconds = retry_seconds
        self.clock = clock
        self.delivered = 0
        self.dropped = 0

    async def run_once(self) -> int:
        items = await self.store.claim_queue(
            self.owner, self.clock(), self.lease_seconds, 100, local_only=True
        )
        done = 0
        for item in items:
            if await self._account_gone(item):
                await self._drop(item)
                continue
            prefix = delivery_prefix(item.sender, item.recipient)
            if await self.store.deliver_queued(item, self.owner, prefix):
                done += 1
                log.info("event=delivered id=%s rcpt=%s via=queue", item.queue_id, item.recipient)
            else:
                await self._defer(item, MAILBOX_UNAVAILABLE)
        self.delivered += done
        return done

    async def _account_gone(self, item: QueueItem) -> bool:
        if item.account_id is None:
            return False
        return await self.store.get_account_by_id(item.account_id) is None

    async def _drop(self, item: QueueItem) -> None:
        siblings = [s for s in await self.store.queue_items(item.queue_id) if s.id != item.id]
        for sibling in siblings:
            if not await self._account_gone(sibling):
                # Other recipients of this message (remote ones too) still wait; deleting the
                # message would take their items as well.
                await self._defer(item, ACCOUNT_GONE)
                return
        dropped = await self.store.delete_queue(item.queue_id)
        self.dropped += dropped
        for gone in (item, *siblings):
            log.warning(
                "event=dropped id=%s rcpt=%s reason=account_gone", gone.queue_id, gone.recipient
            )

    async def _defer(self, item: QueueItem, error: str) -> None:
        delay = next_delay(item.attempts, base=self.retry_seconds, cap=3600.0)
        await self.store.defer_queued(item, self.owner, self.clock() + delay, error)

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except StoreError as exc:
                log.warning("event=queue_poll_failed error=%s", exc)
            except Exception:
                # A bug in one round must not end local delivery for the life of the node.
                log.exception("event=queue_worker_error")
            await asyncio.sleep(self.poll_interval)
