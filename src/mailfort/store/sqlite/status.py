"""Status records, notices and mail health on SQLite (roles `StatusRecords`, `MailHealth`).

Each write runs inside one writer transaction.

Status rows are written by one leader every few seconds and by operators; they are read by every
node for its status page. Nothing here is on the mail path except `record_delayed`, which the
settling transaction calls only for items that already waited longer than the threshold.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from mailfort.errors import NotFound
from mailfort.store import rows
from mailfort.store.records import (
    AccountQueue,
    ComponentRow,
    DelayedMail,
    HistoryRow,
    RecordRow,
    WebhookAdded,
    WebhookOutcome,
    WebhookRow,
)
from mailfort.store.rows import MessageCopy
from mailfort.store.sqlite.engine import SqliteEngine
from mailfort.store.sqlite.mailboxes import place


def components(c: sqlite3.Connection) -> list[ComponentRow]:
    found = c.execute(f"SELECT {rows.COMPONENT_COLS} FROM status_components ORDER BY component")
    return [rows.component(r) for r in found]


def save_components(c: sqlite3.Connection, rows: Sequence[ComponentRow]) -> None:
    c.executemany(
        "INSERT INTO status_components(component, state, since, findings, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT(component) DO UPDATE SET state = excluded.state,"
        " since = excluded.since, findings = excluded.findings, updated_at = excluded.updated_at",
        [(r.component, r.state, r.since, r.findings, r.updated_at) for r in rows],
    )


def history(c: sqlite3.Connection, first_day: str) -> list[HistoryRow]:
    found = c.execute(
        f"SELECT {rows.HISTORY_COLS} FROM status_history WHERE day >= ? ORDER BY component, day",
        (first_day,),
    )
    return [rows.history(r) for r in found]


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


def _version(c: sqlite3.Connection, table: str, record_id: str) -> int:
    row = c.execute(f"SELECT version FROM {table} WHERE id = ?", (record_id,)).fetchone()
    return 0 if row is None else int(row[0])


def _put(
    c: sqlite3.Connection, table: str, fields: tuple[str, ...], row: RecordRow, expect: int | None
) -> int | None:
    """Insert or replace a versioned record; its new version, or None when `expect` is given and
    the stored version (0: none) is another. One writer runs the whole transaction, so the
    version cannot change between the check and the write."""
    current = _version(c, table, row.id)
    if expect is not None and current != expect:
        return None
    cols = ("id", *fields, "version")
    c.execute(
        f"INSERT INTO {table}({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        " ON CONFLICT(id) DO UPDATE SET "
        + ", ".join(f"{col} = excluded.{col}" for col in cols[1:]),
        (row.id, *(getattr(row, f) for f in fields), current + 1),
    )
    return current + 1


def put_incident(c: sqlite3.Connection, row: RecordRow, expect: int | None) -> int | None:
    return _put(c, "status_incidents", rows.INCIDENT_FIELDS, row, expect)


def _one(
    c: sqlite3.Connection,
    table: str,
    cols: str,
    to_record: Callable[[rows.Row], RecordRow],
    record_id: str,
) -> RecordRow | None:
    r = c.execute(f"SELECT {cols} FROM {table} WHERE id = ?", (record_id,)).fetchone()
    return None if r is None else to_record(r)


def incident(c: sqlite3.Connection, incident_id: str) -> RecordRow | None:
    return _one(c, "status_incidents", rows.INCIDENT_COLS, rows.incident, incident_id)


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
    fetched = c.execute(
        f"SELECT {rows.INCIDENT_COLS} FROM status_incidents WHERE {' AND '.join(where)}"
        " ORDER BY updated_at DESC, id DESC LIMIT ?",
        (*args, limit),
    )
    return [rows.incident(r) for r in fetched]


def put_maintenance(c: sqlite3.Connection, row: RecordRow, expect: int | None) -> int | None:
    return _put(c, "status_maintenance", rows.MAINTENANCE_FIELDS, row, expect)


def maintenance_window(c: sqlite3.Connection, maintenance_id: str) -> RecordRow | None:
    return _one(c, "status_maintenance", rows.MAINTENANCE_COLS, rows.maintenance, maintenance_id)


def maintenance(c: sqlite3.Connection, ends_after: float | None) -> list[RecordRow]:
    if ends_after is None:
        fetched = c.execute(
            f"SELECT {rows.MAINTENANCE_COLS} FROM status_maintenance ORDER BY starts_at, id"
        )
    else:
        fetched = c.execute(
            f"SELECT {rows.MAINTENANCE_COLS} FROM status_maintenance"
            " WHERE ends_at > ? AND cancelled_at IS NULL ORDER BY starts_at, id",
            (ends_after,),
        )
    return [rows.maintenance(r) for r in fetched]


def add_webhook(
    c: sqlite3.Connection,
    row: WebhookRow,
    max_total: int | None,
    max_per_network: int | None,
) -> WebhookAdded:
    # One writer runs this whole transaction, so the counts cannot change under it.
    existing = c.execute(
        f"SELECT {rows.WEBHOOK_COLS} FROM status_webhooks WHERE url = ?", (row.url,)
    )
    found = existing.fetchone()
    if found is not None:
        return WebhookAdded(WebhookOutcome.EXISTS, rows.webhook(found))
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
    fetched = c.execute(f"SELECT {rows.WEBHOOK_COLS} FROM status_webhooks ORDER BY created_at, id")
    return [rows.webhook(r) for r in fetched]


def new_id(c: sqlite3.Connection, prefix: str) -> str:
    value = c.execute(
        "INSERT INTO status_counters(prefix, value) VALUES (?, 1)"
        " ON CONFLICT(prefix) DO UPDATE SET value = value + 1 RETURNING value",
        (prefix,),
    ).fetchone()[0]
    return f"{prefix}-{value}"


def delayed_mail(
    c: sqlite3.Connection, since: float, until: float, now: float, threshold: float
) -> list[DelayedMail]:
    settled = c.execute(
        f"SELECT {rows.DELAYED_COLS} FROM delayed_mail"
        " WHERE settled_at >= ? AND settled_at <= ?"
        " AND settled_at - accepted_at > ? ORDER BY settled_at, id",
        (since, until, threshold),
    ).fetchall()
    waiting = c.execute(
        f"SELECT account, queue_id, received FROM (SELECT {rows.ACCOUNT_OF_ITEM} AS account,"
        " e.queue_id, e.received FROM queue q JOIN envelopes e ON e.id = q.envelope_id"
        " WHERE q.created < ?) WHERE account IS NOT NULL ORDER BY received",
        (now - threshold,),
    ).fetchall()
    return rows.delayed(settled, waiting)


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
    placed = place(c, account_id, "INBOX", [MessageCopy(cur.lastrowid, len(message), now)])
    if placed is None:
        raise NotFound(f"account {account_id} has no INBOX")
    return placed[0]


class SqliteStatus(SqliteEngine):
    async def status_components(self) -> list[ComponentRow]:
        return await self._read(components)

    async def save_status_components(self, rows: Sequence[ComponentRow]) -> None:
        await self._write(lambda c: save_components(c, rows))

    async def status_history(self, first_day: str) -> list[HistoryRow]:
        return await self._read(lambda c: history(c, first_day))

    async def add_status_history(self, rows: Sequence[HistoryRow], keep_from: str) -> None:
        await self._write(lambda c: add_history(c, rows, keep_from))

    async def put_status_incident(self, row: RecordRow, expect: int | None = None) -> int | None:
        return await self._write(lambda c: put_incident(c, row, expect))

    async def status_incident(self, incident_id: str) -> RecordRow | None:
        return await self._read(lambda c: incident(c, incident_id))

    async def status_incidents(
        self,
        *,
        open_only: bool = False,
        since: float | None = None,
        resolved_since: float | None = None,
        limit: int = 50,
    ) -> list[RecordRow]:
        return await self._read(lambda c: incidents(c, open_only, since, resolved_since, limit))

    async def put_status_maintenance(self, row: RecordRow, expect: int | None = None) -> int | None:
        return await self._write(lambda c: put_maintenance(c, row, expect))

    async def status_maintenance_window(self, maintenance_id: str) -> RecordRow | None:
        return await self._read(lambda c: maintenance_window(c, maintenance_id))

    async def status_maintenance(self, ends_after: float | None) -> list[RecordRow]:
        return await self._read(lambda c: maintenance(c, ends_after))

    async def add_status_webhook(
        self,
        row: WebhookRow,
        *,
        max_total: int | None = None,
        max_per_network: int | None = None,
    ) -> WebhookAdded:
        return await self._write(lambda c: add_webhook(c, row, max_total, max_per_network))

    async def remove_status_webhook(self, webhook_id: str) -> bool:
        return await self._write(lambda c: remove_webhook(c, webhook_id))

    async def status_webhooks(self) -> list[WebhookRow]:
        return await self._read(webhooks)

    async def new_id(self, prefix: str) -> str:
        return await self._write(lambda c: new_id(c, prefix))

    async def deliver_status_notice(
        self, key: str, account_id: int, message: bytes, now: float
    ) -> bool:
        return self._delivered(
            await self._write(lambda c: deliver_notice(c, key, account_id, message, now))
        )

    async def delayed_mail(
        self, since: float, until: float, now: float, threshold: float
    ) -> list[DelayedMail]:
        return await self._snapshot(lambda c: delayed_mail(c, since, until, now, threshold))

    async def queue_health(self, now: float) -> tuple[int, float | None]:
        return await self._read(lambda c: queue_health(c, now))

    async def account_queue(self, account_id: int, address: str) -> AccountQueue:
        return await self._snapshot(lambda c: account_queue(c, account_id, address))
