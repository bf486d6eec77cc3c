"""SQL for acceptance, local delivery and the queue on PostgreSQL; each call is one transaction.

The same rules as `sqlite_queue`: the body, each local INBOX copy and a queue item for every
recipient not delivered at once are committed together. What PostgreSQL adds is concurrency
between nodes: a mailbox's UIDNEXT/HIGHESTMODSEQ are bumped under its row lock (mailboxes locked
in id order, so two transactions can never wait on each other); claims skip rows another node has
locked (`FOR UPDATE SKIP LOCKED`); settling first locks the queue rows it settles, so a takeover
racing a slow worker sees either all of its outcome or none.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import asyncpg

from mailfort.errors import OverQuota
from mailfort.store.api import (
    AcceptRequest,
    AcceptResult,
    QueuedRecipient,
    QueueItem,
    Settlement,
)
from mailfort.store.postgres_conn import Conn

_ITEM_SQL = (
    "SELECT q.id, e.queue_id, e.sender, q.recipient, q.original, q.account_id, b.size,"
    " e.received, q.attempts, q.next_attempt, q.last_error, q.lease_owner, q.lease_until,"
    " q.warned, q.last_attempt, q.last_status, q.remote_mta, q.diagnostic"
    " FROM queue q JOIN envelopes e ON e.id = q.envelope_id JOIN blobs b ON b.id = e.blob_id"
)


# The local account a queued message belongs to, for delay notices and per-customer status:
# the local recipient, else the account that sent it (its login, else its envelope sender).
ACCOUNT_OF_ITEM = (
    "coalesce((SELECT address FROM accounts WHERE id = q.account_id),"
    " (SELECT address FROM accounts WHERE address = coalesce(e.authenticated, e.sender)))"
)


def _item(r: asyncpg.Record) -> QueueItem:
    return QueueItem(
        id=r[0],
        queue_id=r[1],
        sender=r[2],
        recipient=r[3],
        original=r[4],
        account_id=r[5],
        size=r[6],
        received=r[7],
        attempts=r[8],
        next_attempt=r[9],
        last_error=r[10],
        lease_owner=r[11],
        lease_until=r[12],
        warned=bool(r[13]),
        last_attempt=r[14],
        last_status=r[15],
        remote_mta=r[16],
        diagnostic=r[17],
    )


async def deliver_into(
    c: Conn,
    account_id: int,
    mailbox: str,
    blob_id: int,
    body_size: int,
    prefix: bytes,
    internal_date: float,
    flags: str = "",
) -> tuple[int, int] | None:
    """Append one copy to a mailbox: next UID, bumped MODSEQ, quota use.

    The UPDATE takes the mailbox's row lock until commit, so concurrent deliveries get distinct
    UIDs in commit order. Returns (mailbox id, UID), or None when there is no such mailbox."""
    # One statement (one round trip): bump the counters under the row lock, insert the copy,
    # count it against the quota. Other nodes hear of it after commit (postgres_conn.Announcer).
    r = await c.fetchrow(
        "WITH b AS (UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1"
        "  WHERE account_id = $1 AND name = $2 RETURNING id, uidnext - 1 AS uid, highestmodseq),"
        " m AS (INSERT INTO messages(mailbox_id, uid, modseq, flags, internal_date, size, blob_id,"
        "  prefix) SELECT id, uid, highestmodseq, $3, $4, $5, $6, $7 FROM b),"
        " a AS (UPDATE accounts SET used_bytes = used_bytes + $5"
        "  WHERE id = $1 AND EXISTS (SELECT 1 FROM b))"
        " SELECT id, uid FROM b",
        account_id,
        mailbox,
        flags,
        internal_date,
        len(prefix) + body_size,
        blob_id,
        prefix,
    )
    if r is None:
        return None
    return int(r[0]), int(r[1])


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
        placed = await deliver_into(
            c, copy.account_id, "INBOX", blob_id, len(req.body), copy.prefix, req.received
        )
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
        rows = await c.fetch(_ITEM_SQL + " ORDER BY e.received, q.id")
    else:
        rows = await c.fetch(_ITEM_SQL + " WHERE e.queue_id = $1 ORDER BY q.id", queue_id)
    return [_item(r) for r in rows]


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
    rows = await c.fetch(
        _ITEM_SQL + " WHERE q.id = ANY($1::bigint[]) ORDER BY q.next_attempt, q.id", ids
    )
    return [_item(r) for r in rows]


async def _holds_leases(c: Conn, items: Sequence[QueueItem], owner: str) -> bool:
    """Lock the items' rows and check each is still leased by `owner` for the same recipient."""
    if not items:
        return True
    ids = sorted({item.id for item in items})
    rows = await c.fetch(
        "SELECT q.id, q.lease_owner, e.queue_id, q.recipient FROM queue q"
        " JOIN envelopes e ON e.id = q.envelope_id WHERE q.id = ANY($1::bigint[])"
        " ORDER BY q.id FOR UPDATE OF q",
        ids,
    )
    found = {r[0]: (r[1], r[2], r[3]) for r in rows}
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


async def drop_blob(c: Conn, blob_id: int) -> None:
    await c.execute(
        "DELETE FROM blobs WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM messages"
        " WHERE blob_id = $1) AND NOT EXISTS (SELECT 1 FROM envelopes WHERE blob_id = $1)",
        blob_id,
    )


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
    placed = await deliver_into(c, item.account_id, "INBOX", r[0], r[1], prefix, item.received)
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
            f" SELECT {ACCOUNT_OF_ITEM}, e.queue_id, e.received, $1 FROM queue q"
            f" JOIN envelopes e ON e.id = q.envelope_id WHERE q.id = $2"
            f" AND {ACCOUNT_OF_ITEM} IS NOT NULL",
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
        rows = await c.fetch("UPDATE queue SET next_attempt = $1 RETURNING id", now)
    else:
        rows = await c.fetch(
            "UPDATE queue SET next_attempt = $1 WHERE envelope_id IN"
            " (SELECT id FROM envelopes WHERE queue_id = $2) RETURNING id",
            now,
            queue_id,
        )
    return len(rows)


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


async def collect_blobs(c: Conn) -> None:
    """Remove bodies nothing refers to any more (after an account was deleted)."""
    await c.execute(
        "DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_id = blobs.id)"
        " AND NOT EXISTS (SELECT 1 FROM envelopes e WHERE e.blob_id = blobs.id)"
    )
