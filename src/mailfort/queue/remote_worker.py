"""Delivers queue items for remote recipients: lease, send, settle.

The loop claims due items without an account (`Store.claim_remote`) up to `max_in_flight`, groups
them by destination and message (one SMTP transaction per group, at most `max_recipients`
recipients each) and starts a task per group; `delivery/remote.py` bounds the concurrency per
destination and reuses connections. While anything is in flight, the leases are renewed every
third of their length, so a slow remote server never lets another node take over a live delivery.

Each group's outcome is committed in one transaction (`Store.settle_queued`):
- delivered recipients are removed;
- temporary failures are deferred (`retry.py`: backoff with jitter, bounded by the lifetime), with
  the reply kept for `mailfort queue show`, and, once, a delay warning to the sender;
- permanent failures, and temporary ones past the lifetime, are removed together with the bounce
  (DSN) to the sender that reports them, accepted as a new message in that same transaction.
A message from the null sender gets no DSN at all: its failures are logged and dropped.

A worker that dies mid-delivery leaves its items leased; when the leases expire another worker
(or this node after a restart) claims and delivers them again. If the remote server had accepted
the message but the reply was lost, it gets it twice: SMTP's known duplicate (RFC 5321 6.1 prefers
it to loss). Nothing is lost or dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from mailfort.delivery.remote import Destination, Outcome, RecipientResult, RemoteClient
from mailfort.errors import StoreError
from mailfort.mail import dsn
from mailfort.mail.directory import Directory
from mailfort.queue.bounce import notice
from mailfort.queue.retry import RetryPolicy
from mailfort.store.api import (
    AcceptRequest,
    AttemptFailure,
    Deferral,
    QueueItem,
    Settlement,
    Store,
)

log = logging.getLogger("mailfort.queue")

BAD_ADDRESS = RecipientResult(
    recipient="",
    outcome=Outcome.FAILED,
    status="5.1.3",
    text="bad recipient address syntax: no domain",
)


def _age(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{int(seconds)} seconds"


class RemoteWorker:
    def __init__(
        self,
        store: Store,
        client: RemoteClient,
        directory: Directory,
        policy: RetryPolicy,
        *,
        owner: str,
        hostname: str,
        lease_seconds: float,
        poll_interval: float,
        max_in_flight: int = 100,
        max_recipients: int = 50,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.client = client
        self.directory = directory
        self.policy = policy
        self.owner = owner
        self.hostname = hostname
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.max_in_flight = max_in_flight
        self.max_recipients = max_recipients
        self.clock = clock
        self._leased: dict[int, QueueItem] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.deferred = 0
        self.bounced = 0
        self.notices = 0

    @property
    def in_flight(self) -> int:
        """Recipients this worker holds leases on right now (the node's heartbeat reports it)."""
        return len(self._leased)

    # -- the loop -------------------------------------------------------------------------------
    async def run(self) -> None:
        renewer = asyncio.create_task(self._renew_leases(), name="remote-lease-renewal")
        try:
            while True:
                drained = True
                try:
                    drained = await self.fill()
                except StoreError as exc:
                    log.warning("event=queue_poll_failed worker=remote error=%s", exc)
                except Exception:
                    # A bug in one round must not end remote delivery for the life of the node.
                    log.exception("event=queue_worker_error worker=remote")
                if drained or not self._tasks:
                    await asyncio.sleep(self.poll_interval)
                else:
                    # Saturated: claim again once half of the slots are free.
                    while self._tasks and len(self._leased) > self.max_in_flight // 2:
                        await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            renewer.cancel()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(renewer, *self._tasks, return_exceptions=True)
            await self.client.close()

    async def fill(self) -> bool:
        """Claim what fits and start delivering it; True when no more items are due."""
        free = self.max_in_flight - len(self._leased)
        if free <= 0:
            return False
        items = await self.store.claim_remote(self.owner, self.clock(), self.lease_seconds, free)
        for item in items:
            self._leased[item.id] = item
        for dest, group in self._groups(items):
            task = asyncio.create_task(self._deliver(dest, group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(items) < free

    def _groups(
        self, items: Sequence[QueueItem]
    ) -> list[tuple[Destination | None, list[QueueItem]]]:
        grouped: dict[tuple[str, str], tuple[Destination | None, list[QueueItem]]] = {}
        for item in items:
            domain = item.recipient.rpartition("@")[2]
            dest = self.client.destination(domain) if domain else None
            key = (dest.key if dest else "", item.queue_id)
            grouped.setdefault(key, (dest, []))[1].append(item)
        found = []
        for dest, group in grouped.values():
            for start in range(0, len(group), self.max_recipients):
                found.append((dest, group[start : start + self.max_recipients]))
        return found

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            ids = list(self._leased)
            if not ids:
                continue
            try:
                until = self.clock() + self.lease_seconds
                kept = await self.store.renew_lease(ids, self.owner, until)
            except StoreError as exc:
                log.warning("event=lease_renewal_failed items=%d error=%s", len(ids), exc)
                continue
            # Items settled while the renewal was on its way are no longer ours, rightly.
            still = sum(1 for i in ids if i in self._leased)
            if kept < still:
                log.warning("event=lease_lost items=%d", still - kept)

    # -- one group ------------------------------------------------------------------------------
    async def _deliver(self, dest: Destination | None, items: list[QueueItem]) -> None:
        first = items[0]
        try:
            body = await self.store.queue_body(first.queue_id)
            if body is None:
                log.info("event=remote_skipped id=%s reason=deleted", first.queue_id)
                return
            if dest is None:
                results = [_for(BAD_ADDRESS, item.recipient) for item in items]
            else:
                results = await self.client.deliver(
                    dest, first.sender, [i.recipient for i in items], body
                )
            await self._settle(items, results, body)
        except StoreError as exc:
            # Nothing was committed: the items are tried again when their leases expire.
            log.warning("event=settle_failed id=%s error=%s", first.queue_id, exc)
        except Exception:
            log.exception("event=remote_delivery_error id=%s", first.queue_id)
        finally:
            for item in items:
                self._leased.pop(item.id, None)

    async def _settle(
        self, items: list[QueueItem], results: list[RecipientResult], body: bytes
    ) -> None:
        now = self.clock()
        first = items[0]
        delivered: list[QueueItem] = []
        deferred: list[Deferral] = []
        failed: list[QueueItem] = []
        failed_reports: list[dsn.RecipientReport] = []
        delayed_reports: list[dsn.RecipientReport] = []
        for item, result in zip(items, results, strict=True):
            if result.outcome is Outcome.DELIVERED:
                delivered.append(item)
                log.info(
                    "event=remote_delivered id=%s rcpt=%s relay=%s status=%s",
                    item.queue_id,
                    item.recipient,
                    result.remote_mta,
                    result.status,
                )
            elif result.outcome is Outcome.FAILED or self.policy.expired(item, now):
                expired = result.outcome is not Outcome.FAILED
                failed.append(item)
                text = result.text
                if expired:
                    text += f" (gave up after {_age(now - item.received)} in the queue)"
                failed_reports.append(self._report(item, result, dsn.Action.FAILED, text, now))
                log.info(
                    "event=remote_failed id=%s rcpt=%s status=%s expired=%s error=%s",
                    item.queue_id,
                    item.recipient,
                    result.status,
                    "yes" if expired else "no",
                    result.text,
                )
            else:
                warn = self.policy.should_warn(item, now)
                deferred.append(
                    Deferral(
                        item=item,
                        next_attempt=self.policy.next_attempt(item, now),
                        failure=AttemptFailure(
                            error=result.text,
                            status=result.status,
                            at=now,
                            remote_mta=result.remote_mta,
                            diagnostic=result.diagnostic,
                        ),
                        warned=warn,
                    )
                )
                if warn:
                    delayed_reports.append(
                        self._report(item, result, dsn.Action.DELAYED, result.text, now)
                    )
                log.info(
                    "event=remote_deferred id=%s rcpt=%s status=%s error=%s",
                    item.queue_id,
                    item.recipient,
                    result.status,
                    result.text,
                )
        notices: list[AcceptRequest] = []
        for reports in (failed_reports, delayed_reports):
            made = await notice(
                self.directory,
                hostname=self.hostname,
                sender=first.sender,
                queue_id=first.queue_id,
                arrival=first.received,
                original=body,
                recipients=reports,
                now=now,
            )
            if made is not None:
                notices.append(made)
        if failed and not first.sender:
            log.info("event=bounce_suppressed id=%s reason=null_sender", first.queue_id)
        settlement = Settlement(
            delivered=delivered, deferred=deferred, failed=failed, notices=notices
        )
        if not await self.store.settle_queued(settlement, self.owner):
            log.warning("event=settle_skipped id=%s reason=lease_lost", first.queue_id)
            return
        self.delivered += len(delivered)
        self.deferred += len(deferred)
        self.bounced += len(failed)
        self.notices += len(notices)
        for made in notices:
            log.info(
                "event=dsn_sent id=%s about=%s to=<%s>", made.queue_id, first.queue_id, first.sender
            )

    def _report(
        self,
        item: QueueItem,
        result: RecipientResult,
        action: dsn.Action,
        text: str,
        now: float,
    ) -> dsn.RecipientReport:
        return dsn.RecipientReport(
            final_recipient=item.recipient,
            original_recipient=item.original,
            action=action,
            status=result.status,
            text=text,
            remote_mta=result.remote_mta,
            # No server answered (DNS, connection): say why in our own diagnostic type.
            diagnostic=result.diagnostic or f"X-Mailfort; {result.text}",
            last_attempt=now,
            will_retry_until=self.policy.expires(item) if action is dsn.Action.DELAYED else None,
        )


def _for(template: RecipientResult, recipient: str) -> RecipientResult:
    return RecipientResult(
        recipient=recipient,
        outcome=template.outcome,
        status=template.status,
        text=template.text,
    )
