"""Delivers queue items for remote recipients: lease, send, settle.

The loop claims due items without an account (`Queue.claim_remote`) up to `max_in_flight`, groups
them by destination and message (one SMTP transaction per group, at most `max_recipients`
recipients each; recipients forwarded through aliases of different domains apart, since they
leave with other signatures and senders: `trust/outbound.py`, applied just before the message is
sent) and starts a task per group; `delivery/remote.py` bounds the concurrency per destination
and reuses connections. While anything is in flight, the leases are renewed every third of their
length, so a slow remote server never lets another node take over a live delivery.

Each group's outcome is committed in one transaction (`Queue.settle_queued`):
- delivered recipients are removed;
- temporary failures are deferred (`retry.py`: backoff with jitter, bounded by the lifetime), with
  the reply kept for `mailfort queue show`, and, once, a delay warning to the sender;
- permanent failures, and temporary ones past the lifetime, are removed together with the bounce
  (DSN) to the sender that reports them, accepted as a new message in that same transaction.
A message from the null sender gets no DSN at all: its failures are logged and dropped.

Politeness under failure: a circuit breaker per destination stops connecting to
a failing MX (every transaction deferred, or no connection at all, `failure_threshold` times in a
row) and lets one probe through after a jittered, doubling pause; until then its items are
deferred to the probe time without a connection. A retry budget keeps retries (items with
`attempts > 0`) within a share of the attempts in a window: a retry over budget is not tried now,
its lease simply lapses and it is claimed again a little later. Claims are bounded by
`max_in_flight`, and shrink while the node is stressed, so a node that takes over a dead node's
queue never takes more than it can deliver.

Every attempt is judged for the status signals by who answered it (`reach.py`): a deferral by the
breaker is no attempt and is not counted; a store error while settling is the platform's.

Copies at the destination: exactly one, unless a node dies (or loses the store for a whole
lease) between sending a message and committing its outcome; each such lost lease may add one
copy, never more. A worker that dies mid-delivery leaves its items leased; when the leases expire
another worker (or this node after a restart) claims and delivers them again. If the remote
server had accepted the message but the reply was lost, it gets it twice: SMTP's known duplicate
(RFC 5321 6.1 prefers it to loss). A message whose deliverer dies twice in turn is sent three
times, and so on. Nothing is lost or dropped silently. What keeps the other cases at one copy:
- a drain (`stop`) gives back only the deliveries that have not sent their message yet; one that
  has waits for the server's answer and commits it, its lease renewed meanwhile (handed back
  unanswered, it would go out again from another node);
- an outcome the store failed to commit is committed again (with the lease still renewed) rather
  than left for a redelivery: committing twice is harmless, the second finds the item gone;
- an item this worker's own claim returns while it is still delivering it (its lease lapsed while
  the store was out of reach) is not started a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from mailfort.delivery.remote import Destination, Outcome, Reach, RecipientResult, RemoteClient
from mailfort.errors import StoreError
from mailfort.mail import dsn
from mailfort.mail.directory import Directory
from mailfort.metrics import NodeMetrics
from mailfort.network import Networks
from mailfort.overload.breaker import BreakerConfig, BreakerState, CircuitBreakers
from mailfort.overload.budget import RetryBudget, RetryBudgetConfig
from mailfort.queue.bounce import notice
from mailfort.queue.reach import KnownDestinations, Verdict
from mailfort.queue.retry import RetryPolicy
from mailfort.store.records import AcceptRequest, AttemptFailure, Deferral, QueueItem, Settlement
from mailfort.store.roles import Queue
from mailfort.trust.outbound import Outbound, group_key

log = logging.getLogger("mailfort.queue")

BAD_ADDRESS = RecipientResult(
    recipient="",
    outcome=Outcome.FAILED,
    status="5.1.3",
    text="bad recipient address syntax: no domain",
    reach=Reach.NO_DOMAIN,
)


BREAKER_STATUS = "4.4.1"  # no answer from host: what a deferral without a connection reports
# Breakers of destinations not heard of for this long are forgotten (bounded memory).
BREAKER_IDLE = 3600.0


@dataclass(frozen=True, slots=True)
class Politeness:
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    budget: RetryBudgetConfig = field(default_factory=RetryBudgetConfig)
    # While another item's probe is out, wait about this long before looking at the breaker again.
    probe_wait: float = 10.0


def _age(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{int(seconds)} seconds"


class RemoteWorker:
    def __init__(
        self,
        store: Queue,
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
        politeness: Politeness | None = None,
        metrics: NodeMetrics | None = None,
        stressed: Callable[[], bool] | None = None,
        networks: Networks | None = None,
        outbound: Outbound | None = None,
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
        politeness = politeness or Politeness()
        self.breakers = CircuitBreakers(politeness.breaker)
        self.budget = RetryBudget(politeness.budget)
        self.probe_wait = politeness.probe_wait
        self.metrics = metrics
        self.stressed = stressed
        # DKIM, ARC and SRS on the way out (`trust/outbound.py`); None: mail leaves as queued.
        self.outbound = outbound
        # Who answered us lately: whether a silent destination is our fault (`reach.py`).
        self.known = KnownDestinations(networks or Networks())
        self.held_back = 0  # recipients deferred without a connection (breaker open)
        self.over_budget = 0  # retries left for later (retry budget spent)
        self._leased: dict[int, QueueItem] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Deliveries whose message may be at the server already (DATA sent): not to be abandoned.
        self._sent: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._turns: dict[str, _Turn] = {}
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
        """Deliver until `stop()` (then return once the deliveries in hand are settled) or until
        cancelled (then abandon them, as a node that dies does: their leases expire)."""
        renewer = asyncio.create_task(self._renew_leases(), name="remote-lease-renewal")
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                drained = True
                try:
                    drained = await self.fill()
                except StoreError as exc:
                    log.warning("event=queue_poll_failed worker=remote error=%s", exc)
                except Exception:
                    # A bug in one round must not end remote delivery for the life of the node.
                    log.exception("event=queue_worker_error worker=remote")
                if drained or not self._tasks:
                    await asyncio.wait({stopping}, timeout=self.poll_interval)
                else:
                    # Saturated: claim again once a delivery has ended and half of the slots
                    # are free. At least one must end first: under stress `fill` claims into a
                    # quarter of the slots only, so it can find no room while at most half are
                    # taken, and looping straight back to it would never yield to the deliveries
                    # (a node that spins and serves nothing).
                    await asyncio.wait(
                        {stopping, *self._tasks}, return_when=asyncio.FIRST_COMPLETED
                    )
                    while (
                        self._tasks
                        and len(self._leased) > self.max_in_flight // 2
                        and not self._stopping.is_set()
                    ):
                        await asyncio.wait(
                            {stopping, *self._tasks}, return_when=asyncio.FIRST_COMPLETED
                        )
            await self._finish()
        finally:
            renewer.cancel()
            stopping.cancel()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(renewer, stopping, *self._tasks, return_exceptions=True)
            await self.client.close()

    def stop(self) -> None:
        """Claim nothing more and let `run()` return once the deliveries in hand are settled."""
        self._stopping.set()

    async def _finish(self) -> None:
        """Give back what has not been sent; wait for the answers to what has (the renewer keeps
        those leases meanwhile; the SMTP command timeout bounds the wait)."""
        waiting = [task for task in self._tasks if task not in self._sent]
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        sent = list(self._tasks)
        if sent:
            log.info("event=remote_drain_waiting deliveries=%d", len(sent))
            await asyncio.gather(*sent, return_exceptions=True)

    async def fill(self) -> bool:
        """Claim what fits and start delivering it; True when no more items are due."""
        room = self.max_in_flight
        if self.stressed is not None and self.stressed():
            room = max(1, room // 4)  # the node is at its limit: take over less of the queue
        free = room - len(self._leased)
        if free <= 0:
            return False
        self.breakers.prune(self.clock(), BREAKER_IDLE)
        items = await self.store.claim_remote(self.owner, self.clock(), self.lease_seconds, free)
        # Our own lease on an item still in flight can lapse only while renewals failed; the
        # claim has just renewed it, and a second delivery would be a second copy.
        fresh = [item for item in items if item.id not in self._leased]
        for item in fresh:
            self._leased[item.id] = item
        for dest, group in self._groups(fresh):
            task = asyncio.create_task(self._deliver(dest, group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(self._sent.discard)
        return len(items) < free

    def _groups(
        self, items: Sequence[QueueItem]
    ) -> list[tuple[Destination | None, list[QueueItem]]]:
        grouped: dict[tuple[str, str, str], tuple[Destination | None, list[QueueItem]]] = {}
        for item in items:
            domain = item.recipient.rpartition("@")[2]
            dest = self.client.destination(domain) if domain else None
            key = (dest.key if dest else "", item.queue_id, group_key(item))
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
                self._judge(None, results)
                await self._settle(items, results, body)
            else:
                await self._attempt(dest, items, body)
        except StoreError as exc:
            # Nothing was committed: the items are tried again when their leases expire. The
            # store failing is ours, whatever the destination did.
            log.warning("event=settle_failed id=%s error=%s", first.queue_id, exc)
            if self.metrics is not None:
                self.metrics.remote_reach(Verdict.OURS.value, len(items))
        except Exception:
            log.exception("event=remote_delivery_error id=%s", first.queue_id)
        finally:
            for item in items:
                self._leased.pop(item.id, None)

    @contextlib.asynccontextmanager
    async def _turn(self, key: str) -> AsyncIterator[None]:
        """One of destination `key`'s `concurrency` transactions at a time. The others wait
        here, *before* the breaker is asked: once it opens they are held back at once, instead
        of each waiting out its own connect timeout at a destination already known to be silent
        (a dead forwarding target flooded with mail would otherwise hold the worker's claims,
        and every customer's mail behind them, for timeout x items / concurrency)."""
        turn = self._turns.get(key)
        if turn is None:
            turn = self._turns[key] = _Turn(asyncio.Semaphore(self.client.settings.concurrency))
        turn.users += 1
        try:
            async with turn.limit:
                yield
        finally:
            turn.users -= 1
            if turn.users == 0:
                del self._turns[key]

    async def _attempt(self, dest: Destination, items: list[QueueItem], body: bytes) -> None:
        async with self._turn(dest.key):
            await self._attempt_now(dest, items, body)

    async def _attempt_now(self, dest: Destination, items: list[QueueItem], body: bytes) -> None:
        """One transaction to `dest`, unless its breaker or the retry budget says not now."""
        now = self.clock()
        first = items[0]
        breaker = self.breakers.get(dest.key)
        closed = breaker.state(now) is BreakerState.CLOSED
        if not breaker.allow(now):
            self.held_back += len(items)
            not_before = breaker.retry_at or now + self.probe_wait
            log.info(
                "event=remote_held_back id=%s dest=%s reason=breaker_open until=%.0f",
                first.queue_id,
                dest.key,
                not_before,
            )
            held = [_held_back(item, dest) for item in items]
            await self._settle(items, held, body, not_before=not_before, attempted=False)
            return
        # The budget stops retries from piling onto a destination in doubt. A half-open
        # breaker's probe is already paced by the breaker; retries to a destination that is
        # delivering again are the backlog catching up, not amplification (budgeted, a queue of
        # 100 000 deferred during an outage would drain a few per minute afterwards).
        retry = (
            closed
            and any(item.attempts > 0 for item in items)
            and not breaker.delivering(now, self.budget.config.window_seconds)
        )
        if retry and not self.budget.try_retry(now):
            self.over_budget += len(items)
            log.info("event=remote_retry_postponed id=%s reason=retry_budget", first.queue_id)
            return  # the lease lapses: claimed again (here or elsewhere) a little later
        if not retry:
            self.budget.record_attempt(now)
        task = asyncio.current_task()

        def sent() -> None:
            if task is not None:
                self._sent.add(task)

        sender, message = first.sender, body
        if self.outbound is not None:
            leaving = await self.outbound.prepare(first, body)
            sender, message = leaving.sender, leaving.message
        results = await self.client.deliver(
            dest, sender, [i.recipient for i in items], message, on_data=sent
        )
        done = self.clock()
        self._judge(dest, results)
        # A destination fails when it took nothing: no connection, a 421, a 4xx to MAIL or to
        # the message. A 5xx is an answer from a working server, and so is a 4xx to every RCPT
        # (greylisting, full mailboxes): five such in a row must not close a large domain.
        if not all(r.outcome is Outcome.DEFERRED for r in results):
            breaker.record_success(done)
        elif not all(r.per_recipient for r in results):
            breaker.record_failure(done)
        if self.metrics is not None:
            self.metrics.breakers_open.set(sum(1 for _ in self.breakers.not_closed(done)))
        await self._settle(items, results, body)

    async def _settle(
        self,
        items: list[QueueItem],
        results: list[RecipientResult],
        body: bytes,
        *,
        not_before: float | None = None,
        attempted: bool = True,
    ) -> None:
        """Commit the outcome of `items`; `attempted=False`: deferred without a connection,
        which is no delivery attempt and is not counted as one."""
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
                next_attempt = self.policy.next_attempt(item, now)
                if not_before is not None:
                    next_attempt = min(not_before, max(now, self.policy.expires(item)))
                deferred.append(
                    Deferral(
                        item=item,
                        next_attempt=next_attempt,
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
        if not await self._commit(settlement, first.queue_id):
            log.warning("event=settle_skipped id=%s reason=lease_lost", first.queue_id)
            return
        self.delivered += len(delivered)
        self.deferred += len(deferred)
        self.bounced += len(failed)
        self.notices += len(notices)
        if self.metrics is not None and attempted:
            counts = {
                "delivered": len(delivered),
                "deferred": len(deferred),
                "bounced": len(failed),
            }
            for kind, n in counts.items():
                if n:
                    self.metrics.remote_attempt(kind, n)
            for item in delivered:
                self.metrics.delivered("remote", now - item.received)
        for made in notices:
            log.info(
                "event=dsn_sent id=%s about=%s to=<%s>", made.queue_id, first.queue_id, first.sender
            )

    async def _commit(self, settlement: Settlement, queue_id: str) -> bool:
        """`settle_queued`, tried again for up to a lease while the store fails.

        Given up, a delivered message would be sent again once the lease expired: a duplicate
        without any node dying. Trying again is safe: if a failed attempt did commit
        (its answer was lost with the connection), the next finds the items gone and says so."""
        deadline = self.clock() + self.lease_seconds
        pause = self.poll_interval
        while True:
            try:
                return await self.store.settle_queued(settlement, self.owner)
            except StoreError as exc:
                if self.clock() + pause >= deadline:
                    raise
                log.warning("event=settle_retry id=%s error=%s", queue_id, exc)
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.lease_seconds / 3)

    def _judge(self, dest: Destination | None, results: Sequence[RecipientResult]) -> None:
        """Judge whose fault each result would be (`reach.py`) and record it for the status."""
        now = self.clock()
        tally: dict[tuple[Verdict, str | None], int] = {}
        for result in results:
            if dest is None:
                key: tuple[Verdict, str | None] = (Verdict.THEIRS, None)
            else:
                key = self.known.judge(dest, result, now)
            tally[key] = tally.get(key, 0) + 1
        if self.metrics is not None:
            for (verdict, network), n in tally.items():
                self.metrics.remote_reach(verdict.value, n, network)

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


@dataclass(slots=True)
class _Turn:
    limit: asyncio.Semaphore
    users: int = 0


def _held_back(item: QueueItem, dest: Destination) -> RecipientResult:
    """A deferral without a connection; keeps what the last real attempt learnt (for DSNs)."""
    return RecipientResult(
        recipient=item.recipient,
        outcome=Outcome.DEFERRED,
        status=item.last_status or BREAKER_STATUS,
        text=f"not tried: {dest.key} failed recently, next try after a pause (circuit breaker)",
        remote_mta=item.remote_mta,
        diagnostic=item.diagnostic,
    )


def _for(template: RecipientResult, recipient: str) -> RecipientResult:
    return RecipientResult(
        recipient=recipient,
        outcome=template.outcome,
        status=template.status,
        text=template.text,
        reach=template.reach,
    )
