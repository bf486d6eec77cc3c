"""Acceptance, local delivery and the queue on SQLite (roles `Acceptance`, `Queue`).

Each call is one writer transaction.

Local delivery happens atomically with acceptance: the body, each local INBOX copy, and a queue item
for every recipient that could not be delivered in that same transaction (remote recipients, or a
local one whose INBOX is missing) are committed together. So a message that got `250` is either in
its mailbox or in the queue, never in both and never in neither.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Sequence

from mailfort.errors import OverQuota
from mailfort.store import rows
from mailfort.store.records import (
    INBOX,
    AcceptRequest,
    AcceptResult,
    QueuedRecipient,
    QueueItem,
    Settlement,
)
from mailfort.store.rows import MessageCopy
from mailfort.store.sqlite.engine import SqliteEngine
from mailfort.store.sqlite.mailboxes import junk_mailbox, place


def _within_quota(c: sqlite3.Connection, account_id: int) -> None:
    """After a copy was counted: past the account's quota, the whole acceptance is undone."""
    row = c.execute(
        "SELECT quota_bytes, used_bytes FROM accounts WHERE id = ?", (account_id,)
    ).fetchone()
    if row is not None and 0 < row[0] < row[1]:
        raise OverQuota(f"account {account_id}: quota of {row[0]} bytes exceeded")


def accept(c: sqlite3.Connection, req: AcceptRequest) -> AcceptResult:
    cur = c.execute("INSERT INTO blobs(data, size) VALUES (?, ?)", (req.body, len(req.body)))
    assert cur.lastrowid is not None
    blob_id = cur.lastrowid
    pending: list[QueuedRecipient] = list(req.queued)
    delivered = 0
    mailboxes: list[int] = []
    for copy in req.local:
        size = len(copy.prefix) + len(req.body)
        copies = [MessageCopy(blob_id, size, req.received, prefix=copy.prefix)]
        mailbox = copy.mailbox if copy.mailbox == INBOX else junk_mailbox(c, copy.account_id)
        placed = None if mailbox is None else place(c, copy.account_id, mailbox, copies)
        if placed is None:
            pending.append(
                QueuedRecipient(
                    recipient=copy.recipient, original=copy.recipient, account_id=copy.account_id
                )
            )
        else:
            _within_quota(c, copy.account_id)
            delivered += 1
            mailboxes.append(placed[0])
    if pending:
        cur = c.execute(
            "INSERT INTO envelopes(queue_id, sender, blob_id, received, client, authenticated)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (req.queue_id, req.sender, blob_id, req.received, req.client, req.authenticated),
        )
        c.executemany(
            "INSERT INTO queue(envelope_id, recipient, original, account_id, next_attempt, created)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (cur.lastrowid, r.recipient, r.original, r.account_id, req.received, req.received)
                for r in pending
            ],
        )
    elif delivered == 0:
        c.execute("DELETE FROM blobs WHERE id = ?", (blob_id,))
    return AcceptResult(
        queue_id=req.queue_id, delivered=delivered, queued=len(pending), mailboxes=tuple(mailboxes)
    )


def items(c: sqlite3.Connection, queue_id: str | None) -> list[QueueItem]:
    if queue_id is None:
        found = c.execute(rows.ITEM_SQL + " ORDER BY e.received, q.id")
    else:
        found = c.execute(rows.ITEM_SQL + " WHERE e.queue_id = ? ORDER BY q.id", (queue_id,))
    return [rows.queue_item(r) for r in found]


def claim(
    c: sqlite3.Connection,
    owner: str,
    now: float,
    lease: float,
    limit: int,
    local_only: bool,
    remote_only: bool = False,
) -> list[QueueItem]:
    where = "q.next_attempt <= ? AND (q.lease_until IS NULL OR q.lease_until < ?)"
    if local_only:
        where += " AND q.account_id IS NOT NULL"
    elif remote_only:
        where += " AND q.account_id IS NULL"
    ids = [
        r[0]
        for r in c.execute(
            f"SELECT q.id FROM queue q WHERE {where} ORDER BY q.next_attempt LIMIT ?",
            (now, now, limit),
        )
    ]
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    c.execute(
        f"UPDATE queue SET lease_owner = ?, lease_until = ? WHERE id IN ({marks})",
        (owner, now + lease, *ids),
    )
    found = c.execute(rows.ITEM_SQL + f" WHERE q.id IN ({marks})", ids)
    return [rows.queue_item(r) for r in found]


def _holds_lease(c: sqlite3.Connection, item: QueueItem, owner: str) -> bool:
    row = c.execute(
        "SELECT q.lease_owner, e.queue_id, q.recipient FROM queue q"
        " JOIN envelopes e ON e.id = q.envelope_id WHERE q.id = ?",
        (item.id,),
    ).fetchone()
    # The row id alone is not proof: SQLite hands out the highest id again once it is deleted,
    # so a stale item must also match the message and recipient it was leased for.
    return row is not None and tuple(row) == (owner, item.queue_id, item.recipient)


def _drop_item(c: sqlite3.Connection, item_id: int) -> None:
    row = c.execute(
        "SELECT e.id, e.blob_id FROM queue q JOIN envelopes e ON e.id = q.envelope_id"
        " WHERE q.id = ?",
        (item_id,),
    ).fetchone()
    c.execute("DELETE FROM queue WHERE id = ?", (item_id,))
    if row is None:
        return
    envelope_id, blob_id = row
    if c.execute("SELECT 1 FROM queue WHERE envelope_id = ?", (envelope_id,)).fetchone() is None:
        c.execute("DELETE FROM envelopes WHERE id = ?", (envelope_id,))
        c.execute(
            "DELETE FROM blobs WHERE id = ? AND NOT EXISTS (SELECT 1 FROM messages"
            " WHERE blob_id = ?) AND NOT EXISTS (SELECT 1 FROM envelopes WHERE blob_id = ?)",
            (blob_id, blob_id, blob_id),
        )


def deliver(
    c: sqlite3.Connection,
    item: QueueItem,
    owner: str,
    prefix: bytes,
    delay_threshold: float = math.inf,
) -> int | None:
    """Deliver a leased local item and drop it; the receiving mailbox id, or None.

    An item that waited longer than `delay_threshold` is recorded as delayed mail."""
    if item.account_id is None or not _holds_lease(c, item, owner):
        return None
    row = c.execute(
        "SELECT e.blob_id, b.size FROM queue q JOIN envelopes e ON e.id = q.envelope_id"
        " JOIN blobs b ON b.id = e.blob_id WHERE q.id = ?",
        (item.id,),
    ).fetchone()
    copies = [MessageCopy(row[0], len(prefix) + row[1], item.received, prefix=prefix)]
    placed = place(c, item.account_id, "INBOX", copies)
    if placed is None:
        return None
    record_delayed(c, (item,), time.time(), delay_threshold)
    _drop_item(c, item.id)
    return placed[0]


def record_delayed(
    c: sqlite3.Connection, items: Sequence[QueueItem], settled_at: float, threshold: float
) -> None:
    """Record the items that settle more than `threshold` seconds after acceptance.

    Called by the settling transaction before the items are dropped (their envelope is needed to
    find the sender's account). The comparison is in Python, so the usual case — nothing
    delayed — costs no statement at all."""
    for item in items:
        if settled_at - item.received <= threshold:
            continue
        c.execute(
            "INSERT INTO delayed_mail(account, queue_id, accepted_at, settled_at)"
            f" SELECT {rows.ACCOUNT_OF_ITEM}, e.queue_id, e.received, ? FROM queue q"
            f" JOIN envelopes e ON e.id = q.envelope_id WHERE q.id = ?"
            f" AND {rows.ACCOUNT_OF_ITEM} IS NOT NULL",
            (settled_at, item.id),
        )


def defer(c: sqlite3.Connection, item: QueueItem, owner: str, when: float, error: str) -> bool:
    if not _holds_lease(c, item, owner):
        return False
    c.execute(
        "UPDATE queue SET attempts = attempts + 1, next_attempt = ?, last_error = ?,"
        " lease_owner = NULL, lease_until = NULL WHERE id = ?",
        (when, error, item.id),
    )
    return True


def renew(c: sqlite3.Connection, item_ids: Sequence[int], owner: str, until: float) -> int:
    renewed = 0
    for start in range(0, len(item_ids), 500):
        chunk = list(item_ids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        renewed += c.execute(
            f"UPDATE queue SET lease_until = ? WHERE lease_owner = ? AND id IN ({marks})",
            (until, owner, *chunk),
        ).rowcount
    return renewed


def settle(
    c: sqlite3.Connection, s: Settlement, owner: str, delay_threshold: float = math.inf
) -> list[int] | None:
    """One attempt's outcome; the mailboxes the notices reached, or None when a lease is lost.

    Delivered or bounced items that waited longer than `delay_threshold` are recorded as
    delayed mail in this same transaction."""
    items = [*s.delivered, *s.failed, *(d.item for d in s.deferred)]
    if not all(_holds_lease(c, item, owner) for item in items):
        return None
    record_delayed(c, (*s.delivered, *s.failed), time.time(), delay_threshold)
    for item in (*s.delivered, *s.failed):
        _drop_item(c, item.id)
    for d in s.deferred:
        f = d.failure
        c.execute(
            "UPDATE queue SET attempts = attempts + 1, next_attempt = ?, last_error = ?,"
            " last_attempt = ?, last_status = ?, remote_mta = ?, diagnostic = ?,"
            " warned = max(warned, ?), lease_owner = NULL, lease_until = NULL WHERE id = ?",
            (
                d.next_attempt,
                f.error,
                f.at,
                f.status,
                f.remote_mta,
                f.diagnostic,
                int(d.warned),
                d.item.id,
            ),
        )
    mailboxes: list[int] = []
    for notice in s.notices:
        mailboxes.extend(accept(c, notice).mailboxes)
    return mailboxes


def retry(c: sqlite3.Connection, queue_id: str | None, now: float) -> int:
    if queue_id is None:
        return c.execute("UPDATE queue SET next_attempt = ?", (now,)).rowcount
    return c.execute(
        "UPDATE queue SET next_attempt = ? WHERE envelope_id IN"
        " (SELECT id FROM envelopes WHERE queue_id = ?)",
        (now, queue_id),
    ).rowcount


def delete(c: sqlite3.Connection, queue_id: str) -> int:
    ids = [
        r[0]
        for r in c.execute(
            "SELECT q.id FROM queue q JOIN envelopes e ON e.id = q.envelope_id"
            " WHERE e.queue_id = ?",
            (queue_id,),
        )
    ]
    for item_id in ids:
        _drop_item(c, item_id)
    return len(ids)


def drop_account_items(c: sqlite3.Connection, account_id: int) -> int:
    ids = [r[0] for r in c.execute("SELECT id FROM queue WHERE account_id = ?", (account_id,))]
    for item_id in ids:
        _drop_item(c, item_id)
    return len(ids)


def _queue_body(c: sqlite3.Connection, queue_id: str) -> bytes | None:
    row = c.execute(
        "SELECT bl.data FROM envelopes e JOIN blobs bl ON bl.id = e.blob_id WHERE e.queue_id = ?",
        (queue_id,),
    ).fetchone()
    return bytes(row[0]) if row else None


class SqliteQueue(SqliteEngine):
    async def accept(self, request: AcceptRequest) -> AcceptResult:
        result = await self._write(lambda c: accept(c, request))
        self._changed(result.mailboxes)
        return result

    async def queue_items(self, queue_id: str | None = None) -> list[QueueItem]:
        return await self._read(lambda c: items(c, queue_id))

    async def queue_body(self, queue_id: str) -> bytes | None:
        return await self._read(lambda c: _queue_body(c, queue_id))

    async def claim_queue(
        self, owner: str, now: float, lease_seconds: float, limit: int, local_only: bool
    ) -> list[QueueItem]:
        return await self._write(lambda c: claim(c, owner, now, lease_seconds, limit, local_only))

    async def claim_remote(
        self, owner: str, now: float, lease_seconds: float, limit: int
    ) -> list[QueueItem]:
        return await self._write(
            lambda c: claim(c, owner, now, lease_seconds, limit, False, remote_only=True)
        )

    async def renew_lease(self, item_ids: Sequence[int], owner: str, until: float) -> int:
        if not item_ids:
            return 0
        return await self._write(lambda c: renew(c, item_ids, owner, until))

    async def deliver_queued(self, item: QueueItem, owner: str, prefix: bytes) -> bool:
        return self._delivered(
            await self._write(lambda c: deliver(c, item, owner, prefix, self.delay_threshold))
        )

    async def defer_queued(
        self, item: QueueItem, owner: str, next_attempt: float, error: str
    ) -> bool:
        return await self._write(lambda c: defer(c, item, owner, next_attempt, error))

    async def settle_queued(self, settlement: Settlement, owner: str) -> bool:
        mailboxes = await self._write(lambda c: settle(c, settlement, owner, self.delay_threshold))
        if mailboxes is None:
            return False
        if mailboxes:
            self._changed(mailboxes)
        return True

    async def retry_queue(self, queue_id: str | None, now: float) -> int:
        return await self._write(lambda c: retry(c, queue_id, now))

    async def delete_queue(self, queue_id: str) -> int:
        return await self._write(lambda c: delete(c, queue_id))
