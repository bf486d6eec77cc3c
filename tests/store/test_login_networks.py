"""The networks accounts logged in from (the login throttle spares them): shared by every store
opened on the same database, forgotten when old, with the password, or with the account."""

from __future__ import annotations

from mailfort.store.api import Store
from mailfort.store.records import MAX_LOGIN_NETWORKS
from tests.store.conftest import Engine

T0 = 1_800_000_000.0
DAY = 86400.0


async def account(store: Store, address: str = "alice@x.test") -> int:
    if "x.test" not in await store.list_domains():
        await store.add_domain("x.test")
    return (await store.add_account(address, "hash")).id


async def test_remembered_networks_are_read_back_by_another_node(
    store: Store, engine: Engine
) -> None:
    alice, bob = await account(store), await account(store, "bob@x.test")
    await store.remember_login_network(alice, "192.0.2.0/24", T0, T0 - 30 * DAY)
    await store.remember_login_network(alice, "2001:db8::/64", T0 + 5, T0 - 30 * DAY)
    await store.remember_login_network(alice, "192.0.2.0/24", T0 + 10, T0 - 30 * DAY)
    other = engine.new_store()
    await other.open()
    try:
        assert await other.login_networks(alice, T0 - DAY) == {
            "192.0.2.0/24": T0 + 10,
            "2001:db8::/64": T0 + 5,
        }
        assert await other.login_networks(alice, T0 + 6) == {"192.0.2.0/24": T0 + 10}
        assert await other.login_networks(bob, 0) == {}
    finally:
        await other.close()


async def test_old_networks_are_forgotten_when_the_account_learns_a_new_one(store: Store) -> None:
    alice = await account(store)
    await store.remember_login_network(alice, "192.0.2.0/24", T0, T0 - 30 * DAY)
    await store.remember_login_network(alice, "198.51.100.0/24", T0 + 40 * DAY, T0 + 10 * DAY)
    assert await store.login_networks(alice, 0) == {"198.51.100.0/24": T0 + 40 * DAY}


async def test_a_new_password_or_a_deleted_account_forgets_them(store: Store) -> None:
    alice, bob = await account(store), await account(store, "bob@x.test")
    for who in (alice, bob):
        await store.remember_login_network(who, "192.0.2.0/24", T0, 0)
    await store.set_password("alice@x.test", "new hash")
    assert await store.login_networks(alice, 0) == {}
    assert await store.login_networks(bob, 0) == {"192.0.2.0/24": T0}
    await store.delete_account("bob@x.test")
    assert await store.login_networks(bob, 0) == {}
    # Remembering for an account deleted meanwhile is not an error.
    await store.remember_login_network(bob, "192.0.2.0/24", T0, 0)
    assert await store.login_networks(bob, 0) == {}


async def test_at_most_the_newest_are_read(store: Store) -> None:
    alice = await account(store)
    for n in range(MAX_LOGIN_NETWORKS + 10):
        await store.remember_login_network(alice, f"10.{n // 250}.{n % 250}.0/24", T0 + n, 0)
    found = await store.login_networks(alice, 0)
    assert len(found) == MAX_LOGIN_NETWORKS
    assert min(found.values()) == T0 + 10
