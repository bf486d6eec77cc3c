"""Acceptance, local delivery and the queue on PostgreSQL (roles `Acceptance`, `Queue`).

Each call is one transaction, with the same rules as on SQLite: the body, each local INBOX copy and
a queue item for every recipient not delivered at once are committed together. What PostgreSQL
adds is concurrency between nodes: a mailbox's UIDNEXT/HIGHESTMODSEQ are bumped under its row lock
(mailboxes locked in id order, so two transactions can never wait on each other); claims skip rows
another node has locked (`FOR UPDATE SKIP LOCKED`); settling first locks the queue rows it
settles, so a takeover racing a slow worker sees either all of its outcome or none.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from mailfort.errors import OverQuota
from mailfort.store import rows
from mailfort.store.postgres.connection import Conn
from mailfort.store.postgres.engine import PostgresEngine
from mailfort.store.postgres.mailboxes import drop_blob, junk_mailbox, place
from mailfort.store.records import (
    INBOX,
    AcceptRequest,
    AcceptResult,
    QueuedRecipient,
    QueueItem,
    Settlement,
)
from mailfort.store.rows import MessageCopy


async def _within_quota(c: Conn, account_id: int) -> None:
    """After a copy was counted: past the account's quota, the whole acceptance is undone.

    The copy's UPDATE holds the account row until commit, and under READ COMMITTED a concurrent
    delivery's UPDATE waits for it and then adds to the committed use: of two messages that
    each fit alone but not together, the second sees the first and is refused."""
    r = await c.fetchrow("SELECT quota_bytes, used_bytes FROM accounts WHERE id = $1", account_id)
    if r is not None and 0 < r[0] < r[1]:
        raise OverQuota(f"account {account_id}: quota of {r[0]} bytes exceeded")


async def accept(c: Conn, req: AcceptRequest, blob: list[int] | None = None) -> AcceptResult:
    """`blob` gets the id of the message's blob when it is kept: the witness of the commit."""
    blob_id = await c.fetchval(
        "INSERT INTO blobs(data, size) VALUES ($1, $2) RETURNING id", req.body, len(req.body)
    )
    pending: list[QueuedRecipient] = list(req.queued)
    delivered = 0
    mailboxes: list[int] = []
    # Lock order: mailboxes by account id, so concurrent accepts to overlapping recipients queue
    # behind each other instead of deadlocking.
    for copy in sorted(req.local, key=lambda d: d.account_id):
        size = len(copy.prefix) + len(req.body)
        copies = [MessageCopy(blob_id, size, req.received, prefix=copy.prefix)]
        mailbox: str | None = copy.mailbox
        if mailbox != INBOX:
            mailbox = await junk_mailbox(c, copy.account_id)
        placed = None if mailbox is None else await place(c, copy.account_id, mailbox, copies)
        if placed is None:
            pending.append(
                QueuedRecipient(
                    recipient=copy.recipient, original=copy.recipient, account_id=copy.account_id
                )
            )
        else:
            await _within_quota(c, copy.account_id)
            delivered += 1
            mailboxes.append(placed[0])
    if pending:
        envelope_id = await c.fetchval(
            "INSERT INTO envelopes(queue_id, sender, blob_id, received, client, authenticated)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            req.queue_id,
            req.sender,
            blob_id,
            req.received,
            req.client,
            req.authenticated,
        )
        await c.executemany(
            "INSERT INTO queue(envelope_id, recipient, original, account_id, next_attempt, created)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            [
                (envelope_id, r.recipient, r.original, r.account_id, req.received, req.received)
                for r in pending
            ],
        )
    elif delivered == 0:
        await c.execute("DELETE FROM blobs WHERE id = $1", blob_id)
    if (pending or delivered) and blob is not None:
        blob.append(blob_id)
    return AcceptResult(
        queue_id=req.queue_id, delivered=delivered, queued=len(pending), mailboxes=tuple(mailboxes)
    )


async def items(c: Conn, queue_id: str | None) -> list[QueueItem]:
    if queue_id is None:
        fetched = await c.fetch(rows.ITEM_SQL + " ORDER BY e.received, q.id")
    else:
        fetched = await c.fetch(rows.ITEM_SQL + " WHERE e.queue_id = $1 ORDER BY q.id", queue_id)
    return [rows.queue_item(r) for r in fetched]


async def claim(
    c: Conn,
    owner: str,
    now: float,
    lease: float,
    limit: int,
    local_only: bool,
    remote_only: bool = False,
) -> list[QueueItem]:
    where = "q.next_attempt <= $1 AND (q.lease_until IS NULL OR q.lease_until < $1)"
    if local_only:
        where += " AND q.account_id IS NOT NULL"
    elif remote_only:
        where += " AND q.account_id IS NULL"
    # SKIP LOCKED: rows another node is claiming or settling right now are not ours to wait for.
    ids = [
        r[0]
        for r in await c.fetch(
            f"SELECT q.id FROM queue q WHERE {where} ORDER BY q.next_attempt, q.id LIMIT $2"
            " FOR UPDATE SKIP LOCKED",
            now,
            limit,
        )
    ]
    if not ids:
        return []
    await c.execute(
        "UPDATE queue SET lease_owner = $1, lease_until = $2 WHERE id = ANY($3::bigint[])",
        owner,
        now + lease,
        ids,
    )
    fetched = await c.fetch(
        rows.ITEM_SQL + " WHERE q.id = ANY($1::bigint[]) ORDER BY q.next_attempt, q.id", ids
    )
    return [rows.queue_item(r) for r in fetched]


async def _holds_leases(c: Conn, items: Sequence[QueueItem], owner: str) -> bool:
    """Lock the items' rows and check each is still leased by `owner` for the same recipient."""
    if not items:
        return True
    ids = sorted({item.id for item in items})
    fetched = await c.fetch(
        "SELECT q.id, q.lease_owner, e.queue_id, q.recipient FROM queue q"
        " JOIN envelopes e ON e.id = q.envelope_id WHERE q.id = ANY($1::bigint[])"
        " ORDER BY q.id FOR UPDATE OF q",
        ids,
    )
    found = {r[0]: (r[1], r[2], r[3]) for r in fetched}
    return all(found.get(i.id) == (owner, i.queue_id, i.recipient) for i in items)


async def _drop_item(c: Conn, item_id: int) -> None:
    r = await c.fetchrow(
        "DELETE FROM queue q USING envelopes e WHERE q.id = $1 AND e.id = q.envelope_id"
        " RETURNING e.id, e.blob_id",
        item_id,
    )
    if r is None:
        return
    envelope_id, blob_id = r[0], r[1]
    gone = await c.fetchval(
        "DELETE FROM envelopes WHERE id = $1 AND NOT EXISTS"
        " (SELECT 1 FROM queue WHERE envelope_id = $1) RETURNING id",
        envelope_id,
    )
    if gone is not None:
        await drop_blob(c, blob_id)


async def deliver(
    c: Conn, item: QueueItem, owner: str, prefix: bytes, delay_threshold: float = math.inf
) -> int | None:
    """Deliver a leased local item and drop it; the receiving mailbox id, or None.

    An item that waited longer than `delay_threshold` is recorded as delayed mail."""
    if item.account_id is None or not await _holds_leases(c, (item,), owner):
        return None
    r = await c.fetchrow(
        "SELECT e.blob_id, b.size FROM queue q JOIN envelopes e ON e.id = q.envelope_id"
        " JOIN blobs b ON b.id = e.blob_id WHERE q.id = $1",
        item.id,
    )
    copies = [MessageCopy(r[0], len(prefix) + r[1], item.received, prefix=prefix)]
    placed = await place(c, item.account_id, "INBOX", copies)
    if placed is None:
        return None
    await record_delayed(c, (item,), time.time(), delay_threshold)
    await _drop_item(c, item.id)
    return placed[0]


async def record_delayed(
    c: Conn, items: Sequence[QueueItem], settled_at: float, threshold: float
) -> None:
    """Record the items that settle more than `threshold` seconds after acceptance.

    Called by the settling transaction before the items are dropped (their envelope is needed to
    find the sender's account). The comparison is in Python, so the usual case — nothing
    delayed — costs no statement at all."""
    for item in items:
        if settled_at - item.received <= threshold:
            continue
        await c.execute(
            "INSERT INTO delayed_mail(account, queue_id, accepted_at, settled_at)"
            f" SELECT {rows.ACCOUNT_OF_ITEM}, e.queue_id, e.received, $1 FROM queue q"
            f" JOIN envelopes e ON e.id = q.envelope_id WHERE q.id = $2"
            f" AND {rows.ACCOUNT_OF_ITEM} IS NOT NULL",
            settled_at,
            item.id,
        )


async def defer(c: Conn, item: QueueItem, owner: str, when: float, error: str) -> bool:
    if not await _holds_leases(c, (item,), owner):
        return False
    await c.execute(
        "UPDATE queue SET attempts = attempts + 1, next_attempt = $1, last_error = $2,"
        " lease_owner = NULL, lease_until = NULL WHERE id = $3",
        when,
        error,
        item.id,
    )
    return True


async def renew(c: Conn, item_ids: Sequence[int], owner: str, until: float) -> int:
    r = await c.fetch(
        "UPDATE queue SET lease_until = $1 WHERE lease_owner = $2 AND id = ANY($3::bigint[])"
        " RETURNING id",
        until,
        owner,
        sorted(set(item_ids)),
    )
    return len(r)


async def settle(
    c: Conn, s: Settlement, owner: str, delay_threshold: float = math.inf
) -> list[int] | None:
    """One attempt's outcome; the mailboxes the notices reached, or None when a lease is lost.

    Delivered or bounced items that waited longer than `delay_threshold` are recorded as
    delayed mail in this same transaction."""
    if not await _holds_leases(c, [*s.delivered, *s.failed, *(d.item for d in s.deferred)], owner):
        return None
    await record_delayed(c, (*s.delivered, *s.failed), time.time(), delay_threshold)
    for item in (*s.delivered, *s.failed):
        await _drop_item(c, item.id)
    for d in s.deferred:
        f = d.failure
        await c.execute(
            "UPDATE queue SET attempts = attempts + 1, next_attempt = $1, last_error = $2,"
            " last_attempt = $3, last_status = $4, remote_mta = $5, diagnostic = $6,"
            " warned = warned OR $7, lease_owner = NULL, lease_until = NULL WHERE id = $8",
            d.next_attempt,
            f.error,
            f.at,
            f.status,
            f.remote_mta,
            f.diagnostic,
            d.warned,
            d.item.id,
        )
    mailboxes: list[int] = []
    for notice in s.notices:
        mailboxes.extend((await accept(c, notice)).mailboxes)
    return mailboxes


async def retry(c: Conn, queue_id: str | None, now: float) -> int:
    if queue_id is None:
        fetched = await c.fetch("UPDATE queue SET next_attempt = $1 RETURNING id", now)
    else:
        fetched = await c.fetch(
            "UPDATE queue SET next_attempt = $1 WHERE envelope_id IN"
            " (SELECT id FROM envelopes WHERE queue_id = $2) RETURNING id",
            now,
            queue_id,
        )
    return len(fetched)


async def delete(c: Conn, queue_id: str) -> int:
    ids = [
        r[0]
        for r in await c.fetch(
            "SELECT q.id FROM queue q JOIN envelopes e ON e.id = q.envelope_id"
            " WHERE e.queue_id = $1 ORDER BY q.id FOR UPDATE OF q",
            queue_id,
        )
    ]
    for item_id in ids:
        await _drop_item(c, item_id)
    return len(ids)


async def drop_account_items(c: Conn, account_id: int) -> int:
    ids = [
        r[0]
        for r in await c.fetch(
            "SELECT id FROM queue WHERE account_id = $1 ORDER BY id FOR UPDATE", account_id
        )
    ]
    for item_id in ids:
        await _drop_item(c, item_id)
    return len(ids)


class PostgresQueue(PostgresEngine):
    async def accept(self, request: AcceptRequest) -> AcceptResult:
        blob: list[int] = []

        async def committed(c: Conn) -> bool:
            # The message's blob id came from a sequence inside the transaction: it exists only
            # if that transaction committed.
            return bool(blob) and bool(
                await c.fetchval("SELECT EXISTS(SELECT 1 FROM blobs WHERE id = $1)", blob[0])
            )

        result = await self.db.run(lambda c: accept(c, request, blob), confirm=committed)
        self._changed(result.mailboxes)
        return result

    async def queue_items(self, queue_id: str | None = None) -> list[QueueItem]:
        return await self.db.read_one(lambda c: items(c, queue_id))

    async def queue_body(self, queue_id: str) -> bytes | None:
        found = await self.db.fetch(
            "SELECT bl.data FROM envelopes e JOIN blobs bl ON bl.id = e.blob_id"
            " WHERE e.queue_id = $1",
            queue_id,
        )
        return bytes(found[0][0]) if found else None

    async def claim_queue(
        self, owner: str, now: float, lease_seconds: float, limit: int, local_only: bool
    ) -> list[QueueItem]:
        return await self.db.run(lambda c: claim(c, owner, now, lease_seconds, limit, local_only))

    async def claim_remote(
        self, owner: str, now: float, lease_seconds: float, limit: int
    ) -> list[QueueItem]:
        return await self.db.run(
            lambda c: claim(c, owner, now, lease_seconds, limit, False, remote_only=True)
        )

    async def renew_lease(self, item_ids: Sequence[int], owner: str, until: float) -> int:
        if not item_ids:
            return 0
        return await self.db.run(lambda c: renew(c, item_ids, owner, until))

    async def deliver_queued(self, item: QueueItem, owner: str, prefix: bytes) -> bool:
        return self._delivered(
            await self.db.run(lambda c: deliver(c, item, owner, prefix, self.delay_threshold))
        )

    async def defer_queued(
        self, item: QueueItem, owner: str, next_attempt: float, error: str
    ) -> bool:
        return await self.db.run(lambda c: defer(c, item, owner, next_attempt, error))

    async def settle_queued(self, settlement: Settlement, owner: str) -> bool:
        mailboxes = await self.db.run(lambda c: settle(c, settlement, owner, self.delay_threshold))
        if mailboxes is None:
            return False
        if mailboxes:
            self._changed(mailboxes)
        return True

    async def retry_queue(self, queue_id: str | None, now: float) -> int:
        return await self.db.run(lambda c: retry(c, queue_id, now))

    async def delete_queue(self, queue_id: str) -> int:
        return await self.db.run(lambda c: delete(c, queue_id))
