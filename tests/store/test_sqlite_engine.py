"""Facts about the SQLite engine the interface does not show: durability settings, group commit,
the schema version guard."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from mailfort.errors import AlreadyExists, SchemaTooNew, StoreUnavailable
from mailfort.store import migrate
from mailfort.store.migrate import latest_version
from mailfort.store.sqlite import SqliteStore


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def holding(store: SqliteStore) -> AsyncIterator[asyncio.Future[None]]:
    """Keep the writer busy inside the block, so that requests made there form one batch."""
    started, release = threading.Event(), threading.Event()

    def hold(c: sqlite3.Connection) -> None:
        started.set()
        release.wait(10)

    blocker = asyncio.ensure_future(store.writer.run(hold))
    assert await asyncio.to_thread(started.wait, 10)
    try:
        yield blocker
        await asyncio.sleep(0.05)  # let every request made in the block reach the writer's queue
    finally:
        release.set()


async def test_writer_connection_is_wal_with_full_sync(sqlite_store: SqliteStore) -> None:
    def pragmas(c: sqlite3.Connection) -> tuple[str, int, int]:
        return (
            c.execute("PRAGMA journal_mode").fetchone()[0],
            c.execute("PRAGMA synchronous").fetchone()[0],
            c.execute("PRAGMA foreign_keys").fetchone()[0],
        )

    journal, synchronous, foreign_keys = await sqlite_store.writer.run(pragmas)
    assert journal == "wal"
    assert synchronous == 2  # FULL: the WAL is synced at every COMMIT
    assert foreign_keys == 1


async def test_user_version_is_the_latest_migration(sqlite_store: SqliteStore) -> None:
    with closing(sqlite3.connect(sqlite_store.path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version("sqlite")


async def test_a_store_from_a_newer_mailfort_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store.add_domain("a.test")
    await store.close()
    newer = latest_version("sqlite") + 1
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {newer}")

    old = SqliteStore(path)
    with pytest.raises(SchemaTooNew) as raised:
        await old.open()
    message = str(raised.value)
    assert f"schema version {newer}" in message
    assert f"knows up to {latest_version('sqlite')}" in message
    assert "upgrade mailfort" in message
    # Refused means refused: no write gets through and nothing hangs.
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(old.add_domain("b.test"), 5)
    await old.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == newer
        assert conn.execute("SELECT name FROM domains").fetchall() == [("a.test",)]


async def test_group_commit_shares_one_commit_per_batch(sqlite_store: SqliteStore) -> None:
    writer = sqlite_store.writer
    async with holding(sqlite_store) as blocker:
        commits, jobs = writer.commits, writer.committed_jobs
        pending = asyncio.gather(*(sqlite_store.add_domain(f"d{i}.test") for i in range(50)))
    await pending
    await blocker
    assert writer.committed_jobs - jobs == 51
    assert writer.commits - commits == 2  # the blocker's batch, and everyone else's


async def test_a_failing_job_is_rolled_back_alone(sqlite_store: SqliteStore) -> None:
    writer = sqlite_store.writer
    await sqlite_store.add_domain("taken.test")

    def half_then_fail(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO domains(name, created) VALUES ('half.test', 0)")
        raise RuntimeError("boom")

    async with holding(sqlite_store) as blocker:
        commits = writer.commits
        pending = asyncio.gather(
            sqlite_store.add_domain("before.test"),
            writer.run(half_then_fail),
            writer.run(lambda c: c.execute("INSERT INTO domains VALUES ('taken.test', 0)")),
            sqlite_store.add_domain("after.test"),
            return_exceptions=True,
        )
    outcomes = await pending
    await blocker
    assert writer.commits - commits == 2  # they shared one batch
    assert outcomes[0] is None and outcomes[3] is None
    assert isinstance(outcomes[1], RuntimeError)
    # A raw driver error never leaves the store untranslated.
    assert isinstance(outcomes[2], AlreadyExists)
    assert await sqlite_store.list_domains() == ["after.test", "before.test", "taken.test"]


async def test_writes_are_visible_to_readers_when_they_return(sqlite_store: SqliteStore) -> None:
    for i in range(20):
        await sqlite_store.add_domain(f"d{i}.test")
        assert f"d{i}.test" in await sqlite_store.list_domains()


async def test_a_closed_and_reopened_store_works(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()
    await store.add_domain("a.test")
    await store.close()
    await store.open()
    try:
        await store.add_domain("b.test")
        assert await store.list_domains() == ["a.test", "b.test"]
    finally:
        await store.close()


async def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreUnavailable):
        await SqliteStore(path).open()


def with_extra_migration(monkeypatch: pytest.MonkeyPatch, sql: str) -> int:
    shipped = migrate.migrations("sqlite")
    version = shipped[-1][0] + 1
    monkeypatch.setattr(migrate, "migrations", lambda engine: [*shipped, (version, sql)])
    return version


async def test_a_newer_migration_is_applied_to_an_existing_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store.add_domain("a.test")
    await store.close()

    version = with_extra_migration(
        monkeypatch,
        "-- a later schema change\nCREATE TABLE extra (\n    x INTEGER\n);\n"
        "INSERT INTO extra(x) SELECT count(*) FROM domains;\n-- trailing comment\n",
    )
    upgraded = SqliteStore(path)
    await upgraded.open()
    try:
        assert await upgraded.schema_version() == version
        assert await upgraded.list_domains() == ["a.test"]
    finally:
        await upgraded.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT x FROM extra").fetchall() == [(1,)]


async def test_a_failing_migration_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store.close()
    before = latest_version("sqlite")

    with_extra_migration(monkeypatch, "CREATE TABLE extra (x INTEGER);\nNOT VALID SQL;\n")
    broken = SqliteStore(path)
    with pytest.raises(StoreUnavailable):
        await broken.open()
    await broken.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == before
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "extra" not in tables


async def test_opening_waits_for_another_process_holding_the_write_lock(tmp_path: Path) -> None:
    # A fresh file still in rollback-journal mode, being written by someone else (another node's
    # first open): switching it to WAL must wait for them, not fail with "database is locked".
    path = tmp_path / "store.sqlite3"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE elsewhere (x INTEGER)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO elsewhere VALUES (1)")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    store = SqliteStore(path)
    try:
        await store.open()
        assert await store.schema_version() == latest_version("sqlite")
    finally:
        release.join()
        other.close()
        await store.close()
