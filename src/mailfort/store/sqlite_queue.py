"""SQL for acceptance, local delivery and the queue on SQLite; each call is one transaction.

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
from mailfort.store.api import (
    AcceptRequest,
    AcceptResult,
    QueuedRecipient,
    QueueItem,
    Settlement,
)

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


def _item(row: tuple) -> QueueItem:  # type: ignore[type-arg]
    return QueueItem(
        id=row[0],
        queue_id=row[1],
        sender=row[2],
        recipient=row[3],
        original=row[4],
        account_id=row[5],
        size=row[6],
        received=row[7],
        attempts=row[8],
        next_attempt=row[9],
        last_error=row[10],
        lease_owner=row[11],
        lease_until=row[12],
        warned=bool(row[13]),
        last_attempt=row[14],
        last_status=row[15],
        remote_mta=row[16],
        diagnostic=row[17],
    )


def deliver_into(
    c: sqlite3.Connection,
    account_id: int,
    mailbox: str,
    blob_id: int,
    body_size: int,
    prefix: bytes,
    internal_date: float,
    flags: str = "",
) -> tuple[int, int] | None:
    """Append one copy to a mailbox: next UID, bumped MODSEQ, quota use.

    Returns (mailbox id, UID), or None when the account has no such mailbox."""
    row = c.execute(
        "SELECT id, uidnext, highestmodseq FROM mailboxes WHERE account_id = ? AND name = ?",
        (account_id, mailbox),
    ).fetchone()
    if row is None:
        return None
    mailbox_id, uid, modseq = row[0], row[1], row[2] + 1
    size = len(prefix) + body_size
    c.execute(
        "UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?",
        (uid + 1, modseq, mailbox_id),
    )
    c.execute(
        "INSERT INTO messages(mailbox_id, uid, modseq, flags, internal_date, size, blob_id, prefix)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (mailbox_id, uid, modseq, flags, internal_date, size, blob_id, prefix),
    )
    c.execute("UPDATE accounts SET used_bytes = used_bytes + ? WHERE id = ?", (size, account_id))
    return int(mailbox_id), int(uid)


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
        placed = deliver_into(
            c, copy.account_id, "INBOX", blob_id, len(req.body), copy.prefix, req.received
        )
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
        rows = c.execute(_ITEM_SQL + " ORDER BY e.received, q.id")
    else:
        rows = c.execute(_ITEM_SQL + " WHERE e.queue_id = ? ORDER BY q.id", (queue_id,))
    return [_item(r) for r in rows]


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
    return [_item(r) for r in c.execute(_ITEM_SQL + f" WHERE q.id IN ({marks})", ids)]


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
    placed = deliver_into(c, item.account_id, "INBOX", row[0], row[1], prefix, item.received)
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
            f" SELECT {ACCOUNT_OF_ITEM}, e.queue_id, e.received, ? FROM queue q"
            f" JOIN envelopes e ON e.id = q.envelope_id WHERE q.id = ?"
            f" AND {ACCOUNT_OF_ITEM} IS NOT NULL",
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


def collect_blobs(c: sqlite3.Connection) -> None:
    """Remove bodies nothing refers to any more (after an account was deleted)."""
    c.execute(
        "DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_id = blobs.id)"
        " AND NOT EXISTS (SELECT 1 FROM envelopes e WHERE e.blob_id = blobs.id)"
    )
