"""Recipient resolution and send-as rules, against a real SqliteStore."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailfort.mail.directory import MAX_DEPTH, Directory, Resolution
from mailfort.store.records import Account
from mailfort.store.sqlite import SqliteStore


class World:
    def __init__(self, store: SqliteStore, directory: Directory) -> None:
        self.store = store
        self.directory = directory
        self.accounts: dict[str, Account] = {}

    async def users(self, *addresses: str) -> None:
        for address in addresses:
            self.accounts[address] = await self.store.add_account(address, "hash")

    async def aliases(self, *pairs: tuple[str, str]) -> None:
        for source, target in pairs:
            await self.store.add_alias(source, target)

    def local(self, *addresses: str) -> dict[int, str]:
        return {self.accounts[a].id: a for a in addresses}

    async def resolve(self, address: str) -> Resolution | None:
        return await self.directory.resolve(address)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()
    await store.add_domain("a.test")
    await store.add_domain("b.test")
    # No caching here: these tests change aliases between questions. The cache has its own tests.
    directory = Directory(store, config_domains=["Config.TEST"], delimiter="+", cache_seconds=0)
    try:
        yield World(store, directory)
    finally:
        await store.close()


async def test_local_domains_come_from_store_and_config(world: World) -> None:
    assert await world.directory.local_domains() == {"a.test", "b.test", "config.test"}
    assert await world.directory.is_local("x@config.test")
    assert not await world.directory.is_local("x@remote.test")


async def test_new_domains_are_seen_after_forget_or_cache_expiry(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()
    now = [0.0]
    try:
        directory = Directory(store, cache_seconds=5.0, clock=lambda: now[0])
        assert not await directory.is_local("x@new.test")
        await store.add_domain("new.test")
        assert not await directory.is_local("x@new.test")  # cached
        now[0] = 6.0
        assert await directory.is_local("x@new.test")
        await store.delete_domain("new.test")
        directory.forget_domains()
        assert not await directory.is_local("x@new.test")
    finally:
        await store.close()


async def test_account(world: World) -> None:
    await world.users("alice@a.test")
    found = await world.resolve("alice@a.test")
    assert found is not None
    assert found.local == world.local("alice@a.test") and found.remote == []


async def test_unknown_local_and_remote_addresses(world: World) -> None:
    assert await world.resolve("nobody@a.test") is None
    found = await world.resolve("someone@remote.test")
    assert found is not None and found.local == {} and found.remote == ["someone@remote.test"]


async def test_alias_chain(world: World) -> None:
    await world.users("alice@a.test", "bob@b.test")
    await world.aliases(
        ("sales@a.test", "team@a.test"),
        ("team@a.test", "alice@a.test"),
        ("team@a.test", "crew@b.test"),
        ("crew@b.test", "bob@b.test"),
    )
    found = await world.resolve("sales@a.test")
    assert found is not None
    assert found.local == world.local("alice@a.test", "bob@b.test")
    assert found.remote == []


async def test_alias_to_remote_address(world: World) -> None:
    await world.users("alice@a.test")
    await world.aliases(
        ("fwd@a.test", "someone@remote.test"),
        ("both@a.test", "alice@a.test"),
        ("both@a.test", "someone@remote.test"),
        ("both@a.test", "fwd@a.test"),
    )
    fwd = await world.resolve("fwd@a.test")
    assert fwd is not None and fwd.local == {} and fwd.remote == ["someone@remote.test"]
    both = await world.resolve("both@a.test")
    assert both is not None
    assert both.local == world.local("alice@a.test")
    assert both.remote == ["someone@remote.test"]  # reached twice, listed once


async def test_alias_overrides_account_and_can_keep_a_copy(world: World) -> None:
    await world.users("alice@a.test", "bob@a.test")
    await world.aliases(("alice@a.test", "bob@a.test"))
    moved = await world.resolve("alice@a.test")
    assert moved is not None and moved.local == world.local("bob@a.test")

    await world.aliases(("alice@a.test", "alice@a.test"))
    kept = await world.resolve("alice@a.test")
    assert kept is not None and kept.local == world.local("alice@a.test", "bob@a.test")


async def test_alias_loops_stop(world: World) -> None:
    await world.users("alice@a.test")
    await world.aliases(
        ("loop1@a.test", "loop2@a.test"),
        ("loop2@a.test", "loop1@a.test"),
        ("self@a.test", "self2@a.test"),
        ("self2@a.test", "self2@a.test"),  # keep-a-copy for a non-account: nobody
        ("partial@a.test", "loop1@a.test"),
        ("partial@a.test", "alice@a.test"),
    )
    assert await world.resolve("loop1@a.test") is None
    assert await world.resolve("self@a.test") is None
    partial = await world.resolve("partial@a.test")
    assert partial is not None and partial.local == world.local("alice@a.test")


async def test_overlong_chains_stop(world: World) -> None:
    await world.users("end@a.test")
    hops = MAX_DEPTH + 3
    await world.aliases(*((f"h{i}@a.test", f"h{i + 1}@a.test") for i in range(hops)))
    await world.aliases((f"h{hops}@a.test", "end@a.test"))
    assert await world.resolve(f"h{hops - 2}@a.test") is not None
    assert await world.resolve("h0@a.test") is None


async def test_detail_is_stripped_only_when_needed(world: World) -> None:
    await world.users("alice@a.test", "bob+lists@a.test", "bob@a.test")
    await world.aliases(("team@a.test", "alice@a.test"))
    tagged = await world.resolve("alice+news@a.test")
    assert tagged is not None and tagged.local == world.local("alice@a.test")
    exact = await world.resolve("bob+lists@a.test")
    assert exact is not None and exact.local == world.local("bob+lists@a.test")
    via_alias = await world.resolve("team+x@a.test")
    assert via_alias is not None and via_alias.local == world.local("alice@a.test")
    assert await world.resolve("nobody+x@a.test") is None


async def test_catch_all_only_when_no_account_or_alias(world: World) -> None:
    await world.users("alice@a.test", "carol@b.test", "dave@b.test")
    await world.aliases(("@b.test", "carol@b.test"), ("list@b.test", "alice@a.test"))
    anything = await world.resolve("whatever@b.test")
    assert anything is not None and anything.local == world.local("carol@b.test")
    dave = await world.resolve("dave@b.test")
    assert dave is not None and dave.local == world.local("dave@b.test")
    listed = await world.resolve("list@b.test")
    assert listed is not None and listed.local == world.local("alice@a.test")
    tagged = await world.resolve("dave+x@b.test")
    assert tagged is not None and tagged.local == world.local("dave@b.test")
    # No catch-all in a.test.
    assert await world.resolve("whatever@a.test") is None


async def test_catch_all_to_a_missing_address_in_its_own_domain_stops(world: World) -> None:
    await world.aliases(("@b.test", "ghost@b.test"))
    assert await world.resolve("anyone@b.test") is None


async def test_catch_all_to_remote(world: World) -> None:
    await world.aliases(("@b.test", "inbox@remote.test"))
    found = await world.resolve("anyone@b.test")
    assert found is not None and found.remote == ["inbox@remote.test"]


async def test_may_send_as(world: World) -> None:
    await world.users("alice@a.test", "bob@a.test", "carol@b.test")
    await world.aliases(
        ("sales@a.test", "alice@a.test"),
        ("team@a.test", "alice@a.test"),
        ("team@a.test", "bob@a.test"),
        ("fwd@a.test", "someone@remote.test"),
        ("@b.test", "carol@b.test"),
    )
    alice = world.accounts["alice@a.test"]
    bob = world.accounts["bob@a.test"]
    carol = world.accounts["carol@b.test"]
    may = world.directory.may_send_as

    assert await may(alice, "alice@a.test")
    assert await may(alice, "alice+news@a.test")
    assert await may(alice, "sales@a.test")
    assert await may(alice, "team@a.test") and await may(bob, "team@a.test")
    assert not await may(bob, "sales@a.test")
    assert not await may(alice, "bob@a.test")
    assert not await may(alice, "bob+x@a.test")
    assert not await may(alice, "fwd@a.test")
    assert not await may(alice, "nobody@a.test")
    assert not await may(alice, "alice@remote.test")
    # The catch-all owner receives every unclaimed address of the domain, so may use them,
    # but not the addresses of other accounts there.
    assert await may(carol, "anything@b.test")
    assert not await may(alice, "anything@b.test")


async def test_may_send_as_what_the_operator_allows_besides(world: World) -> None:
    await world.users("alice@a.test", "bob@a.test", "carol@b.test")
    directory = Directory(
        world.store,
        cache_seconds=0,
        senders={
            "alice@a.test": ("ceo@a.test", "@news.remote.test"),
            "@a.test": ("noreply@a.test",),
        },
    )
    alice, bob, carol = (world.accounts[a] for a in ("alice@a.test", "bob@a.test", "carol@b.test"))
    may = directory.may_send_as
    assert await may(alice, "ceo@a.test") and await may(alice, "ceo+x@a.test")
    assert await may(alice, "anyone@news.remote.test")
    assert not await may(alice, "anyone@sub.news.remote.test")
    assert not await may(bob, "ceo@a.test")
    # A domain's entry is for every user of that domain, and only for them.
    assert await may(alice, "noreply@a.test") and await may(bob, "noreply@a.test")
    assert not await may(carol, "noreply@a.test")
    assert not await may(bob, "alice@a.test")


async def test_postmaster(world: World, tmp_path: Path) -> None:
    await world.users("alice@a.test", "ops@b.test")
    await world.aliases(("postmaster@a.test", "alice@a.test"))
    # Default: postmaster@ the first configured local domain, resolved like any address.
    assert await world.directory.postmaster() == "postmaster@config.test"
    configured = Directory(world.store, cache_seconds=0, postmaster="ops@b.test")
    assert await configured.postmaster() == "ops@b.test"
    # Without configured domains: the first stored one.
    assert await Directory(world.store, cache_seconds=0).postmaster() == "postmaster@a.test"
    # postmaster@ a local domain that has none of its own reaches the configured postmaster
    # (RFC 5321 4.5.1); one that has its own keeps it; other names do not fall back.
    found = await configured.resolve("postmaster@b.test")
    assert found is not None and found.local == world.local("ops@b.test")
    found = await configured.resolve("postmaster@a.test")
    assert found is not None and found.local == world.local("alice@a.test")
    assert await configured.resolve("hostmaster@b.test") is None
    # A postmaster elsewhere is forwarded to.
    remote = Directory(world.store, cache_seconds=0, postmaster="noc@remote.test")
    found = await remote.resolve("postmaster@b.test")
    assert found is not None and found.remote == ["noc@remote.test"]


# -- the resolution cache --------------------------------------------------------------------


class CountingStore(SqliteStore):
    """Counts the store reads a resolution costs."""

    reads = 0

    async def alias_targets(self, source: str) -> list[str]:
        self.reads += 1
        return await super().alias_targets(source)

    async def get_account(self, address: str) -> Account | None:
        self.reads += 1
        return await super().get_account(address)


@pytest.fixture
async def counted(tmp_path: Path) -> AsyncIterator[CountingStore]:
    store = CountingStore(tmp_path / "store.sqlite3")
    await store.open()
    await store.add_domain("a.test")
    try:
        yield store
    finally:
        await store.close()


async def test_resolutions_are_remembered_for_cache_seconds(counted: CountingStore) -> None:
    now = [0.0]
    directory = Directory(counted, cache_seconds=5.0, clock=lambda: now[0])
    alice = await counted.add_account("alice@a.test", "h")
    first = await directory.resolve("alice@a.test")
    assert first is not None and first.local == {alice.id: alice.address}
    reads = counted.reads
    assert reads > 0
    assert await directory.resolve("nobody@a.test") is None

    await counted.add_alias("alice@a.test", "bob@remote.test")
    await counted.add_account("nobody@a.test", "h")
    now[0] = 4.9
    counted.reads = reads = 0
    again = await directory.resolve("alice@a.test")
    assert again == first and counted.reads == 0  # the old answer, without asking the store
    assert await directory.resolve("nobody@a.test") is None  # unknown stays unknown for a while

    now[0] = 5.0
    fresh = await directory.resolve("alice@a.test")
    assert fresh is not None and fresh.remote == ["bob@remote.test"] and counted.reads > 0
    assert await directory.resolve("nobody@a.test") is not None


async def test_each_caller_gets_its_own_copy(counted: CountingStore) -> None:
    directory = Directory(counted, cache_seconds=60.0)
    alice = await counted.add_account("alice@a.test", "h")
    taken = await directory.resolve("alice@a.test")
    assert taken is not None
    del taken.local[alice.id]  # what the SMTP policy does to a full mailbox
    taken.remote.append("x@remote.test")
    again = await directory.resolve("alice@a.test")
    assert again is not None and again.local == {alice.id: alice.address} and again.remote == []


async def test_forget_and_zero_seconds_ask_the_store_again(counted: CountingStore) -> None:
    directory = Directory(counted, cache_seconds=60.0)
    await directory.resolve("alice@a.test")
    alice = await counted.add_account("alice@a.test", "h")
    assert await directory.resolve("alice@a.test") is None
    directory.forget()
    found = await directory.resolve("alice@a.test")
    assert found is not None and found.local == {alice.id: alice.address}

    uncached = Directory(counted, cache_seconds=0)
    await uncached.resolve("alice@a.test")
    counted.reads = 0
    await uncached.resolve("alice@a.test")
    assert counted.reads > 0


async def test_the_cache_is_bounded(
    counted: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mailfort.mail.directory.MAX_CACHED", 3)
    directory = Directory(counted, cache_seconds=60.0)
    for n in range(5):
        await directory.resolve(f"u{n}@a.test")
    counted.reads = 0
    await directory.resolve("u4@a.test")
    assert counted.reads == 0  # the newest are kept
    await directory.resolve("u0@a.test")
    assert counted.reads > 0  # the oldest went first


async def test_accounts_with_a_quota_are_marked(counted: CountingStore) -> None:
    directory = Directory(counted, cache_seconds=0)
    free = await counted.add_account("free@a.test", "h")
    capped = await counted.add_account("capped@a.test", "h", quota_bytes=1000)
    await counted.add_alias("both@a.test", "free@a.test")
    await counted.add_alias("both@a.test", "capped@a.test")
    found = await directory.resolve("both@a.test")
    assert found is not None
    assert found.local == {free.id: free.address, capped.id: capped.address}
    assert found.limited == {capped.id}
