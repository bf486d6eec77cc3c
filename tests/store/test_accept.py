"""accept(): one SMTP transaction is one store transaction."""

from __future__ import annotations

import asyncio

import pytest

from mailfort.errors import AlreadyExists, OverQuota
from mailfort.store.api import Store
from mailfort.store.records import AcceptRequest, Account
from tests.store.conftest import Engine
from tests.store.helpers import SENDER, inbox, request, user


async def test_local_copies_are_prefix_plus_body(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    bob = await user(store, "bob@a.test")
    req = request(local=(alice, bob))
    result = await store.accept(req)
    assert (result.queue_id, result.delivered, result.queued) == (req.queue_id, 2, 0)
    for account, copy in zip((alice, bob), req.local, strict=True):
        assert copy.prefix.startswith(b"Return-Path: <")
        assert await inbox(store, account) == [copy.prefix + req.body]
    # Delivered mail leaves nothing in the queue.
    assert await store.queue_items() == []


async def test_remote_recipients_are_queued(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    req = request(local=(alice,), remote=("x@remote.test", "y@remote.test"))
    result = await store.accept(req)
    assert (result.delivered, result.queued) == (1, 2)
    items = await store.queue_items()
    assert [i.recipient for i in items] == ["x@remote.test", "y@remote.test"]
    for item in items:
        assert item.queue_id == req.queue_id
        assert item.sender == SENDER
        assert item.account_id is None
        assert item.size == len(req.body)
        assert item.attempts == 0 and item.last_error is None
        assert item.lease_owner is None and item.lease_until is None
        assert item.next_attempt <= req.received + 1
        assert item.received == pytest.approx(req.received)
    assert len({i.id for i in items}) == 2
    assert await store.queue_items(req.queue_id) == items
    assert await store.queue_items("no-such-id") == []
    # The queue holds the body as accepted, without any per-recipient prefix.
    assert await store.queue_body(req.queue_id) == req.body
    assert await store.queue_body("no-such-id") is None
    assert len(await inbox(store, alice)) == 1


async def test_a_local_recipient_whose_inbox_is_missing_is_queued(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    gone = await user(store, "gone@a.test")
    await store.delete_account("gone@a.test")
    req = request(local=(alice, gone))
    result = await store.accept(req)
    assert (result.delivered, result.queued) == (1, 1)
    (item,) = await store.queue_items(req.queue_id)
    assert item.recipient == "gone@a.test"
    assert item.account_id == gone.id
    assert await store.queue_body(req.queue_id) == req.body
    assert len(await inbox(store, alice)) == 1


async def test_an_empty_transaction_leaves_nothing_behind(store: Store, engine: Engine) -> None:
    result = await store.accept(request())
    assert (result.delivered, result.queued) == (0, 0)
    assert engine.blob_count() == 0
    assert await store.queue_items() == []


async def test_a_failed_accept_changes_nothing(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    first = request(remote=("x@remote.test",))
    await store.accept(first)
    # Same queue id again: the queue insert fails after the local copy was written; the copy must
    # go with it, or a sender retrying after the error would get the message twice.
    clash = request(local=(alice,), remote=("y@remote.test",), qid=first.queue_id)
    with pytest.raises(AlreadyExists):
        await store.accept(clash)
    assert await inbox(store, alice) == []
    box = await store.get_mailbox(alice.id, "INBOX")
    assert box is not None and box.uidnext == 1
    assert [i.recipient for i in await store.queue_items()] == ["x@remote.test"]
    account = await store.get_account("alice@a.test")
    assert account is not None and account.used_bytes == 0


async def test_bytes_are_kept_exactly(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    data = (
        b"Subject: =?utf-8?q?caf=C3=A9?=\r\nX-Raw: \xff\xfe\x00\r\n\r\n"
        b"line with bare LF\nand bare CR\r.and dot\r\n..\r\n" + bytes(range(256)) + b"\r\n"
    )
    req = request(local=(alice,), remote=("x@remote.test",), data=data)
    await store.accept(req)
    assert await inbox(store, alice) == [req.local[0].prefix + data]
    assert await store.queue_body(req.queue_id) == data


async def test_used_bytes_counts_delivered_copies(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    req = request(local=(alice,))
    await store.accept(req)
    account = await store.get_account("alice@a.test")
    assert account is not None
    assert account.used_bytes == len(req.local[0].prefix) + len(req.body)


async def quota_user(store: Store, address: str, quota: int) -> Account:
    domain = address.rpartition("@")[2]
    if domain not in await store.list_domains():
        await store.add_domain(domain)
    return await store.add_account(address, "$argon2id$not-a-real-hash", quota)


def copy_size(req: AcceptRequest) -> int:
    return len(req.local[0].prefix) + len(req.body)


async def test_a_copy_past_the_quota_refuses_the_whole_acceptance(
    store: Store, engine: Engine
) -> None:
    probe = request(local=(await user(store, "probe@a.test"),))
    room = copy_size(probe) * 2 - 1  # one copy fits, two do not
    tight = await quota_user(store, "tight@a.test", room)
    bob = await user(store, "bob@a.test")
    await store.accept(request(local=(tight,)))
    blobs = engine.blob_count()
    second = request(local=(bob, tight), remote=("x@remote.test",))
    with pytest.raises(OverQuota):
        await store.accept(second)
    # Nothing of it stayed: not bob's copy, not the queue item, not the body.
    assert await inbox(store, bob) == []
    assert await store.queue_items(second.queue_id) == []
    assert engine.blob_count() == blobs
    account = await store.get_account("tight@a.test")
    assert account is not None and account.used_bytes == copy_size(probe)
    assert len(await inbox(store, tight)) == 1


async def test_a_copy_that_fills_the_quota_exactly_fits(store: Store) -> None:
    probe = request(local=(await user(store, "probe@a.test"),))
    exact = await quota_user(store, "exact@a.test", copy_size(probe))
    req = request(local=(exact,))
    assert copy_size(req) == copy_size(probe)
    assert (await store.accept(req)).delivered == 1
    with pytest.raises(OverQuota):
        await store.accept(request(local=(exact,)))


async def test_concurrent_acceptances_cannot_share_the_last_room(store: Store) -> None:
    """Each message fits alone, two do not: of ten at once exactly one is stored."""
    probe = request(local=(await user(store, "probe@a.test"),))
    tight = await quota_user(store, "tight@a.test", copy_size(probe) * 2 - 1)
    outcomes = await asyncio.gather(
        *(store.accept(request(local=(tight,))) for _ in range(10)), return_exceptions=True
    )
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1, outcomes
    assert all(isinstance(o, OverQuota) for o in outcomes if isinstance(o, BaseException))
    assert len(await inbox(store, tight)) == 1


async def test_a_body_read_back_from_the_spool_is_stored_as_its_octets(store: Store) -> None:
    # The spool reads a large message into a bytearray (server/spool.py); both drivers must
    # store it as a BLOB/bytea, byte for byte, as they store bytes.
    alice = await user(store, "alice@a.test")
    data = bytearray(b"Subject: spooled\r\n\r\n" + bytes(range(256)) * 4000 + b"\r\n")
    req = request(local=(alice,), remote=("x@remote.test",), data=data)
    await store.accept(req)
    assert await inbox(store, alice) == [req.local[0].prefix + bytes(data)]
    assert await store.queue_body(req.queue_id) == bytes(data)
