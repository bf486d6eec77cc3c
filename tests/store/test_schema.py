"""Schema versions: migrations applied on open, and several stores opening one fresh database."""

from __future__ import annotations

import asyncio

import pytest

from mailfort.errors import StoreUnavailable
from mailfort.store.api import Store
from mailfort.store.migrate import latest_version
from tests.store.conftest import Engine
from tests.store.helpers import user


async def test_migrations_are_applied(store: Store, engine: Engine) -> None:
    assert await store.schema_version() == latest_version(engine.name) >= 1


async def test_reopening_keeps_data_and_version(store: Store, engine: Engine) -> None:
    await user(store, "alice@a.test")
    await store.close()
    again = engine.new_store()
    await again.open()
    try:
        assert await again.schema_version() == latest_version(engine.name)
        assert [a.address for a in await again.list_accounts()] == ["alice@a.test"]
    finally:
        await again.close()


async def test_nodes_opening_a_fresh_database_at_once(engine: Engine) -> None:
    # Two nodes, or a node and `mailfort user add`, started together on an empty data dir.
    stores = [engine.new_store() for _ in range(6)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        versions = await asyncio.gather(*(s.schema_version() for s in stores))
        assert set(versions) == {latest_version(engine.name)}
    finally:
        for s in stores:
            await s.close()


async def test_a_closed_store_refuses_work(engine: Engine) -> None:
    store = engine.new_store()
    await store.open()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.add_domain("a.test")
    with pytest.raises(StoreUnavailable):
        await store.list_domains()
