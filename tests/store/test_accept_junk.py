"""accept() files a copy to the account's Junk mailbox when asked (DMARC quarantine)."""

from __future__ import annotations

import dataclasses

from mailfort.store.api import Store
from mailfort.store.records import JUNK, JUNK_USE, AcceptRequest
from tests.store.helpers import inbox, request, user


def to_junk(req: AcceptRequest, *addresses: str) -> AcceptRequest:
    local = tuple(
        dataclasses.replace(d, mailbox=JUNK) if d.recipient in addresses else d for d in req.local
    )
    return dataclasses.replace(req, local=local)


async def test_copies_go_to_junk_or_inbox(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    bob = await user(store, "bob@a.test")
    req = to_junk(request(local=(alice, bob)), "alice@a.test")
    result = await store.accept(req)
    assert (result.delivered, result.queued) == (2, 0)
    assert await inbox(store, alice) == []
    assert await inbox(store, alice, JUNK) == [req.local[0].prefix + req.body]
    assert await inbox(store, bob) == [req.local[1].prefix + req.body]
    assert await inbox(store, bob, JUNK) == []


async def test_a_missing_junk_mailbox_is_made(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    if await store.get_mailbox(alice.id, JUNK) is not None:
        await store.delete_mailbox(alice.id, JUNK)
    req = to_junk(request(local=(alice,)), "alice@a.test")
    assert (await store.accept(req)).delivered == 1
    made = await store.get_mailbox(alice.id, JUNK)
    assert made is not None and made.special_use == JUNK_USE
    assert len(await inbox(store, alice, JUNK)) == 1


async def test_the_junk_special_use_wins_over_the_name(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    if await store.get_mailbox(alice.id, JUNK) is not None:
        await store.delete_mailbox(alice.id, JUNK)
    await store.create_mailbox(alice.id, "Spam", JUNK_USE)
    req = to_junk(request(local=(alice,)), "alice@a.test")
    assert (await store.accept(req)).delivered == 1
    assert len(await inbox(store, alice, "Spam")) == 1
    assert await store.get_mailbox(alice.id, JUNK) is None
