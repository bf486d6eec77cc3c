"""A schema of its own in an operator's PostgreSQL, for a run that must leave nothing behind.

`mailfort capacity measure --store-url` measures a node on PostgreSQL without touching what the
database holds: the node's tables go into a new schema (`search_path` in the url the node
gets), dropped after the run. It also tells which server process served it, so the measurement
can count the server's CPU when the server runs on the same machine.
"""

from __future__ import annotations

import contextlib
import secrets

import asyncpg

from mailfort.store.postgres.connection import translate


def _with_search_path(dsn: str, schema: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}search_path={schema}"


class ScratchSchema:
    """`create()` makes the schema and returns the url for the node; `drop()` removes it. The
    connection that made it stays open until then, so `server_pid` names a live backend."""

    def __init__(self, dsn: str, *, prefix: str = "mailfort_measure") -> None:
        self.dsn = dsn
        self.schema = f"{prefix}_{secrets.token_hex(4)}"
        self.server_pid = 0  # the backend holding our connection: a child of the server
        self._conn: asyncpg.Connection | None = None

    async def create(self) -> str:
        try:
            self._conn = await asyncpg.connect(self.dsn, timeout=10)
            await self._conn.execute(f"CREATE SCHEMA {self.schema}")
        except Exception as exc:
            await self._close()
            raise translate(exc) from exc
        self.server_pid = self._conn.get_server_pid()
        return _with_search_path(self.dsn, self.schema)

    async def drop(self) -> None:
        if self._conn is None:
            return
        try:
            await self._conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        except Exception as exc:
            raise translate(exc) from exc
        finally:
            await self._close()

    async def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)
