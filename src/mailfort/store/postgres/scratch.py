"""A schema of its own in an operator's PostgreSQL, for a run that must leave nothing behind.

`mailfort capacity measure --store-url` measures a node on PostgreSQL without touching what the
database holds: the node's tables go into a new schema (`search_path` in the url the node
gets), dropped after the run. It also tells which server process served it, so the measurement
can count the server's CPU when the server runs on the same machine.
"""

from __future__ import annotations

import secrets

import asyncpg

from mailfort.store.postgres.connection import translate


def _with_search_path(dsn: str, schema: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}search_path={schema}"


class ScratchSchema:
    """`create()` makes the schema and returns the url for the node; `drop()` removes it."""

    def __init__(self, dsn: str, *, prefix: str = "mailfort_measure") -> None:
        self.dsn = dsn
        self.schema = f"{prefix}_{secrets.token_hex(4)}"
        self.server_pid = 0  # the backend that created the schema: a child of the server
        self.created = False

    async def create(self) -> str:
        try:
            conn = await asyncpg.connect(self.dsn, timeout=10)
        except Exception as exc:
            raise translate(exc) from exc
        try:
            await conn.execute(f"CREATE SCHEMA {self.schema}")
            self.created = True
            self.server_pid = conn.get_server_pid()
        except Exception as exc:
            raise translate(exc) from exc
        finally:
            await conn.close()
        return _with_search_path(self.dsn, self.schema)

    async def drop(self) -> None:
        if not self.created:
            return
        try:
            conn = await asyncpg.connect(self.dsn, timeout=10)
            try:
                await conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
            finally:
                await conn.close()
        except Exception as exc:
            raise translate(exc) from exc
        self.created = False
