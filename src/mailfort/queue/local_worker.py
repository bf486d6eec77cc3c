"""Delivers queue items for local accounts that could not be delivered at acceptance time.

Most local mail never reaches this worker: it is delivered in the acceptance transaction. An item
lands here only when its INBOX was missing at that moment (a user re-created mid-flight), or when
the account was deleted after the SMTP session resolved its address (the directory remembers
resolutions for a few seconds, see `mail/directory.py`).
The worker leases items, delivers each in one transaction with the item's deletion (exactly once),
and defers what still fails.

An item whose account is gone (account ids are never reused, so no account has its id) can never
be delivered: it is removed at once with a warning, and when the worker has a directory to find
the sender, with a bounce (DSN, 5.1.1) committed in the same transaction (`Queue.settle_queued`),
as the remote worker does for a recipient that failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from mailfort.errors import StoreError
from mailfort.mail import dsn
from mailfort.mail.directory import Directory
from mailfort.mail.trace import delivery_prefix
from mailfort.metrics import NodeMetrics
from mailfort.queue.bounce import notice
from mailfort.queue.schedule import next_delay
from mailfort.store.records import AcceptRequest, QueueItem, Settlement
from mailfort.store.roles import LocalQueue

log = logging.getLogger("mailfort.queue")

MAILBOX_UNAVAILABLE = "450 4.2.0 mailbox unavailable"
ACCOUNT_GONE = "5.1.1"
BATCH = 100  # items claimed per round
STRESSED_BATCH = 10  # while the node is under stress: a survivor takes only what it can do


class LocalWorker:
    def __init__(
        self,
        store: LocalQueue,
        *,
        owner: str,
        lease_seconds: float,
        poll_interval: float,
        retry_seconds: float,
        directory: Directory | None = None,
        hostname: str = "",
        clock: Callable[[], float] = time.time,
        metrics: NodeMetrics | None = None,
        stressed: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.retry_seconds = retry_seconds
        self.directory = directory  # None: drop without a bounce
        self.hostname = hostname
        self.clock = clock
        self.metrics = metrics
        self.stressed = stressed
        self.delivered = 0
        self.dropped = 0
        self.bounces = 0

    async def run_once(self) -> int:
        batch = STRESSED_BATCH if self.stressed is not None and self.stressed() else BATCH
        items = await self.store.claim_queue(
            self.owner, self.clock(), self.lease_seconds, batch, local_only=True
        )
        done = 0
        for item in items:
            if await self._account_gone(item):
                await self._drop(item)
                continue
            prefix = delivery_prefix(item.sender, item.recipient)
            if await self.store.deliver_queued(item, self.owner, prefix):
                done += 1
                if self.metrics is not None:
                    self.metrics.delivered("local", self.clock() - item.received)
                log.info("event=delivered id=%s rcpt=%s via=queue", item.queue_id, item.recipient)
            else:
                delay = next_delay(item.attempts, base=self.retry_seconds, cap=3600.0)
                await self.store.defer_queued(
                    item, self.owner, self.clock() + delay, MAILBOX_UNAVAILABLE
                )
        self.delivered += done
        return done

    async def _account_gone(self, item: QueueItem) -> bool:
        if item.account_id is None:
            return False
        return await self.store.get_account_by_id(item.account_id) is None

    async def _drop(self, item: QueueItem) -> None:
        bounce = await self._bounce(item)
        settlement = Settlement(failed=(item,), notices=() if bounce is None else (bounce,))
        if not await self.store.settle_queued(settlement, self.owner):
            return  # no longer ours: whoever holds it now decides
        self.dropped += 1
        log.warning(
            "event=dropped id=%s rcpt=%s reason=account_gone bounce=%s",
            item.queue_id,
            item.recipient,
            "none" if bounce is None else bounce.queue_id,
        )
        if bounce is not None:
            self.bounces += 1

    async def _bounce(self, item: QueueItem) -> AcceptRequest | None:
        if self.directory is None:
            return None
        body = await self.store.queue_body(item.queue_id)
        if body is None:
            return None
        now = self.clock()
        report = dsn.RecipientReport(
            final_recipient=item.recipient,
            original_recipient=item.original,
            action=dsn.Action.FAILED,
            status=ACCOUNT_GONE,
            text="the mailbox was deleted before the message could be delivered",
            diagnostic="X-Mailfort; recipient account no longer exists",
            last_attempt=now,
        )
        return await notice(
            self.directory,
            hostname=self.hostname,
            sender=item.sender,
            queue_id=item.queue_id,
            arrival=item.received,
            original=body,
            recipients=[report],
            now=now,
        )

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
