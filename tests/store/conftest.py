"""The conformance suite runs every test once per engine.

To add an engine, write an `Engine` subclass and add it to `ENGINES`; the tests
target `mailfort.store.api.Store` only. Engine-specific facts the interface does not expose (how
many bodies are stored, group-commit counters) are answered by the `Engine`, not by the tests.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from mailfort.store.api import Store
from mailfort.store.sqlite import SqliteStore

PG_DSN_ENV = "MAILFORT_TEST_PG_DSN"


class Engine:
    """One database the suite may open several `Store`s on (like several nodes would)."""

    name: str

    def new_store(self) -> Store:
        raise NotImplementedError

    def blob_count(self) -> int:
        """How many message bodies are stored, referenced or not."""
        raise NotImplementedError

    def commit_stats(self, store: Store) -> tuple[int, int] | None:
        """(commits, jobs committed) when the engine group-commits, else None."""
        return None

    def cleanup(self) -> None:
        """Drop what the engine made for one test."""


class SqliteEngine(Engine):
    name = "sqlite"

    def __init__(self, root: Path) -> None:
        self.path = root / "store.sqlite3"

    def new_store(self) -> Store:
        return SqliteStore(self.path)

    def blob_count(self) -> int:
        with closing(sqlite3.connect(self.path)) as conn:
            return int(conn.execute("SELECT count(*) FROM blobs").fetchone()[0])

    def commit_stats(self, store: Store) -> tuple[int, int] | None:
        assert isinstance(store, SqliteStore)
        return store.writer.commits, store.writer.committed_jobs


def pg_sync(dsn: str, sql: str, *args: Any, script: bool = False) -> Any:
    """Run SQL on a fresh connection, from sync code inside or outside an event loop.

    One value back, or with `script` several statements run at once (no result)."""
    import asyncpg

    async def run() -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            if script:
                return await conn.execute(sql)
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


# Schemas made by this session: migrated and emptied ones are handed to the next test, since
# migrating a new schema costs more than emptying a used one; all are dropped at the end.
_PG_SCHEMAS: set[str] = set()
_PG_CLEAN: list[str] = []
_PG_EMPTY = (
    "SET lock_timeout = '10s'; DELETE FROM queue; DELETE FROM envelopes; DELETE FROM accounts;"
    " DELETE FROM blobs; DELETE FROM aliases; DELETE FROM domains; DELETE FROM meta;"
    " DELETE FROM nodes; DELETE FROM maildrop_locks; DELETE FROM status_components;"
    " DELETE FROM status_history; DELETE FROM status_incidents; DELETE FROM status_maintenance;"
    " DELETE FROM status_webhooks; DELETE FROM leases; DELETE FROM status_counters;"
    " DELETE FROM delayed_mail; DELETE FROM status_notices; DELETE FROM login_networks;"
    " DELETE FROM dkim_keys; DELETE FROM shared_secrets;"
    " DELETE FROM certificates; DELETE FROM acme_challenges; DELETE FROM acme_accounts;"
    " DELETE FROM submission_counts;"
    " DELETE FROM tls_results; DELETE FROM tls_reports"
)


class PostgresEngine(Engine):
    """A schema of its own per test in the database `MAILFORT_TEST_PG_DSN` names (`make test`
    sets it). Stores reach it through `search_path` in their DSN."""

    name = "postgres"

    def __init__(self, root: Path, *, fresh: bool = False) -> None:
        from mailfort.store.postgres import PostgresStore

        base = os.environ.get(PG_DSN_ENV)
        if not base:
            pytest.skip(f"{PG_DSN_ENV} is not set (make test starts PostgreSQL and sets it)")
        self._store_class = PostgresStore
        self.admin_dsn = base
        if _PG_CLEAN and not fresh:
            self.schema = _PG_CLEAN.pop()
        else:
            self.schema = f"mailfort_test_{secrets.token_hex(6)}"
            pg_sync(base, f"CREATE SCHEMA {self.schema}")
            _PG_SCHEMAS.add(self.schema)
        sep = "&" if urllib.parse.urlsplit(base).query else "?"
        self.dsn = f"{base}{sep}search_path={self.schema}"

    def new_store(self) -> Store:
        return self._store_class(self.dsn, pool_size=10)

    def blob_count(self) -> int:
        return int(pg_sync(self.dsn, "SELECT count(*) FROM blobs"))

    def cleanup(self) -> None:
        from mailfort.store.migrate import latest_version

        try:
            version = pg_sync(self.dsn, "SELECT max(version) FROM schema_version")
            if version == latest_version(self.name):
                pg_sync(self.dsn, _PG_EMPTY, script=True)
                _PG_CLEAN.append(self.schema)
                return
        except Exception:  # never migrated, or left broken by the test: drop it
            pass
        drop_pg_schema(self.admin_dsn, self.schema)


def drop_pg_schema(dsn: str, schema: str) -> None:
    pg_sync(dsn, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    _PG_SCHEMAS.discard(schema)
    if schema in _PG_CLEAN:
        _PG_CLEAN.remove(schema)


@pytest.fixture(scope="session", autouse=True)
def _drop_pg_schemas() -> Iterator[None]:
    yield
    dsn = os.environ.get(PG_DSN_ENV)
    if dsn:
        for schema in sorted(_PG_SCHEMAS):
            drop_pg_schema(dsn, schema)


ENGINES: dict[str, Callable[[Path], Engine]] = {
    "sqlite": SqliteEngine,
    "postgres": PostgresEngine,
}


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    made = ENGINES[request.param](tmp_path)
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
async def store(engine: Engine) -> AsyncIterator[Store]:
    opened = engine.new_store()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
