"""The SQLite engine's plumbing: one file, WAL, one group-committing writer, pooled readers.

`SqliteEngine` runs a write function on the writer (`writer.GroupCommitWriter`, durable when it
returns) or a read function on a reader thread; the role classes beside it hold the SQL.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from mailfort.errors import StoreUnavailable
from mailfort.store.api import Store
from mailfort.store.notify import ChangeHub
from mailfort.store.sqlite.migrate import apply_migrations, schema_version
from mailfort.store.sqlite.writer import GroupCommitWriter, connect, translate

T = TypeVar("T")


def snapshot(c: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run several reads in one read transaction, so they all see the same commit."""
    c.execute("BEGIN")
    try:
        return fn(c)
    finally:
        c.execute("COMMIT")


def exists(conn: sqlite3.Connection, sql: str, *args: object) -> bool:
    return conn.execute(sql, args).fetchone() is not None


def next_id(c: sqlite3.Connection, key: str, table: str) -> int:
    """An id for a new row of `table` never handed out before in this store (counter `key`).

    SQLite reuses the highest rowid once its row is deleted; ids that sessions, queue items or
    logs still hold must never come to mean the row's successor."""
    row = c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    highest = c.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]
    value = max(int(row[0]) if row else 0, int(highest)) + 1
    c.execute(
        "INSERT INTO meta(key, value) VALUES (?, ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, str(value)),
    )
    return value


class SqliteEngine(Store):
    def __init__(self, path: Path, *, readers: int = 4) -> None:
        self.path = path
        self.hub = ChangeHub()
        self._writer = GroupCommitWriter(path, on_commit=self._commit_done)
        self._readers = readers
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._writer.start, apply_migrations)
        self._pool = ThreadPoolExecutor(self._readers, thread_name_prefix="sqlite-reader")

    async def close(self) -> None:
        await asyncio.to_thread(self._writer.stop)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()

    @property
    def pending_writes(self) -> int:
        return self._writer.pending

    @property
    def pending_commits(self) -> int:
        return self._writer.waiting

    @property
    def writer(self) -> GroupCommitWriter:
        """The group-committing writer, for its counters (commits, committed_jobs)."""
        return self._writer

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._writer.run(fn)

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._read_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._pool is None:
            raise StoreUnavailable("store is closed")

        def call() -> T:
            try:
                return fn(self._reader())
            except Exception as exc:
                raise translate(exc) from exc

        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def _snapshot(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Several reads that must see the same commit."""
        return await self._read(lambda c: snapshot(c, fn))

    async def schema_version(self) -> int:
        return await self._read(schema_version)
