"""Columns and row mappers both engines share: what a table's row means lives here once.

A row is whatever the driver hands back (a `sqlite3` tuple, an `asyncpg.Record`); both index by
position, so each `*_COLS` list and its mapper must keep the same order. SQL that differs between
the engines (placeholders, locking, upserts) stays in the engine; only the column lists and the
joins that read the same on both are here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from mailfort.store.flags import flag_set
from mailfort.store.records import (
    Account,
    ComponentRow,
    DelayedMail,
    HistoryRow,
    Mailbox,
    MessageRow,
    NodeInfo,
    QueueItem,
    RecordRow,
    WebhookRow,
    decode_json_dict,
    decode_json_list,
)

Row: TypeAlias = Sequence[Any]

ACCOUNT_COLS = "id, address, password_hash, quota_bytes, used_bytes, created"


def account(r: Row) -> Account:
    return Account(
        id=r[0], address=r[1], password_hash=r[2], quota_bytes=r[3], used_bytes=r[4], created=r[5]
    )


# The subscription flag and message count ride along, so one statement describes a mailbox.
MAILBOX_COLS = (
    "id, account_id, name, special_use,"
    " EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = mailboxes.account_id"
    " AND s.name = mailboxes.name), uidvalidity, uidnext, highestmodseq,"
    " (SELECT count(*) FROM messages m WHERE m.mailbox_id = mailboxes.id)"
)


def mailbox(r: Row) -> Mailbox:
    return Mailbox(
        id=r[0],
        account_id=r[1],
        name=r[2],
        special_use=r[3],
        subscribed=bool(r[4]),
        uidvalidity=r[5],
        uidnext=r[6],
        highestmodseq=r[7],
        messages=r[8],
    )


MESSAGE_COLS = "uid, modseq, flags, internal_date, size"


def message(r: Row) -> MessageRow:
    return MessageRow(uid=r[0], modseq=r[1], flags=flag_set(r[2]), internal_date=r[3], size=r[4])


@dataclass(frozen=True, slots=True)
class MessageCopy:
    """One message row to insert: a body already stored, with this copy's own columns."""

    blob_id: int
    size: int  # of the prefix and the body together: what the copy counts against the quota
    internal_date: float
    flags: str = ""
    prefix: bytes = b""


ITEM_SQL = (
    "SELECT q.id, e.queue_id, e.sender, q.recipient, q.original, q.account_id, b.size,"
    " e.received, q.attempts, q.next_attempt, q.last_error, q.lease_owner, q.lease_until,"
    " q.warned, q.last_attempt, q.last_status, q.remote_mta, q.diagnostic"
    " FROM queue q JOIN envelopes e ON e.id = q.envelope_id JOIN blobs b ON b.id = e.blob_id"
)


def queue_item(r: Row) -> QueueItem:
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


# The local account a queued message belongs to, for delay notices and per-customer status:
# the local recipient, else the account that sent it (its login, else its envelope sender).
ACCOUNT_OF_ITEM = (
    "coalesce((SELECT address FROM accounts WHERE id = q.account_id),"
    " (SELECT address FROM accounts WHERE address = coalesce(e.authenticated, e.sender)))"
)

# Blobs nothing refers to any more (after an account was deleted).
UNUSED_BLOBS = (
    "DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_id = blobs.id)"
    " AND NOT EXISTS (SELECT 1 FROM envelopes e WHERE e.blob_id = blobs.id)"
)

NODE_COLS = "name, state, started, heartbeat, listeners, load"


def node(r: Row) -> NodeInfo:
    return NodeInfo(
        name=r[0],
        state=r[1],
        started=r[2],
        heartbeat=r[3],
        listeners=decode_json_list(r[4]),
        load=decode_json_dict(r[5]),
    )


COMPONENT_COLS = "component, state, since, findings, updated_at"


def component(r: Row) -> ComponentRow:
    return ComponentRow(component=r[0], state=r[1], since=r[2], findings=r[3], updated_at=r[4])


HISTORY_COLS = "component, day, worst, worst_rank, degraded_seconds, outage_seconds"


def history(r: Row) -> HistoryRow:
    return HistoryRow(
        component=r[0],
        day=r[1],
        worst=r[2],
        rank=r[3],
        degraded_seconds=r[4],
        outage_seconds=r[5],
    )


INCIDENT_COLS = "id, data, version, origin, opened_at, updated_at, resolved_at"


def incident(r: Row) -> RecordRow:
    return RecordRow(
        id=r[0],
        data=r[1],
        version=r[2],
        origin=r[3],
        opened_at=r[4],
        updated_at=r[5],
        resolved_at=r[6],
    )


MAINTENANCE_COLS = "id, data, version, starts_at, ends_at, cancelled_at"


def maintenance(r: Row) -> RecordRow:
    return RecordRow(
        id=r[0], data=r[1], version=r[2], starts_at=r[3], ends_at=r[4], cancelled_at=r[5]
    )


WEBHOOK_COLS = "id, url, components, created_at, network"


def webhook(r: Row) -> WebhookRow:
    return WebhookRow(
        id=str(r[0]),
        url=str(r[1]),
        components=str(r[2]),
        created_at=float(r[3]),
        network=str(r[4]),
    )


DELAYED_COLS = "account, queue_id, accepted_at, settled_at"


def delayed(settled: Sequence[Row], waiting: Sequence[Row]) -> list[DelayedMail]:
    """Mail settled late (rows of DELAYED_COLS), then mail still waiting (account, queue id,
    accepted at)."""
    return [
        DelayedMail(account=r[0], queue_id=r[1], accepted_at=r[2], settled_at=r[3]) for r in settled
    ] + [
        DelayedMail(account=r[0], queue_id=r[1], accepted_at=r[2], settled_at=None) for r in waiting
    ]
