"""Facts about the PostgreSQL engine the interface does not show: durability settings, the schema
version guard, change notification across stores (nodes), errors and reconnection.

Skipped unless MAILFORT_TEST_PG_DSN names a database (`make test` starts one and sets it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mailfort.errors import AlreadyExists, NotFound, SchemaTooNew, StoreUnavailable
from mailfort.store import open_store
from mailfort.store.migrate import latest_version, migrations
from mailfort.store.postgres import PostgresStore
from tests.store.conftest import PG_DSN_ENV, PostgresEngine, pg_sync
from tests.store.helpers import request, user


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[PostgresEngine]:
    engine = PostgresEngine(tmp_path)
    try:
        yield engine
    finally:
        engine.cleanup()


@pytest.fixture
async def node_a(pg: PostgresEngine) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(pg.dsn)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_open_store_picks_postgres_for_postgresql_urls(tmp_path: Path) -> None:
    store = open_store("postgresql://mailfort@127.0.0.1:5432/mail", tmp_path)
    assert isinstance(store, PostgresStore)


async def test_every_connection_commits_synchronously(pg: PostgresEngine) -> None:
    # Even when the DSN (or the server's defaults) ask otherwise: 250 means committed to disk.
    store = PostgresStore(pg.dsn + "&synchronous_commit=off")
    await store.open()
    try:
        rows = await asyncio.gather(*(store.db.fetch("SHOW synchronous_commit") for _ in range(5)))
        assert {r[0][0] for r in rows} == {"on"}
        assert (await store.db.fetch("SHOW fsync"))[0][0] == "on"
    finally:
        await store.close()


async def test_a_schema_newer_than_this_mailfort_is_refused(pg: PostgresEngine) -> None:
    store = PostgresStore(pg.dsn)
    await store.open()
    await store.close()
    newer = latest_version("postgres") + 1
    pg_sync(pg.dsn, "INSERT INTO schema_version(version, applied) VALUES ($1, 0)", newer)

    again = PostgresStore(pg.dsn)
    with pytest.raises(SchemaTooNew, match=f"schema version {newer}.*upgrade mailfort"):
        await again.open()
    await again.close()
    pg_sync(pg.dsn, "DELETE FROM schema_version WHERE version = $1", newer)


async def test_nodes_migrating_an_empty_schema_at_once(tmp_path: Path) -> None:
    fresh = PostgresEngine(tmp_path, fresh=True)
    stores = [PostgresStore(fresh.dsn) for _ in range(6)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        versions = await asyncio.gather(*(s.schema_version() for s in stores))
        assert set(versions) == {latest_version("postgres")}
        applied = pg_sync(fresh.dsn, "SELECT count(*) FROM schema_version")
        assert applied == len(migrations("postgres"))  # each migration exactly once
    finally:
        for s in stores:
            await s.close()
        fresh.cleanup()


async def test_a_commit_on_one_node_wakes_sessions_on_another(
    pg: PostgresEngine, node_a: PostgresStore
) -> None:
    node_b = PostgresStore(pg.dsn)
    await node_b.open()
    try:
        alice = await user(node_a, "alice@a.test")
        inbox = await node_b.get_mailbox(alice.id, "INBOX")
        assert inbox is not None
        event = node_b.hub.subscribe(inbox.id)
        started = time.monotonic()
        await node_a.accept(request(local=(alice,)))
        await asyncio.wait_for(event.wait(), 1.0)  # NOTIFY, not a poll: B hears it in 1 s
        assert time.monotonic() - started < 1.0
        assert node_b.listener is not None and node_b.listener.received >= 1
        node_b.hub.unsubscribe(inbox.id, event)
    finally:
        await node_b.close()


async def test_a_store_does_not_hear_its_own_commits_twice(node_a: PostgresStore) -> None:
    alice = await user(node_a, "alice@a.test")
    await node_a.accept(request(local=(alice,)))
    await asyncio.sleep(0.2)
    assert node_a.listener is not None and node_a.listener.received == 0


async def test_driver_errors_are_translated(node_a: PostgresStore) -> None:
    alice = await user(node_a, "alice@a.test")
    with pytest.raises(AlreadyExists):
        await node_a.add_account("alice@a.test", "x")
    first = request(remote=("x@remote.test",))
    await node_a.accept(first)
    with pytest.raises(AlreadyExists):  # a UNIQUE violation inside accept()
        await node_a.accept(request(local=(alice,), remote=("y@r.test",), qid=first.queue_id))
    assert await node_a.list_messages(alice.id, "INBOX") == []  # and it was all rolled back
    with pytest.raises(NotFound):
        await node_a.create_mailbox(alice.id + 10_000, "Lists")


async def test_an_unreachable_database_is_unavailable(tmp_path: Path) -> None:
    store = PostgresStore("postgresql://mailfort@127.0.0.1:9/none")
    store.db.timeout = 2.0
    with pytest.raises(StoreUnavailable):
        await store.open()
    with pytest.raises(StoreUnavailable):
        await store.list_domains()


async def test_the_store_reconnects_after_losing_its_connections(
    pg: PostgresEngine, node_a: PostgresStore
) -> None:
    alice = await user(node_a, "alice@a.test")
    inbox = await node_a.get_mailbox(alice.id, "INBOX")
    assert inbox is not None and node_a.listener is not None
    # What a database restart or failover does to a node: every backend it had is gone.
    killed = pg_sync(
        pg.admin_dsn,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE application_name = 'mailfort' AND pid = ANY($1::int[])",
        [*node_a.db.own_pids, *node_a.listener.backend_pids],
    )
    assert killed >= 2

    # A write on a dead connection may fail (temporarily, never as a driver error); then it works.
    for _ in range(20):
        try:
            await node_a.add_domain("b.test")
            break
        except StoreUnavailable:
            await asyncio.sleep(0.05)
    assert "b.test" in await node_a.list_domains()

    # The listener is back too: another node's commit still wakes this one.
    node_b = PostgresStore(pg.dsn, listen=False)
    await node_b.open()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            event = node_a.hub.subscribe(inbox.id)
            await node_b.accept(request(local=(alice,)))
            try:
                await asyncio.wait_for(event.wait(), 1.0)
                break
            except TimeoutError:
                continue
            finally:
                node_a.hub.unsubscribe(inbox.id, event)
        else:
            pytest.fail("the listener did not come back")
    finally:
        await node_b.close()


def _pg_ctl(data: Path, *args: str) -> None:
    pg_ctl = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1]
    command = [str(pg_ctl), "-D", str(data), *args]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


@pytest.mark.slow
async def test_the_store_recovers_when_the_database_restarts() -> None:
    # A cluster of our own: stopping the shared one would break tests running beside this one.
    if not os.environ.get(PG_DSN_ENV):
        pytest.skip(f"{PG_DSN_ENV} is not set")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = Path(tempfile.mkdtemp(prefix="mailfort-pg-restart-"))
    env = {**os.environ, "MAILFORT_PG_DIR": str(folder), "MAILFORT_PG_PORT": str(port)}
    script = Path(__file__).parents[2] / "scripts" / "ensure-postgres"

    def ensure() -> str:
        done = subprocess.run([script], env=env, check=True, capture_output=True, timeout=120)
        return done.stdout.decode().strip()

    try:
        dsn = await asyncio.to_thread(ensure)
        store = PostgresStore(dsn)
        await store.open()
        try:
            await store.add_domain("a.test")
            await asyncio.to_thread(_pg_ctl, folder / "data", "-m", "fast", "-w", "stop")
            with pytest.raises(StoreUnavailable):
                await store.add_domain("b.test")
            with pytest.raises(StoreUnavailable):
                await store.list_domains()

            assert await asyncio.to_thread(ensure) == dsn  # the same cluster, started again
            deadline = time.monotonic() + 15
            while True:
                try:
                    await store.add_domain("b.test")
                    break
                except StoreUnavailable:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
            assert await store.list_domains() == ["a.test", "b.test"]
        finally:
            await store.close()
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _pg_ctl(folder / "data", "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
