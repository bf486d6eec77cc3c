"""Columns and row mappers both engines share: what a table's row means lives here once.

A row is whatever the driver hands back (a `sqlite3` tuple, an `asyncpg.Record`); both index by
position, so each `*_COLS` list and its mapper must keep the same order. SQL that differs between
the engines (placeholders, locking, upserts) stays in the engine; only the column lists and the
joins that read the same on both are here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from mailfort.store.flags import flag_set
from mailfort.store.records import (
    Account,
    ComponentRow,
    DelayedMail,
    DkimKey,
    DkimState,
    HistoryRow,
    Mailbox,
    MailboxStatus,
    MessageRow,
    NodeInfo,
    QueueItem,
    RecordRow,
    StoredCertificate,
    TlsResultRow,
    WebhookRow,
    decode_json_dict,
    decode_json_list,
    encode_json,
)

Row: TypeAlias = Sequence[Any]
T = TypeVar("T")


def by_name(
    make: Callable[..., T], cols: str, **convert: Callable[[Any], object]
) -> Callable[[Row], T]:
    """A mapper for rows of `cols`: each column (its name after AS, without a table alias) fills
    the record's field of that name, through `convert[name]` where the driver's value is not the
    field's (SQLite answers 0/1 for booleans, JSON columns are text)."""
    names = tuple(col.split()[-1].rpartition(".")[2] for col in cols.split(","))

    def build(r: Row) -> T:
        fields = dict(zip(names, r, strict=True))
        for name, to_field in convert.items():
            fields[name] = to_field(fields[name])
        return make(**fields)

    return build


ACCOUNT_COLS = "id, address, password_hash, quota_bytes, used_bytes, created"
account = by_name(Account, ACCOUNT_COLS)


# The subscription flag and message count ride along, so one statement describes a mailbox.
MAILBOX_COLS = (
    "id, account_id, name, special_use,"
    " EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = mailboxes.account_id"
    " AND s.name = mailboxes.name) AS subscribed, uidvalidity, uidnext, highestmodseq,"
    " (SELECT count(*) FROM messages m WHERE m.mailbox_id = mailboxes.id) AS messages"
)
mailbox = by_name(Mailbox, MAILBOX_COLS, subscribed=bool)


MESSAGE_COLS = "uid, modseq, flags, internal_date, size"


def message(r: Row) -> MessageRow:
    # By position: a SELECT maps every message of the mailbox, so this is the hot mapper.
    return MessageRow(uid=r[0], modseq=r[1], flags=flag_set(r[2]), internal_date=r[3], size=r[4])


@dataclass(frozen=True, slots=True)
class MessageCopy:
    """One message row to insert: a body already stored, with this copy's own columns."""

    blob_id: int
    size: int  # of the prefix and the body together: what the copy counts against the quota
    internal_date: float
    flags: str = ""
    prefix: bytes = b""


ITEM_COLS = (
    "q.id, e.queue_id, e.sender, q.recipient, q.original, q.account_id, b.size,"
    " e.received, q.attempts, q.next_attempt, q.last_error, q.lease_owner, q.lease_until,"
    " q.warned, q.last_attempt, q.last_status, q.remote_mta, q.diagnostic, e.authenticated"
)
ITEM_SQL = (
    f"SELECT {ITEM_COLS}"
    " FROM queue q JOIN envelopes e ON e.id = q.envelope_id JOIN blobs b ON b.id = e.blob_id"
)
queue_item = by_name(QueueItem, ITEM_COLS, warned=bool)


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


node = by_name(NodeInfo, NODE_COLS, listeners=decode_json_list, load=decode_json_dict)


COMPONENT_COLS = "component, state, since, findings, updated_at"
component = by_name(ComponentRow, COMPONENT_COLS)


HISTORY_COLS = "component, day, worst, worst_rank AS rank, degraded_seconds, outage_seconds"
history = by_name(HistoryRow, HISTORY_COLS)


INCIDENT_COLS = "id, data, version, origin, opened_at, updated_at, resolved_at"
incident = by_name(RecordRow, INCIDENT_COLS)
# What writing an incident sets, besides its id and version.
INCIDENT_FIELDS = ("origin", "opened_at", "updated_at", "resolved_at", "data")


MAINTENANCE_COLS = "id, data, version, starts_at, ends_at, cancelled_at"
maintenance = by_name(RecordRow, MAINTENANCE_COLS)
MAINTENANCE_FIELDS = ("starts_at", "ends_at", "cancelled_at", "data")


WEBHOOK_COLS = "id, url, components, created_at, network"
webhook = by_name(WebhookRow, WEBHOOK_COLS)


TLS_RESULT_COLS = "day, domain, policy_type, policy, mx_host, result, address, sessions"
tls_result = by_name(TlsResultRow, TLS_RESULT_COLS)


def tls_result_values(rows: Sequence[TlsResultRow]) -> list[tuple[str | int, ...]]:
    """Parameters for inserting `rows` in TLS_RESULT_COLS order, in one order every time (so
    that two nodes' concurrent upserts take their row locks alike and never deadlock)."""
    ordered = sorted(
        rows,
        key=lambda r: (r.day, r.domain, r.policy_type, r.policy, r.mx_host, r.result, r.address),
    )
    return [
        (r.day, r.domain, r.policy_type, r.policy, r.mx_host, r.result, r.address, r.sessions)
        for r in ordered
    ]


DELAYED_COLS = "account, queue_id, accepted_at, settled_at"


_delayed = by_name(DelayedMail, DELAYED_COLS)


def delayed(settled: Sequence[Row], waiting: Sequence[Row]) -> list[DelayedMail]:
    """Mail settled late (rows of DELAYED_COLS), then mail still waiting (the same without
    `settled_at`)."""
    return [*map(_delayed, settled), *(_delayed((*r, None)) for r in waiting)]


def mailbox_status(box: Row, counts: Row) -> MailboxStatus:
    """From (uidnext, uidvalidity, highestmodseq) and (messages, size, unseen, deleted)."""
    return MailboxStatus(
        messages=counts[0],
        size=counts[1],
        unseen=counts[2],
        deleted=counts[3],
        uidnext=box[0],
        uidvalidity=box[1],
        highestmodseq=box[2],
    )


DKIM_COLS = (
    "domain, selector, algorithm, private_key, public_key, state, created, activated_at,"
    " retire_after, retired_at"
)
dkim_key = by_name(DkimKey, DKIM_COLS, state=DkimState)


def dkim_values(k: DkimKey) -> tuple[object, ...]:
    """A key's values in DKIM_COLS order, for each engine's INSERT."""
    return (
        k.domain,
        k.selector,
        k.algorithm,
        k.private_key,
        k.public_key,
        k.state.value,
        k.created,
        k.activated_at,
        k.retire_after,
        k.retired_at,
    )


CERTIFICATE_COLS = "name, chain_pem, key_pem, names, not_after, updated"


def _names(text: str) -> tuple[str, ...]:
    try:
        value = json.loads(text)
    except ValueError:
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


certificate = by_name(StoredCertificate, CERTIFICATE_COLS, names=_names)
# After each engine's `INSERT INTO certificates(CERTIFICATE_COLS) VALUES (…)`, the values in order.
CERTIFICATE_REPLACE = (
    " ON CONFLICT (name) DO UPDATE SET chain_pem = excluded.chain_pem,"
    " key_pem = excluded.key_pem, names = excluded.names, not_after = excluded.not_after,"
    " updated = excluded.updated"
)


def certificate_values(cert: StoredCertificate) -> tuple[object, ...]:
    names = encode_json(list(cert.names))
    return (cert.name, cert.chain_pem, cert.key_pem, names, cert.not_after, cert.updated)
