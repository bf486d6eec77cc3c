"""Schema migrations on PostgreSQL: numbered SQL files, applied once each, in one transaction.

The version lives in a `schema_version` table (one row per applied migration). Several nodes may
start on a fresh database at once: a transaction-scoped advisory lock lets one of them migrate
while the others wait, then find the work done. A database migrated by a newer mailfort than this
one is refused with `SchemaTooNew`, so an old node can never write a schema it does not understand.
"""

from __future__ import annotations

import time

from mailfort.store import migrate as shipped
from mailfort.store.postgres.connection import Conn

ENGINE = "postgres"
# pg_advisory_xact_lock key: "mailfort" in ASCII, so other applications' locks stay clear of it.
_LOCK_KEY = 0x6D61696C666F7274

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)"
)


async def schema_version(c: Conn) -> int:
    exists = await c.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    return int(await c.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))


async def apply_migrations(c: Conn) -> int:
    """Bring the schema up to date; returns the version it is at. Runs in its own transaction."""
    async with c.transaction():
        await c.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await c.execute(_VERSION_TABLE)
        current = await schema_version(c)
        shipped.refuse_newer(ENGINE, current, store="the PostgreSQL store", data="this database")
        for version, sql in shipped.migrations(ENGINE):
            if version > current:
                await c.execute(sql)  # a simple-query batch: several statements at once
                await c.execute(
                    "INSERT INTO schema_version(version, applied) VALUES ($1, $2)",
                    version,
                    time.time(),
                )
                current = version
        return current
