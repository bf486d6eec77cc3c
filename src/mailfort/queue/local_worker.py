"""Delivers queue items for local accounts that could not be delivered at acceptance time.

Most local mail never reaches this worker: it is delivered in the acceptance transaction. An item
lands here only when its INBOX was missing at that moment (a user re-created mid-flight).
The worker leases items, delivers each in one transaction with the item's deletion (exactly once),
and defers what still fails.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from mailfort.errors import StoreError
from mailfort.mail.trace import delivery_prefix
from mailfort.queue.schedule import next_delay
from mailfort.store.api import Store

log = logging.getLogger("mailfort.queue")


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

    async def run_once(self) -> int:
        items = await self.store.claim_queue(
            self.owner, self.clock(), self.lease_seconds, 100, local_only=True
        )
        done = 0
        for item in items:
            prefix = delivery_prefix(item.sender, item.recipient)
            if await self.store.deliver_queued(item, self.owner, prefix):
                done += 1
                log.info("event=delivered id=%s rcpt=%s via=queue", item.queue_id, item.recipient)
            else:
                delay = next_delay(item.attempts, base=self.retry_seconds, cap=3600.0)
                await self.store.defer_queued(
                    item, self.owner, self.clock() + delay, "450 4.2.0 mailbox unavailable"
                )
        self.delivered += done
        return done

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
