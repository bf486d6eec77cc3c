"""Cluster state in the store: membership, lease release, POP3 maildrop locks."""

from __future__ import annotations

import asyncio

import pytest

from mailfort.cluster.maildrop import StoreMaildropLocks
from mailfort.cluster.membership import Membership
from mailfort.cluster.status import cluster_status, format_status
from mailfort.store.api import Store
from tests.store.conftest import Engine
from tests.store.helpers import request

T0 = 1_800_000_000.0
LISTENERS = [{"name": "smtp", "host": "127.0.0.1", "port": 2525}]


# -- membership -------------------------------------------------------------------------------
async def test_register_heartbeat_and_list(store: Store) -> None:
    assert await store.list_nodes() == []
    await store.register_node("b", LISTENERS, T0)
    await store.register_node("a", [], T0 + 1)
    assert await store.heartbeat("b", {"smtp": 3, "deliveries": 1}, T0 + 5) == "active"
    nodes = await store.list_nodes()
    assert [n.name for n in nodes] == ["a", "b"]
    b = nodes[1]
    assert (b.state, b.started, b.heartbeat) == ("active", T0, T0 + 5)
    assert b.listeners == LISTENERS
    assert b.load == {"smtp": 3, "deliveries": 1}
    assert nodes[0].listeners == [] and nodes[0].load == {}


async def test_heartbeat_reports_the_state_an_operator_set(store: Store) -> None:
    await store.register_node("n1", LISTENERS, T0)
    assert await store.set_node_state("n1", "draining")
    assert await store.heartbeat("n1", {}, T0 + 1) == "draining"
    assert await store.set_node_state("n1", "gone")
    assert (await store.list_nodes())[0].state == "gone"
    assert not await store.set_node_state("nobody", "draining")
    assert await store.heartbeat("nobody", {}, T0) is None
    with pytest.raises(ValueError):
        await store.set_node_state("n1", "sleeping")


async def test_registering_again_makes_the_node_active(store: Store) -> None:
    await store.register_node("n1", LISTENERS, T0)
    await store.heartbeat("n1", {"imap": 7}, T0 + 1)
    await store.set_node_state("n1", "gone")
    await store.register_node("n1", [], T0 + 100)
    (node,) = await store.list_nodes()
    assert (node.state, node.started, node.heartbeat) == ("active", T0 + 100, T0 + 100)
    assert node.listeners == [] and node.load == {}


async def test_lease_counts_and_release(store: Store) -> None:
    await store.accept(request(remote=tuple(f"r{i}@remote.test" for i in range(5))))
    now = 2_000_000_000.0  # well after `received`: everything is due
    assert len(await store.claim_remote("n1", now, 30.0, 3)) == 3
    assert len(await store.claim_remote("n2", now, 30.0, 3)) == 2
    assert await store.lease_counts(now + 1) == {"n1": 3, "n2": 2}
    assert await store.lease_counts(now + 31) == {}  # expired leases are held by no one
    assert await store.release_leases("n1") == 3
    assert await store.lease_counts(now + 1) == {"n2": 2}
    items = await store.queue_items()
    assert sum(i.lease_owner is None and i.lease_until is None for i in items) == 3
    # Released items are anyone's at once, long before the lease would have run out.
    assert len(await store.claim_remote("n3", now + 1, 30.0, 10)) == 3
    assert await store.release_leases("n1") == 0


async def test_cluster_status(store: Store) -> None:
    await store.register_node("live", LISTENERS, T0)
    await store.register_node("quiet", [], T0 - 100)
    await store.register_node("left", [], T0)
    await store.set_node_state("left", "gone")
    await store.register_node("leaving", [], T0)
    await store.set_node_state("leaving", "draining")
    await store.heartbeat("live", {"smtp": 2}, T0)
    await store.accept(request(remote=("r@remote.test",)))
    await store.claim_remote("live", 2_000_000_000.0, 30.0, 10)
    found = await cluster_status(store, T0 + 1, heartbeat_seconds=5.0)
    states = {s.info.name: s.state for s in found}
    assert states == {"live": "active", "quiet": "dead", "left": "gone", "leaving": "draining"}
    leases = {s.info.name: s.leases for s in found}
    assert leases["live"] == 1 and leases["quiet"] == 0
    text = format_status(found)
    assert "smtp=127.0.0.1:2525" in text and "smtp=2" in text


async def test_membership_learns_of_a_drain(store: Store) -> None:
    drains: list[str] = []
    clock = [T0]
    m = Membership(
        store,
        "n1",
        interval=0.01,
        load=lambda: {"pop3": 1},
        on_drain=lambda: drains.append("drain"),
        clock=lambda: clock[0],
    )
    await m.join(LISTENERS)
    assert await m.beat() == "active" and drains == []
    await store.set_node_state("n1", "draining")
    task = asyncio.create_task(m.run())
    for _ in range(200):
        if drains:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert drains == ["drain"]
    await m.beat()
    assert drains == ["drain"]  # once
    await m.leave()
    (node,) = await store.list_nodes()
    assert node.state == "gone"


# -- POP3 maildrop locks ----------------------------------------------------------------------
async def test_maildrop_lock_is_exclusive_until_released_or_expired(store: Store) -> None:
    assert await store.acquire_maildrop(7, "a:1", T0 + 60, T0)
    assert await store.acquire_maildrop(7, "a:1", T0 + 61, T0 + 1)  # ours already
    assert not await store.acquire_maildrop(7, "b:1", T0 + 70, T0 + 10)
    assert await store.acquire_maildrop(8, "b:1", T0 + 70, T0 + 10)  # other maildrop
    await store.release_maildrop(7, "b:1")  # not the holder: nothing happens
    assert not await store.acquire_maildrop(7, "b:1", T0 + 70, T0 + 10)
    await store.release_maildrop(7, "a:1")
    assert await store.acquire_maildrop(7, "b:1", T0 + 70, T0 + 10)
    # b dies: nobody renews; once the lease ran out the next one gets it.
    assert not await store.acquire_maildrop(7, "c:1", T0 + 130, T0 + 69)
    assert await store.acquire_maildrop(7, "c:1", T0 + 130, T0 + 70)
    assert not await store.renew_maildrop(7, "b:1", T0 + 200)
    assert await store.renew_maildrop(7, "c:1", T0 + 200)
    assert not await store.acquire_maildrop(7, "d:1", T0 + 200, T0 + 150)


async def test_maildrop_lock_across_two_stores(engine: Engine) -> None:
    """Two nodes on one database: their sessions exclude each other; renewal keeps the lock."""
    one, two = engine.new_store(), engine.new_store()
    await one.open()
    await two.open()
    try:
        a = StoreMaildropLocks(one, "node-a", lease_seconds=0.3)
        b = StoreMaildropLocks(two, "node-b", lease_seconds=0.3)
        s1, s2, s3 = object(), object(), object()
        assert await a.acquire(1, s1)
        assert await a.acquire(1, s1)
        assert not await a.acquire(1, s2)  # same node, other session
        assert not await b.acquire(1, s3)
        await asyncio.sleep(0.5)  # past the lease: still held, because it is renewed
        assert not await b.acquire(1, s3)
        await a.release(1, s2)  # not the holder
        assert not await b.acquire(1, s3)
        await a.release(1, s1)
        assert await b.acquire(1, s3)
        assert a.held() == 0 and b.held() == 1
        await b.close()
        assert await a.acquire(1, s1)
        await a.close()
    finally:
        await one.close()
        await two.close()
