"""SQL for the status records on SQLite; each function runs inside one transaction.

Status rows are written by one leader every few seconds and by operators; they are read by every
node for its status page. Nothing here is on the mail path except `record_delayed`, which the
settling transaction calls only for items that already waited longer than the threshold.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

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
from mailfort.store.sqlite_queue import ACCOUNT_OF_ITEM, deliver_into

_INCIDENT_COLS = "id, data, version, origin, opened_at, updated_at, resolved_at"
_MAINTENANCE_COLS = "id, data, version, starts_at, ends_at, cancelled_at"


def components(c: sqlite3.Connection) -> list[ComponentRow]:
    rows = c.execute(
        "SELECT component, state, since, findings, updated_at FROM status_components"
        " ORDER BY component"
    )
    return [
        ComponentRow(component=r[0], state=r[1], since=r[2], findings=r[3], updated_at=r[4])
        for r in rows
    ]


def save_components(c: sqlite3.Connection, rows: Sequence[ComponentRow]) -> None:
    c.executemany(
        "INSERT INTO status_components(component, state, since, findings, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT(component) DO UPDATE SET state = excluded.state,"
        " since = excluded.since, findings = excluded.findings, updated_at = excluded.updated_at",
        [(r.component, r.state, r.since, r.findings, r.updated_at) for r in rows],
    )


def history(c: sqlite3.Connection, first_day: str) -> list[HistoryRow]:
    rows = c.execute(
        "SELECT component, day, worst, worst_rank, degraded_seconds, outage_seconds"
        " FROM status_history WHERE day >= ? ORDER BY component, day",
        (first_day,),
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


def add_history(c: sqlite3.Connection, rows: Sequence[HistoryRow], keep_from: str) -> None:
    c.executemany(
        "INSERT INTO status_history(component, day, worst, worst_rank, degraded_seconds,"
        " outage_seconds) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(component, day) DO UPDATE SET"
        " worst = CASE WHEN excluded.worst_rank > worst_rank THEN excluded.worst ELSE worst END,"
        " worst_rank = max(worst_rank, excluded.worst_rank),"
        " degraded_seconds = degraded_seconds + excluded.degraded_seconds,"
        " outage_seconds = outage_seconds + excluded.outage_seconds",
        [(r.component, r.day, r.worst, r.rank, r.degraded_seconds, r.outage_seconds) for r in rows],
    )
    c.execute("DELETE FROM status_history WHERE day < ?", (keep_from,))


def _incident(r: tuple) -> RecordRow:  # type: ignore[type-arg]
    return RecordRow(
        id=r[0],
        data=r[1],
        version=r[2],
        origin=r[3],
        opened_at=r[4],
        updated_at=r[5],
        resolved_at=r[6],
    )


def _maintenance(r: tuple) -> RecordRow:  # type: ignore[type-arg]
    return RecordRow(
        id=r[0], data=r[1], version=r[2], starts_at=r[3], ends_at=r[4], cancelled_at=r[5]
    )


def _version(c: sqlite3.Connection, table: str, record_id: str) -> int:
    row = c.execute(f"SELECT version FROM {table} WHERE id = ?", (record_id,)).fetchone()
    return 0 if row is None else int(row[0])


def put_incident(c: sqlite3.Connection, row: RecordRow, expect: int | None) -> int | None:
    current = _version(c, "status_incidents", row.id)
    if expect is not None and current != expect:
        return None
    c.execute(
        "INSERT INTO status_incidents(id, origin, opened_at, updated_at, resolved_at, version,"
        " data) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
        " origin = excluded.origin, opened_at = excluded.opened_at,"
        " updated_at = excluded.updated_at, resolved_at = excluded.resolved_at,"
        " version = excluded.version, data = excluded.data",
        (
            row.id,
            row.origin,
            row.opened_at,
            row.updated_at,
            row.resolved_at,
            current + 1,
            row.data,
        ),
    )
    return current + 1


def incident(c: sqlite3.Connection, incident_id: str) -> RecordRow | None:
    r = c.execute(
        f"SELECT {_INCIDENT_COLS} FROM status_incidents WHERE id = ?", (incident_id,)
    ).fetchone()
    return None if r is None else _incident(r)


def incidents(
    c: sqlite3.Connection,
    open_only: bool,
    since: float | None,
    resolved_since: float | None,
    limit: int,
) -> list[RecordRow]:
    where, args = ["1"], []
    if open_only:
        where.append("resolved_at IS NULL")
    if since is not None:
        where.append("updated_at >= ?")
        args.append(since)
    if resolved_since is not None:
        where.append("resolved_at >= ?")
        args.append(resolved_since)
    rows = c.execute(
        f"SELECT {_INCIDENT_COLS} FROM status_incidents WHERE {' AND '.join(where)}"
        " ORDER BY updated_at DESC, id DESC LIMIT ?",
        (*args, limit),
    )
    return [_incident(r) for r in rows]


def put_maintenance(c: sqlite3.Connection, row: RecordRow, expect: int | None) -> int | None:
    current = _version(c, "status_maintenance", row.id)
    if expect is not None and current != expect:
        return None
    c.execute(
        "INSERT INTO status_maintenance(id, starts_at, ends_at, cancelled_at, version, data)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET starts_at = excluded.starts_at,"
        " ends_at = excluded.ends_at, cancelled_at = excluded.cancelled_at,"
        " version = excluded.version, data = excluded.data",
        (row.id, row.starts_at, row.ends_at, row.cancelled_at, current + 1, row.data),
    )
    return current + 1


def maintenance_window(c: sqlite3.Connection, maintenance_id: str) -> RecordRow | None:
    r = c.execute(
        f"SELECT {_MAINTENANCE_COLS} FROM status_maintenance WHERE id = ?", (maintenance_id,)
    ).fetchone()
    return None if r is None else _maintenance(r)


def maintenance(c: sqlite3.Connection, ends_after: float | None) -> list[RecordRow]:
    if ends_after is None:
        rows = c.execute(
            f"SELECT {_MAINTENANCE_COLS} FROM status_maintenance ORDER BY starts_at, id"
        )
    else:
        rows = c.execute(
            f"SELECT {_MAINTENANCE_COLS} FROM status_maintenance"
            " WHERE ends_at > ? AND cancelled_at IS NULL ORDER BY starts_at, id",
            (ends_after,),
        )
    return [_maintenance(r) for r in rows]


def add_webhook(
    c: sqlite3.Connection,
    row: WebhookRow,
    max_total: int | None,
    max_per_network: int | None,
) -> WebhookAdded:
    # One writer runs this whole transaction, so the counts cannot change under it.
    existing = c.execute(f"SELECT {_WEBHOOK_COLS} FROM status_webhooks WHERE url = ?", (row.url,))
    found = existing.fetchone()
    if found is not None:
        return WebhookAdded(WebhookOutcome.EXISTS, _webhook(found))
    if max_total is not None:
        (total,) = c.execute("SELECT count(*) FROM status_webhooks").fetchone()
        if total >= max_total:
            return WebhookAdded(WebhookOutcome.FULL, None)
    if max_per_network is not None and row.network:
        (mine,) = c.execute(
            "SELECT count(*) FROM status_webhooks WHERE network = ?", (row.network,)
        ).fetchone()
        if mine >= max_per_network:
            return WebhookAdded(WebhookOutcome.NETWORK_FULL, None)
    c.execute(
        "INSERT INTO status_webhooks(id, url, components, created_at, network)"
        " VALUES (?, ?, ?, ?, ?)",
        (row.id, row.url, row.components, row.created_at, row.network),
    )
    return WebhookAdded(WebhookOutcome.CREATED, row)


def remove_webhook(c: sqlite3.Connection, webhook_id: str) -> bool:
    return c.execute("DELETE FROM status_webhooks WHERE id = ?", (webhook_id,)).rowcount > 0


def webhooks(c: sqlite3.Connection) -> list[WebhookRow]:
    rows = c.execute(f"SELECT {_WEBHOOK_COLS} FROM status_webhooks ORDER BY created_at, id")
    return [_webhook(r) for r in rows]


_WEBHOOK_COLS = "id, url, components, created_at, network"


def _webhook(r: Sequence[object]) -> WebhookRow:
    return WebhookRow(
        id=str(r[0]),
        url=str(r[1]),
        components=str(r[2]),
        created_at=float(r[3]),  # type: ignore[arg-type]
        network=str(r[4]),
    )


def new_id(c: sqlite3.Connection, prefix: str) -> str:
    value = c.execute(
        "INSERT INTO status_counters(prefix, value) VALUES (?, 1)"
        " ON CONFLICT(prefix) DO UPDATE SET value = value + 1 RETURNING value",
        (prefix,),
    ).fetchone()[0]
    return f"{prefix}-{value}"


def acquire_lease(c: sqlite3.Connection, name: str, owner: str, until: float, now: float) -> bool:
    c.execute(
        "INSERT INTO leases(name, owner, until) VALUES (?, ?, ?)"
        " ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, until = excluded.until"
        " WHERE leases.until <= ? OR leases.owner = excluded.owner",
        (name, owner, until, now),
    )
    found = c.execute("SELECT owner FROM leases WHERE name = ?", (name,)).fetchone()
    return found is not None and found[0] == owner


def release_lease(c: sqlite3.Connection, name: str, owner: str) -> None:
    c.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))


def lease_holder(c: sqlite3.Connection, name: str, now: float) -> str | None:
    found = c.execute(
        "SELECT owner FROM leases WHERE name = ? AND until > ?", (name, now)
    ).fetchone()
    return None if found is None else str(found[0])


def delayed_mail(
    c: sqlite3.Connection, since: float, until: float, now: float, threshold: float
) -> list[DelayedMail]:
    settled = c.execute(
        "SELECT account, queue_id, accepted_at, settled_at FROM delayed_mail"
        " WHERE settled_at >= ? AND settled_at <= ?"
        " AND settled_at - accepted_at > ? ORDER BY settled_at, id",
        (since, until, threshold),
    ).fetchall()
    waiting = c.execute(
        f"SELECT account, queue_id, received FROM (SELECT {ACCOUNT_OF_ITEM} AS account,"
        " e.queue_id, e.received FROM queue q JOIN envelopes e ON e.id = q.envelope_id"
        " WHERE q.created < ?) WHERE account IS NOT NULL ORDER BY received",
        (now - threshold,),
    ).fetchall()
    return [
        DelayedMail(account=r[0], queue_id=r[1], accepted_at=r[2], settled_at=r[3]) for r in settled
    ] + [
        DelayedMail(account=r[0], queue_id=r[1], accepted_at=r[2], settled_at=None) for r in waiting
    ]


# Both aggregates come from the partial covering index queue_untried alone (the tests EXPLAIN it).
QUEUE_HEALTH_SQL = (
    "SELECT count(*), min(created) FROM queue INDEXED BY queue_untried"
    " WHERE attempts = 0 AND next_attempt <= ? AND (lease_until IS NULL OR lease_until < ?)"
)


def queue_health(c: sqlite3.Connection, now: float) -> tuple[int, float | None]:
    row = c.execute(QUEUE_HEALTH_SQL, (now, now)).fetchone()
    return int(row[0]), row[1]


def account_queue(c: sqlite3.Connection, account_id: int, address: str) -> AccountQueue:
    sent = c.execute(
        "SELECT count(*), min(received) FROM envelopes"
        " WHERE coalesce(authenticated, sender) = ?"
        " AND EXISTS (SELECT 1 FROM queue q WHERE q.envelope_id = envelopes.id)",
        (address,),
    ).fetchone()
    received = c.execute(
        "SELECT count(*), min(e.received) FROM queue q JOIN envelopes e ON e.id = q.envelope_id"
        " WHERE q.account_id = ?",
        (account_id,),
    ).fetchone()
    last = c.execute(
        "SELECT m.internal_date FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
        " WHERE b.account_id = ? AND b.name = 'INBOX' ORDER BY m.uid DESC LIMIT 1",
        (account_id,),
    ).fetchone()
    oldest = [t for t in (sent[1], received[1]) if t is not None]
    return AccountQueue(
        queued_from=int(sent[0]),
        queued_for=int(received[0]),
        oldest_queued_at=min(oldest) if oldest else None,
        last_inbox_delivery=None if last is None else last[0],
    )


def deliver_notice(
    c: sqlite3.Connection, key: str, account_id: int, message: bytes, now: float
) -> int | None:
    """The INBOX id the notice went to, or None when it was delivered for `key` before."""
    marked = c.execute(
        "INSERT INTO status_notices(key, account_id, delivered_at) VALUES (?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (key, account_id, now),
    ).rowcount
    if not marked:
        return None
    cur = c.execute("INSERT INTO blobs(data, size) VALUES (?, ?)", (message, len(message)))
    assert cur.lastrowid is not None
    placed = deliver_into(c, account_id, "INBOX", cur.lastrowid, len(message), b"", now)
    if placed is None:
        raise NotFound(f"account {account_id} has no INBOX")
    return placed[0]
