"""SQL for the status records on PostgreSQL; each function runs inside one transaction.

The same records as `sqlite_status`. What PostgreSQL adds is concurrency between nodes: version
checks and counters are single statements (`UPDATE … WHERE version = $n`, `INSERT … ON CONFLICT
… RETURNING`), so two nodes or an operator and the leader cannot both win a race.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from mailfort.errors import NotFound
from mailfort.store.api import (
    AccountQueue,
    ComponentRow,
    DelayedMail,
    HistoryRow,
    RecordRow,
    WebhookAdded,
    WebhookOutcome,
    WebhookRow,
)
from mailfort.store.postgres_conn import Conn
from mailfort.store.postgres_queue import ACCOUNT_OF_ITEM, deliver_into

_INCIDENT_COLS = "id, data, version, origin, opened_at, updated_at, resolved_at"
_MAINTENANCE_COLS = "id, data, version, starts_at, ends_at, cancelled_at"


async def components(c: Conn) -> list[ComponentRow]:
    rows = await c.fetch(
        "SELECT component, state, since, findings, updated_at FROM status_components"
        " ORDER BY component"
    )
    return [
        ComponentRow(component=r[0], state=r[1], since=r[2], findings=r[3], updated_at=r[4])
        for r in rows
    ]


async def save_components(c: Conn, rows: Sequence[ComponentRow]) -> None:
    await c.executemany(
        "INSERT INTO status_components(component, state, since, findings, updated_at)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (component) DO UPDATE SET"
        " state = EXCLUDED.state, since = EXCLUDED.since, findings = EXCLUDED.findings,"
        " updated_at = EXCLUDED.updated_at",
        [(r.component, r.state, r.since, r.findings, r.updated_at) for r in rows],
    )


async def history(c: Conn, first_day: str) -> list[HistoryRow]:
    rows = await c.fetch(
        "SELECT component, day, worst, worst_rank, degraded_seconds, outage_seconds"
        " FROM status_history WHERE day >= $1 ORDER BY component, day",
        first_day,
    )
    return [
        HistoryRow(
            component=r[0],
            day=r[1],
            worst=r[2],
            rank=r[3],
            degraded_seconds=r[4],
            outage_seconds=r[5],
        )
        for r in rows
    ]


async def add_history(c: Conn, rows: Sequence[HistoryRow], keep_from: str) -> None:
    # Sorted by key: two writers (an old and a new leader overlapping) lock rows in one order.
    ordered = sorted(rows, key=lambda r: (r.component, r.day))
    await c.executemany(
        "INSERT INTO status_history(component, day, worst, worst_rank, degraded_seconds,"
        " outage_seconds) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (component, day) DO UPDATE"
        " SET worst = CASE WHEN EXCLUDED.worst_rank > status_history.worst_rank"
        " THEN EXCLUDED.worst ELSE status_history.worst END,"
        " worst_rank = greatest(status_history.worst_rank, EXCLUDED.worst_rank),"
        " degraded_seconds = status_history.degraded_seconds + EXCLUDED.degraded_seconds,"
        " outage_seconds = status_history.outage_seconds + EXCLUDED.outage_seconds",
        [
            (r.component, r.day, r.worst, r.rank, r.degraded_seconds, r.outage_seconds)
            for r in ordered
        ],
    )
    await c.execute("DELETE FROM status_history WHERE day < $1", keep_from)


def _incident(r: asyncpg.Record) -> RecordRow:
    return RecordRow(
        id=r[0],
        data=r[1],
        version=r[2],
        origin=r[3],
        opened_at=r[4],
        updated_at=r[5],
        resolved_at=r[6],
    )


def _maintenance(r: asyncpg.Record) -> RecordRow:
    return RecordRow(
        id=r[0], data=r[1], version=r[2], starts_at=r[3], ends_at=r[4], cancelled_at=r[5]
    )


async def put_incident(c: Conn, row: RecordRow, expect: int | None) -> int | None:
    values = (row.id, row.origin, row.opened_at, row.updated_at, row.resolved_at, row.data)
    if expect is not None and expect > 0:
        version = await c.fetchval(
            "UPDATE status_incidents SET origin = $2, opened_at = $3, updated_at = $4,"
            " resolved_at = $5, data = $6, version = version + 1"
            " WHERE id = $1 AND version = $7 RETURNING version",
            *values,
            expect,
        )
    else:
        conflict = (
            "DO NOTHING"
            if expect == 0
            else "DO UPDATE SET origin = EXCLUDED.origin, opened_at = EXCLUDED.opened_at,"
            " updated_at = EXCLUDED.updated_at, resolved_at = EXCLUDED.resolved_at,"
            " data = EXCLUDED.data, version = status_incidents.version + 1"
        )
        version = await c.fetchval(
            "INSERT INTO status_incidents(id, origin, opened_at, updated_at, resolved_at, data)"
            f" VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) {conflict} RETURNING version",
            *values,
        )
    return None if version is None else int(version)


async def incident(c: Conn, incident_id: str) -> RecordRow | None:
    r = await c.fetchrow(
        f"SELECT {_INCIDENT_COLS} FROM status_incidents WHERE id = $1", incident_id
    )
    return None if r is None else _incident(r)


async def incidents(
    c: Conn, open_only: bool, since: float | None, resolved_since: float | None, limit: int
) -> list[RecordRow]:
    where, args = ["TRUE"], []
    if open_only:
        where.append("resolved_at IS NULL")
    if since is not None:
        args.append(since)
        where.append(f"updated_at >= ${len(args)}")
    if resolved_since is not None:
        args.append(resolved_since)
        where.append(f"resolved_at >= ${len(args)}")
    args.append(limit)
    rows = await c.fetch(
        f"SELECT {_INCIDENT_COLS} FROM status_incidents WHERE {' AND '.join(where)}"
        f" ORDER BY updated_at DESC, id DESC LIMIT ${len(args)}",
        *args,
    )
    return [_incident(r) for r in rows]


async def put_maintenance(c: Conn, row: RecordRow, expect: int | None) -> int | None:
    values = (row.id, row.starts_at, row.ends_at, row.cancelled_at, row.data)
    if expect is not None and expect > 0:
        version = await c.fetchval(
            "UPDATE status_maintenance SET starts_at = $2, ends_at = $3, cancelled_at = $4,"
            " data = $5, version = version + 1 WHERE id = $1 AND version = $6 RETURNING version",
            *values,
            expect,
        )
    else:
        conflict = (
            "DO NOTHING"
            if expect == 0
            else "DO UPDATE SET starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at,"
            " cancelled_at = EXCLUDED.cancelled_at, data = EXCLUDED.data,"
            " version = status_maintenance.version + 1"
        )
        version = await c.fetchval(
            "INSERT INTO status_maintenance(id, starts_at, ends_at, cancelled_at, data)"
            f" VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) {conflict} RETURNING version",
            *values,
        )
    return None if version is None else int(version)


async def maintenance_window(c: Conn, maintenance_id: str) -> RecordRow | None:
    r = await c.fetchrow(
        f"SELECT {_MAINTENANCE_COLS} FROM status_maintenance WHERE id = $1", maintenance_id
    )
    return None if r is None else _maintenance(r)


async def maintenance(c: Conn, ends_after: float | None) -> list[RecordRow]:
    if ends_after is None:
        rows = await c.fetch(
            f"SELECT {_MAINTENANCE_COLS} FROM status_maintenance ORDER BY starts_at, id"
        )
    else:
        rows = await c.fetch(
            f"SELECT {_MAINTENANCE_COLS} FROM status_maintenance"
            " WHERE ends_at > $1 AND cancelled_at IS NULL ORDER BY starts_at, id",
            ends_after,
        )
    return [_maintenance(r) for r in rows]


# pg_advisory_xact_lock key for subscribing: the caps are counts over the table, and two nodes
# counting at once under READ COMMITTED would both see room for one more.
_WEBHOOK_LOCK = 0x6D66_7768  # "mfwh"


async def add_webhook(
    c: Conn, row: WebhookRow, max_total: int | None, max_per_network: int | None
) -> WebhookAdded:
    await c.execute("SELECT pg_advisory_xact_lock($1)", _WEBHOOK_LOCK)
    found = await c.fetchrow(f"SELECT {_WEBHOOK_COLS} FROM status_webhooks WHERE url = $1", row.url)
    if found is not None:
        return WebhookAdded(WebhookOutcome.EXISTS, _webhook(found))
    if max_total is not None:
        total = await c.fetchval("SELECT count(*) FROM status_webhooks")
        if total >= max_total:
            return WebhookAdded(WebhookOutcome.FULL, None)
    if max_per_network is not None and row.network:
        mine = await c.fetchval(
            "SELECT count(*) FROM status_webhooks WHERE network = $1", row.network
        )
        if mine >= max_per_network:
            return WebhookAdded(WebhookOutcome.NETWORK_FULL, None)
    await c.execute(
        "INSERT INTO status_webhooks(id, url, components, created_at, network)"
        " VALUES ($1, $2, $3, $4, $5)",
        row.id,
        row.url,
        row.components,
        row.created_at,
        row.network,
    )
    return WebhookAdded(WebhookOutcome.CREATED, row)


async def remove_webhook(c: Conn, webhook_id: str) -> bool:
    done = await c.fetchval("DELETE FROM status_webhooks WHERE id = $1 RETURNING 1", webhook_id)
    return done is not None


async def webhooks(c: Conn) -> list[WebhookRow]:
    rows = await c.fetch(f"SELECT {_WEBHOOK_COLS} FROM status_webhooks ORDER BY created_at, id")
    return [_webhook(r) for r in rows]


_WEBHOOK_COLS = "id, url, components, created_at, network"


def _webhook(r: asyncpg.Record) -> WebhookRow:
    return WebhookRow(id=r[0], url=r[1], components=r[2], created_at=float(r[3]), network=r[4])


async def new_id(c: Conn, prefix: str) -> str:
    value = await c.fetchval(
        "INSERT INTO status_counters(prefix, value) VALUES ($1, 1) ON CONFLICT (prefix)"
        " DO UPDATE SET value = status_counters.value + 1 RETURNING value",
        prefix,
    )
    return f"{prefix}-{value}"


async def acquire_lease(c: Conn, name: str, owner: str, until: float, now: float) -> bool:
    done = await c.fetchval(
        "INSERT INTO leases(name, owner, until) VALUES ($1, $2, $3)"
        " ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until"
        " WHERE leases.until <= $4 OR leases.owner = EXCLUDED.owner RETURNING 1",
        name,
        owner,
        until,
        now,
    )
    return done is not None


async def release_lease(c: Conn, name: str, owner: str) -> None:
    await c.execute("DELETE FROM leases WHERE name = $1 AND owner = $2", name, owner)


async def lease_holder(c: Conn, name: str, now: float) -> str | None:
    owner = await c.fetchval("SELECT owner FROM leases WHERE name = $1 AND until > $2", name, now)
    return None if owner is None else str(owner)


async def delayed_mail(
    c: Conn, since: float, until: float, now: float, threshold: float
) -> list[DelayedMail]:
    settled = await c.fetch(
        "SELECT account, queue_id, accepted_at, settled_at FROM delayed_mail"
        " WHERE settled_at >= $1 AND settled_at <= $2"
        " AND settled_at - accepted_at > $3 ORDER BY settled_at, id",
        since,
        until,
        threshold,
    )
    waiting = await c.fetch(
        f"SELECT account, queue_id, received FROM (SELECT {ACCOUNT_OF_ITEM} AS account,"
        " e.queue_id, e.received FROM queue q JOIN envelopes e ON e.id = q.envelope_id"
        " WHERE q.created < $1) AS w WHERE account IS NOT NULL ORDER BY received",
        now - threshold,
    )
    return [
        DelayedMail(account=r[0], queue_id=r[1], accepted_at=r[2], settled_at=r[3]) for r in settled
    ] + [
        DelayedMail(account=r[0], queue_id=r[1], accepted_at=r[2], settled_at=None) for r in waiting
    ]


async def queue_health(c: Conn, now: float) -> tuple[int, float | None]:
    # Both aggregates from the partial index queue_untried (an index-only scan once vacuumed).
    r = await c.fetchrow(
        "SELECT count(*), min(created) FROM queue WHERE attempts = 0 AND next_attempt <= $1"
        " AND (lease_until IS NULL OR lease_until < $1)",
        now,
    )
    return int(r[0]), r[1]


async def account_queue(c: Conn, account_id: int, address: str) -> AccountQueue:
    sent = await c.fetchrow(
        "SELECT count(*), min(received) FROM envelopes"
        " WHERE coalesce(authenticated, sender) = $1"
        " AND EXISTS (SELECT 1 FROM queue q WHERE q.envelope_id = envelopes.id)",
        address,
    )
    received = await c.fetchrow(
        "SELECT count(*), min(e.received) FROM queue q JOIN envelopes e ON e.id = q.envelope_id"
        " WHERE q.account_id = $1",
        account_id,
    )
    last = await c.fetchval(
        "SELECT m.internal_date FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
        " WHERE b.account_id = $1 AND b.name = 'INBOX' ORDER BY m.uid DESC LIMIT 1",
        account_id,
    )
    oldest = [t for t in (sent[1], received[1]) if t is not None]
    return AccountQueue(
        queued_from=int(sent[0]),
        queued_for=int(received[0]),
        oldest_queued_at=min(oldest) if oldest else None,
        last_inbox_delivery=last,
    )


async def deliver_notice(
    c: Conn, key: str, account_id: int, message: bytes, now: float
) -> int | None:
    """The INBOX id the notice went to, or None when it was delivered for `key` before."""
    marked = await c.fetchval(
        "INSERT INTO status_notices(key, account_id, delivered_at) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        key,
        account_id,
        now,
    )
    if marked is None:
        return None
    blob_id = await c.fetchval(
        "INSERT INTO blobs(data, size) VALUES ($1, $2) RETURNING id", message, len(message)
    )
    placed = await deliver_into(c, account_id, "INBOX", blob_id, len(message), b"", now)
    if placed is None:
        raise NotFound(f"account {account_id} has no INBOX")
    return placed[0]
