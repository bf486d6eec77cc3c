"""The queue: leases, exactly-once local delivery, defer, retry, delete."""

from __future__ import annotations

import asyncio

import pytest

from mailfort.store.api import Store
from tests.store.conftest import Engine
from tests.store.helpers import inbox, request, user

T0 = 1_800_000_000.0
LEASE = 30.0
PREFIX = b"Return-Path: <sender@remote.test>\r\nDelivered-To: alice@a.test\r\n"


async def test_claim_leases_only_due_items(store: Store) -> None:
    await store.accept(request(remote=("x@remote.test",), received=T0))
    assert await store.claim_queue("n1", T0 - 1, LEASE, 10, local_only=False) == []
    (item,) = await store.claim_queue("n1", T0, LEASE, 10, local_only=False)
    assert item.recipient == "x@remote.test"
    assert item.lease_owner == "n1"
    assert item.lease_until == pytest.approx(T0 + LEASE)
    (listed,) = await store.queue_items()
    assert listed.lease_owner == "n1" and listed.lease_until == pytest.approx(T0 + LEASE)


async def test_claim_respects_limit_and_local_only(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    for i in range(3):
        await store.accept(request(remote=(f"r{i}@remote.test",), received=T0))
    await store.accept(request(queued_local=(alice,), received=T0))

    local = await store.claim_queue("n1", T0, LEASE, 10, local_only=True)
    assert [i.recipient for i in local] == ["alice@a.test"]
    assert local[0].account_id == alice.id

    first = await store.claim_queue("n1", T0, LEASE, 2, local_only=False)
    second = await store.claim_queue("n1", T0, LEASE, 2, local_only=False)
    assert len(first) == 2 and len(second) == 1
    assert {i.id for i in first}.isdisjoint({i.id for i in second})


async def test_a_leased_item_is_not_claimed_again_until_the_lease_expired(store: Store) -> None:
    await store.accept(request(remote=("x@remote.test",), received=T0))
    (item,) = await store.claim_queue("n1", T0, LEASE, 10, local_only=False)
    assert await store.claim_queue("n2", T0 + 1, LEASE, 10, local_only=False) == []
    assert await store.claim_queue("n2", T0 + LEASE - 1, LEASE, 10, local_only=False) == []
    (taken,) = await store.claim_queue("n2", T0 + LEASE + 1, LEASE, 10, local_only=False)
    assert taken.id == item.id
    assert taken.lease_owner == "n2"
    assert taken.lease_until == pytest.approx(T0 + 2 * LEASE + 1)


async def test_concurrent_claims_never_share_an_item(store: Store) -> None:
    for i in range(20):
        await store.accept(request(remote=(f"r{i}@remote.test",), received=T0))
    batches = await asyncio.gather(
        *(store.claim_queue(f"n{i}", T0, LEASE, 3, local_only=False) for i in range(10))
    )
    ids = [item.id for batch in batches for item in batch]
    assert len(ids) == len(set(ids)) == 20


async def test_deliver_queued_is_exactly_once(store: Store, engine: Engine) -> None:
    alice = await user(store, "alice@a.test")
    req = request(queued_local=(alice,), received=T0)
    await store.accept(req)
    (item,) = await store.claim_queue("n1", T0, LEASE, 10, local_only=True)

    assert await store.deliver_queued(item, "n1", PREFIX) is True
    assert await store.deliver_queued(item, "n1", PREFIX) is False

    assert await inbox(store, alice) == [PREFIX + req.body]
    (message,) = await store.list_messages(alice.id, "INBOX")
    assert message.internal_date == pytest.approx(T0)
    assert await store.queue_items() == []
    assert await store.queue_body(req.queue_id) is None
    assert engine.blob_count() == 1  # still the delivered copy's body


async def test_a_stale_owner_cannot_deliver_after_takeover(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    req = request(queued_local=(alice,), received=T0)
    await store.accept(req)
    (stale,) = await store.claim_queue("n1", T0, LEASE, 10, local_only=True)
    (fresh,) = await store.claim_queue("n2", T0 + LEASE + 1, LEASE, 10, local_only=True)

    assert await store.deliver_queued(stale, "n1", PREFIX) is False
    assert await store.defer_queued(stale, "n1", T0 + 999, "451 stale") is False
    assert await inbox(store, alice) == []
    assert await store.deliver_queued(fresh, "n2", PREFIX) is True
    assert await store.deliver_queued(stale, "n1", PREFIX) is False
    assert len(await inbox(store, alice)) == 1


async def test_an_item_that_is_not_leased_cannot_be_delivered(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    await store.accept(request(queued_local=(alice,), received=T0))
    (item,) = await store.queue_items()
    assert await store.deliver_queued(item, "n1", PREFIX) is False
    assert await inbox(store, alice) == []


async def test_a_remote_item_is_not_delivered_locally(store: Store) -> None:
    await store.accept(request(remote=("x@remote.test",), received=T0))
    (item,) = await store.claim_queue("n1", T0, LEASE, 10, local_only=False)
    assert await store.deliver_queued(item, "n1", PREFIX) is False
    assert len(await store.queue_items()) == 1


async def test_concurrent_delivery_of_one_item_lands_once(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    await store.accept(request(queued_local=(alice,), received=T0))
    (item,) = await store.claim_queue("n1", T0, LEASE, 10, local_only=True)
    outcomes = await asyncio.gather(*(store.deliver_queued(item, "n1", PREFIX) for _ in range(10)))
    assert outcomes.count(True) == 1
    assert len(await inbox(store, alice)) == 1


async def test_defer_increments_attempts_and_records_the_error(store: Store) -> None:
    await store.accept(request(remote=("x@remote.test",), received=T0))
    (item,) = await store.claim_queue("n1", T0, LEASE, 10, local_only=False)
    assert await store.defer_queued(item, "n2", T0 + 60, "not mine") is False
    assert await store.defer_queued(item, "n1", T0 + 60, "451 4.4.1 no answer") is True
    (deferred,) = await store.queue_items()
    assert deferred.attempts == 1
    assert deferred.last_error == "451 4.4.1 no answer"
    assert deferred.next_attempt == pytest.approx(T0 + 60)
    assert deferred.lease_owner is None and deferred.lease_until is None
    # Not due before next_attempt, due after it.
    assert await store.claim_queue("n1", T0 + 59, LEASE, 10, local_only=False) == []
    (again,) = await store.claim_queue("n1", T0 + 60, LEASE, 10, local_only=False)
    assert await store.defer_queued(again, "n1", T0 + 200, "451 again") is True
    (twice,) = await store.queue_items()
    assert twice.attempts == 2 and twice.last_error == "451 again"


async def test_retry_makes_items_due_now(store: Store) -> None:
    first = request(remote=("x@remote.test", "y@remote.test"), received=T0)
    second = request(remote=("z@remote.test",), received=T0)
    await store.accept(first)
    await store.accept(second)
    for item in await store.claim_queue("n1", T0, LEASE, 10, local_only=False):
        await store.defer_queued(item, "n1", T0 + 3600, "451 later")

    assert await store.retry_queue(first.queue_id, T0 + 5) == 2
    due = await store.claim_queue("n1", T0 + 5, LEASE, 10, local_only=False)
    assert sorted(i.recipient for i in due) == ["x@remote.test", "y@remote.test"]

    assert await store.retry_queue(None, T0 + 6) == 3
    assert all(i.next_attempt == pytest.approx(T0 + 6) for i in await store.queue_items())
    assert await store.retry_queue("no-such-id", T0 + 7) == 0


async def test_delete_queue_removes_envelope_and_unreferenced_body(
    store: Store, engine: Engine
) -> None:
    alice = await user(store, "alice@a.test")
    only_queued = request(remote=("x@remote.test", "y@remote.test"))
    mixed = request(local=(alice,), remote=("z@remote.test",))
    await store.accept(only_queued)
    await store.accept(mixed)
    assert engine.blob_count() == 2

    assert await store.delete_queue(only_queued.queue_id) == 2
    assert await store.queue_items(only_queued.queue_id) == []
    assert await store.queue_body(only_queued.queue_id) is None
    assert engine.blob_count() == 1

    # The body of a message also delivered locally stays for the mailbox copy.
    assert await store.delete_queue(mixed.queue_id) == 1
    assert await store.queue_items() == []
    assert engine.blob_count() == 1
    assert await inbox(store, alice) == [mixed.local[0].prefix + mixed.body]

    assert await store.delete_queue("no-such-id") == 0
