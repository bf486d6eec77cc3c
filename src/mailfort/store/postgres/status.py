"""Status records, notices and mail health on PostgreSQL (roles `StatusRecords`, `MailHealth`).

Each write is one transaction, over the same records as on SQLite. What PostgreSQL adds is
concurrency between nodes: version checks and counters are single statements (`UPDATE … WHERE
version = $n`, `INSERT … ON CONFLICT … RETURNING`), so two nodes or an operator and the leader
cannot both win a race.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mailfort.errors import NotFound
from mailfort.store import rows
from mailfort.store.postgres.connection import Conn
from mailfort.store.postgres.engine import PostgresEngine
from mailfort.store.postgres.mailboxes import place
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


async def components(c: Conn) -> list[ComponentRow]:
    found = await c.fetch(f"SELECT {rows.COMPONENT_COLS} FROM status_components ORDER BY component")
    return [rows.component(r) for r in found]


async def save_components(c: Conn, rows: Sequence[ComponentRow]) -> None:
    await c.executemany(
        "INSERT INTO status_components(component, state, since, findings, updated_at)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (component) DO UPDATE SET"
        " state = EXCLUDED.state, since = EXCLUDED.since, findings = EXCLUDED.findings,"
        " updated_at = EXCLUDED.updated_at",
        [(r.component, r.state, r.since, r.findings, r.updated_at) for r in rows],
    )


async def history(c: Conn, first_day: str) -> list[HistoryRow]:
    found = await c.fetch(
        f"SELECT {rows.HISTORY_COLS} FROM status_history WHERE day >= $1 ORDER BY component, day",
        first_day,
    )
    return [rows.history(r) for r in found]


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


async def _put(
    c: Conn, table: str, fields: tuple[str, ...], row: RecordRow, expect: int | None
) -> int | None:
    """Insert or replace a versioned record; its new version, or None when `expect` is given and
    the stored version (0: none) is another. The check and the write are one statement."""
    values = (row.id, *(getattr(row, f) for f in fields))
    if expect is not None and expect > 0:
        sets = ", ".join(f"{f} = ${i}" for i, f in enumerate(fields, 2))
        version = await c.fetchval(
            f"UPDATE {table} SET {sets}, version = version + 1"
            f" WHERE id = $1 AND version = ${len(values) + 1} RETURNING version",
            *values,
            expect,
        )
    else:
        conflict = (
            "DO NOTHING"
            if expect == 0
            else "DO UPDATE SET "
            + ", ".join(f"{f} = EXCLUDED.{f}" for f in fields)
            + f", version = {table}.version + 1"
        )
        marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        version = await c.fetchval(
            f"INSERT INTO {table}(id, {', '.join(fields)}) VALUES ({marks})"
            f" ON CONFLICT (id) {conflict} RETURNING version",
            *values,
        )
    return None if version is None else int(version)


async def put_incident(c: Conn, row: RecordRow, expect: int | None) -> int | None:
    return await _put(c, "status_incidents", rows.INCIDENT_FIELDS, row, expect)


async def _one(
    c: Conn, table: str, cols: str, to_record: Callable[[rows.Row], RecordRow], record_id: str
) -> RecordRow | None:
    r = await c.fetchrow(f"SELECT {cols} FROM {table} WHERE id = $1", record_id)
    return None if r is None else to_record(r)


async def incident(c: Conn, incident_id: str) -> RecordRow | None:
    return await _one(c, "status_incidents", rows.INCIDENT_COLS, rows.incident, incident_id)


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
    fetched = await c.fetch(
        f"SELECT {rows.INCIDENT_COLS} FROM status_incidents WHERE {' AND '.join(where)}"
        f" ORDER BY updated_at DESC, id DESC LIMIT ${len(args)}",
        *args,
    )
    return [rows.incident(r) for r in fetched]


async def put_maintenance(c: Conn, row: RecordRow, expect: int | None) -> int | None:
    return await _put(c, "status_maintenance", rows.MAINTENANCE_FIELDS, row, expect)


async def maintenance_window(c: Conn, maintenance_id: str) -> RecordRow | None:
    return await _one(
        c, "status_maintenance", rows.MAINTENANCE_COLS, rows.maintenance, maintenance_id
    )


async def maintenance(c: Conn, ends_after: float | None) -> list[RecordRow]:
    if ends_after is None:
        fetched = await c.fetch(
            f"SELECT {rows.MAINTENANCE_COLS} FROM status_maintenance ORDER BY starts_at, id"
        )
    else:
        fetched = await c.fetch(
            f"SELECT {rows.MAINTENANCE_COLS} FROM status_maintenance"
            " WHERE ends_at > $1 AND cancelled_at IS NULL ORDER BY starts_at, id",
            ends_after,
        )
    return [rows.maintenance(r) for r in fetched]


# pg_advisory_xact_lock key for subscribing: the caps are counts over the table, and two nodes
# counting at once under READ COMMITTED would both see room for one more.
_WEBHOOK_LOCK = 0x6D66_7768  # "mfwh"


async def add_webhook(
    c: Conn, row: WebhookRow, max_total: int | None, max_per_network: int | None
) -> WebhookAdded:
    await c.execute("SELECT pg_advisory_xact_lock($1)", _WEBHOOK_LOCK)
    found = await c.fetchrow(
        f"SELECT {rows.WEBHOOK_COLS} FROM status_webhooks WHERE url = $1", row.url
    )
    if found is not None:
        return WebhookAdded(WebhookOutcome.EXISTS, rows.webhook(found))
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
    fetched = await c.fetch(
        f"SELECT {rows.WEBHOOK_COLS} FROM status_webhooks ORDER BY created_at, id"
    )
    return [rows.webhook(r) for r in fetched]


async def new_id(c: Conn, prefix: str) -> str:
    value = await c.fetchval(
        "INSERT INTO status_counters(prefix, value) VALUES ($1, 1) ON CONFLICT (prefix)"
        " DO UPDATE SET value = status_counters.value + 1 RETURNING value",
        prefix,
    )
    return f"{prefix}-{value}"


async def delayed_mail(
    c: Conn, since: float, until: float, now: float, threshold: float
) -> list[DelayedMail]:
    settled = await c.fetch(
        f"SELECT {rows.DELAYED_COLS} FROM delayed_mail"
        " WHERE settled_at >= $1 AND settled_at <= $2"
        " AND settled_at - accepted_at > $3 ORDER BY settled_at, id",
        since,
        until,
        threshold,
    )
    waiting = await c.fetch(
        f"SELECT account, queue_id, received FROM (SELECT {rows.ACCOUNT_OF_ITEM} AS account,"
        " e.queue_id, e.received FROM queue q JOIN envelopes e ON e.id = q.envelope_id"
        " WHERE q.created < $1) AS w WHERE account IS NOT NULL ORDER BY received",
        now - threshold,
    )
    return rows.delayed(settled, waiting)


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
    placed = await place(c, account_id, "INBOX", [MessageCopy(blob_id, len(message), now)])
    if placed is None:
        raise NotFound(f"account {account_id} has no INBOX")
    return placed[0]


class PostgresStatus(PostgresEngine):
    async def status_components(self) -> list[ComponentRow]:
        return await self.db.read_one(components)

    async def save_status_components(self, rows: Sequence[ComponentRow]) -> None:
        await self.db.run(lambda c: save_components(c, rows))

    async def status_history(self, first_day: str) -> list[HistoryRow]:
        return await self.db.read_one(lambda c: history(c, first_day))

    async def add_status_history(self, rows: Sequence[HistoryRow], keep_from: str) -> None:
        await self.db.run(lambda c: add_history(c, rows, keep_from))

    async def put_status_incident(self, row: RecordRow, expect: int | None = None) -> int | None:
        return await self.db.run(lambda c: put_incident(c, row, expect))

    async def status_incident(self, incident_id: str) -> RecordRow | None:
        return await self.db.read_one(lambda c: incident(c, incident_id))

    async def status_incidents(
        self,
        *,
        open_only: bool = False,
        since: float | None = None,
        resolved_since: float | None = None,
        limit: int = 50,
    ) -> list[RecordRow]:
        return await self.db.read_one(
            lambda c: incidents(c, open_only, since, resolved_since, limit)
        )

    async def put_status_maintenance(self, row: RecordRow, expect: int | None = None) -> int | None:
        return await self.db.run(lambda c: put_maintenance(c, row, expect))

    async def status_maintenance_window(self, maintenance_id: str) -> RecordRow | None:
        return await self.db.read_one(lambda c: maintenance_window(c, maintenance_id))

    async def status_maintenance(self, ends_after: float | None) -> list[RecordRow]:
        return await self.db.read_one(lambda c: maintenance(c, ends_after))

    async def add_status_webhook(
        self,
        row: WebhookRow,
        *,
        max_total: int | None = None,
        max_per_network: int | None = None,
    ) -> WebhookAdded:
        return await self.db.run(lambda c: add_webhook(c, row, max_total, max_per_network))

    async def remove_status_webhook(self, webhook_id: str) -> bool:
        return await self.db.run(lambda c: remove_webhook(c, webhook_id))

    async def status_webhooks(self) -> list[WebhookRow]:
        return await self.db.read_one(webhooks)

    async def new_id(self, prefix: str) -> str:
        return await self.db.run(lambda c: new_id(c, prefix))

    async def deliver_status_notice(
        self, key: str, account_id: int, message: bytes, now: float
    ) -> bool:
        return self._delivered(
            await self.db.run(lambda c: deliver_notice(c, key, account_id, message, now))
        )

    async def delayed_mail(
        self, since: float, until: float, now: float, threshold: float
    ) -> list[DelayedMail]:
        return await self.db.read(
            lambda c: delayed_mail(c, since, until, now, threshold), snapshot=True
        )

    async def queue_health(self, now: float) -> tuple[int, float | None]:
        return await self.db.read_one(lambda c: queue_health(c, now))

    async def account_queue(self, account_id: int, address: str) -> AccountQueue:
        return await self.db.read(lambda c: account_queue(c, account_id, address), snapshot=True)
