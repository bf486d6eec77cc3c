"""Domains, accounts and aliases: the directory half of the store interface."""

from __future__ import annotations

import pytest

from mailfort.errors import AlreadyExists, NotFound
from mailfort.store.api import Store
from mailfort.store.records import DEFAULT_MAILBOXES
from tests.store.conftest import Engine
from tests.store.helpers import inbox, request, user

# -- domains ---------------------------------------------------------------------------------


async def test_domains_add_list_delete(store: Store) -> None:
    assert await store.list_domains() == []
    await store.add_domain("b.test")
    await store.add_domain("a.test")
    assert await store.list_domains() == ["a.test", "b.test"]
    await store.delete_domain("b.test")
    assert await store.list_domains() == ["a.test"]


async def test_duplicate_domain_is_already_exists(store: Store) -> None:
    await store.add_domain("a.test")
    with pytest.raises(AlreadyExists, match=r"a\.test"):
        await store.add_domain("a.test")
    assert await store.list_domains() == ["a.test"]


async def test_deleting_a_missing_domain_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.delete_domain("nowhere.test")


# -- accounts --------------------------------------------------------------------------------


async def test_new_account_has_the_six_default_mailboxes(store: Store) -> None:
    account = await user(store, "alice@a.test")
    boxes = await store.list_mailboxes(account.id)
    assert [(b.name, b.special_use) for b in boxes] == [
        ("INBOX", None),
        ("Sent", "\\Sent"),
        ("Drafts", "\\Drafts"),
        ("Trash", "\\Trash"),
        ("Junk", "\\Junk"),
        ("Archive", "\\Archive"),
    ]
    assert [(b.name, b.special_use) for b in boxes] == list(DEFAULT_MAILBOXES)
    for box in boxes:
        assert box.account_id == account.id
        assert box.subscribed
        assert box.uidnext == 1
        assert box.messages == 0
        assert box.uidvalidity > 0


async def test_get_and_list_accounts(store: Store) -> None:
    alice = await store.add_account("alice@a.test", "h1", quota_bytes=1000)
    bob = await store.add_account("bob@b.test", "h2")
    assert alice.id != bob.id
    assert alice.quota_bytes == 1000 and alice.used_bytes == 0

    assert await store.get_account("alice@a.test") == alice
    assert await store.get_account_by_id(bob.id) == bob
    assert await store.get_account("nobody@a.test") is None
    assert await store.get_account_by_id(bob.id + alice.id + 1000) is None

    assert [a.address for a in await store.list_accounts()] == ["alice@a.test", "bob@b.test"]
    assert [a.address for a in await store.list_accounts("b.test")] == ["bob@b.test"]
    assert await store.list_accounts("c.test") == []
    assert await store.count_accounts() == 2


async def test_duplicate_account_is_already_exists(store: Store) -> None:
    await store.add_account("alice@a.test", "h1")
    with pytest.raises(AlreadyExists, match=r"alice@a\.test"):
        await store.add_account("alice@a.test", "h2")
    account = await store.get_account("alice@a.test")
    assert account is not None and account.password_hash == "h1"
    assert await store.count_accounts() == 1


async def test_set_password(store: Store) -> None:
    await store.add_account("alice@a.test", "old")
    await store.set_password("alice@a.test", "new")
    account = await store.get_account("alice@a.test")
    assert account is not None and account.password_hash == "new"
    with pytest.raises(NotFound):
        await store.set_password("nobody@a.test", "x")


async def test_delete_account_removes_its_mail_and_unreferenced_bodies(
    store: Store, engine: Engine
) -> None:
    alice = await user(store, "alice@a.test")
    bob = await user(store, "bob@a.test")
    await store.accept(request(local=(alice,)))  # alice only
    await store.accept(request(local=(alice, bob)))  # one body shared with bob
    assert engine.blob_count() == 2

    await store.delete_account("alice@a.test")

    assert await store.get_account("alice@a.test") is None
    assert await store.list_mailboxes(alice.id) == []
    assert await store.list_messages(alice.id, "INBOX") == []
    assert engine.blob_count() == 1  # the shared body stays for bob
    assert len(await inbox(store, bob)) == 1
    with pytest.raises(NotFound):
        await store.delete_account("alice@a.test")


async def test_delete_account_removes_mail_queued_for_it(store: Store, engine: Engine) -> None:
    alice = await user(store, "alice@a.test")
    req = request(queued_local=(alice,))
    await store.accept(req)
    assert len(await store.queue_items(req.queue_id)) == 1

    await store.delete_account("alice@a.test")

    assert await store.queue_items() == []
    assert await store.queue_body(req.queue_id) is None
    assert engine.blob_count() == 0


async def test_account_ids_are_never_reused(store: Store) -> None:
    # Something that still names a deleted account (a queue item, a session) must not come to
    # mean the account created after it.
    await user(store, "alice@a.test")
    bob = await user(store, "bob@a.test")
    await store.delete_account("bob@a.test")
    carol = await user(store, "carol@a.test")
    assert carol.id != bob.id
    assert await store.get_account_by_id(bob.id) is None


# -- aliases ---------------------------------------------------------------------------------


async def test_aliases_and_catch_all(store: Store) -> None:
    await store.add_alias("team@a.test", "bob@a.test")
    await store.add_alias("team@a.test", "alice@a.test")
    await store.add_alias("@a.test", "alice@a.test")
    await store.add_alias("x@b.test", "someone@remote.test")

    assert await store.alias_targets("team@a.test") == ["alice@a.test", "bob@a.test"]
    assert await store.alias_targets("@a.test") == ["alice@a.test"]
    assert await store.alias_targets("nobody@a.test") == []
    pairs = [(a.source, a.target) for a in await store.list_aliases()]
    assert sorted(pairs) == pairs
    assert set(pairs) == {
        ("team@a.test", "bob@a.test"),
        ("team@a.test", "alice@a.test"),
        ("@a.test", "alice@a.test"),
        ("x@b.test", "someone@remote.test"),
    }
    in_a = {(a.source, a.target) for a in await store.list_aliases("a.test")}
    assert in_a == {
        ("team@a.test", "bob@a.test"),
        ("team@a.test", "alice@a.test"),
        ("@a.test", "alice@a.test"),
    }


async def test_duplicate_alias_is_already_exists(store: Store) -> None:
    await store.add_alias("team@a.test", "bob@a.test")
    with pytest.raises(AlreadyExists):
        await store.add_alias("team@a.test", "bob@a.test")
    assert await store.alias_targets("team@a.test") == ["bob@a.test"]


async def test_delete_alias_one_target_or_all(store: Store) -> None:
    for target in ("a@x.test", "b@x.test", "c@x.test"):
        await store.add_alias("team@a.test", target)
    await store.add_alias("@a.test", "a@x.test")

    await store.delete_alias("team@a.test", "b@x.test")
    assert await store.alias_targets("team@a.test") == ["a@x.test", "c@x.test"]
    with pytest.raises(NotFound):
        await store.delete_alias("team@a.test", "b@x.test")

    await store.delete_alias("team@a.test")
    assert await store.alias_targets("team@a.test") == []
    assert await store.alias_targets("@a.test") == ["a@x.test"]  # untouched
    with pytest.raises(NotFound):
        await store.delete_alias("team@a.test")

    await store.delete_alias("@a.test")
    assert await store.list_aliases() == []
