"""The queue as remote delivery uses it: claim_remote, renew_lease, settle_queued."""

from __future__ import annotations

import asyncio

import pytest

from mailfort.mail.trace import delivery_prefix
from mailfort.store.api import Store
from mailfort.store.records import (
    AcceptRequest,
    AttemptFailure,
    Deferral,
    LocalDelivery,
    QueuedRecipient,
    Settlement,
)
from tests.store.conftest import Engine
from tests.store.helpers import inbox, request, user

T0 = 1_800_000_000.0
LEASE = 30.0


def failure(at: float = T0, status: str = "4.2.1") -> AttemptFailure:
    return AttemptFailure(
        error="host mx.remote.test[192.0.2.1] said: 450 4.2.1 busy (in reply to RCPT TO command)",
        status=status,
        at=at,
        remote_mta="mx.remote.test",
        diagnostic="smtp; 450 4.2.1 busy",
    )


def bounce_for(address: str, account_id: int | None, tag: str = "bounce") -> AcceptRequest:
    body = f"Subject: {tag}\r\n\r\nbody\r\n".encode()
    return AcceptRequest(
        queue_id=f"DSN{tag}",
        sender="",
        body=body,
        received=T0,
        client="",
        authenticated=None,
        local=(
            (
                LocalDelivery(
                    account_id=account_id,
                    recipient=address,
                    prefix=delivery_prefix("", address),
                ),
            )
            if account_id is not None
            else ()
        ),
        queued=()
        if account_id is not None
        else (QueuedRecipient(recipient=address, original=address),),
    )


async def test_claim_remote_leaves_local_items_alone(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    await store.accept(request(queued_local=(alice,), received=T0))
    await store.accept(request(remote=("x@remote.test", "y@remote.test"), received=T0))
    claimed = await store.claim_remote("n1", T0, LEASE, 10)
    assert sorted(i.recipient for i in claimed) == ["x@remote.test", "y@remote.test"]
    assert all(i.account_id is None and i.lease_owner == "n1" for i in claimed)
    assert await store.claim_remote("n2", T0, LEASE, 10) == []
    (local,) = await store.claim_queue("n2", T0, LEASE, 10, local_only=True)
    assert local.recipient == "alice@a.test"


async def test_renew_lease_keeps_other_workers_out(store: Store) -> None:
    await store.accept(request(remote=("x@remote.test",), received=T0))
    (item,) = await store.claim_remote("n1", T0, LEASE, 10)
    assert await store.renew_lease([item.id], "n1", T0 + 2 * LEASE) == 1
    assert await store.claim_remote("n2", T0 + LEASE + 1, LEASE, 10) == []
    # Someone else's renewal does nothing; after expiry the item is anyone's.
    assert await store.renew_lease([item.id], "n2", T0 + 10 * LEASE) == 0
    (taken,) = await store.claim_remote("n2", T0 + 2 * LEASE + 1, LEASE, 10)
    assert taken.lease_owner == "n2"
    assert await store.renew_lease([item.id], "n1", T0 + 10 * LEASE) == 0
    assert await store.renew_lease([], "n1", T0) == 0


async def test_settle_delivered_and_deferred(store: Store, engine: Engine) -> None:
    req = request(remote=("x@remote.test", "y@remote.test"), received=T0)
    await store.accept(req)
    x, y = sorted(await store.claim_remote("n1", T0, LEASE, 10), key=lambda i: i.recipient)
    settled = Settlement(
        delivered=(x,), deferred=(Deferral(item=y, next_attempt=T0 + 300, failure=failure()),)
    )
    assert await store.settle_queued(settled, "n1") is True
    (left,) = await store.queue_items()
    assert left.recipient == "y@remote.test"
    assert left.attempts == 1 and left.next_attempt == pytest.approx(T0 + 300)
    assert left.lease_owner is None and left.lease_until is None
    assert left.last_error is not None and "450 4.2.1 busy" in left.last_error
    assert left.last_status == "4.2.1" and left.remote_mta == "mx.remote.test"
    assert left.diagnostic == "smtp; 450 4.2.1 busy"
    assert left.last_attempt == pytest.approx(T0)
    assert left.warned is False
    assert await store.queue_body(req.queue_id) == req.body  # still needed by y

    (again,) = await store.claim_remote("n1", T0 + 300, LEASE, 10)
    warned = Deferral(item=again, next_attempt=T0 + 900, failure=failure(T0 + 300), warned=True)
    assert await store.settle_queued(Settlement(deferred=(warned,)), "n1") is True
    (left,) = await store.queue_items()
    assert left.attempts == 2 and left.warned is True
    (third,) = await store.claim_remote("n1", T0 + 900, LEASE, 10)
    plain = Deferral(item=third, next_attempt=T0 + 2000, failure=failure(T0 + 900))
    assert await store.settle_queued(Settlement(deferred=(plain,)), "n1") is True
    (left,) = await store.queue_items()
    assert left.warned is True  # once warned, always warned

    (last,) = await store.claim_remote("n1", T0 + 2000, LEASE, 10)
    assert await store.complete_queued(last, "n1") is True
    assert await store.queue_items() == []
    assert await store.queue_body(req.queue_id) is None
    assert engine.blob_count() == 0


async def test_settle_failed_with_a_bounce_is_one_transaction(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    req = request(remote=("x@remote.test",), received=T0)
    await store.accept(req)
    (item,) = await store.claim_remote("n1", T0, LEASE, 10)
    bounce = bounce_for("alice@a.test", alice.id)
    assert await store.settle_queued(Settlement(failed=(item,), notices=(bounce,)), "n1") is True
    assert await store.queue_items() == []
    assert await inbox(store, alice) == [bounce.local[0].prefix + bounce.body]
    # Settling again (a retry after a lost reply) changes nothing: the bounce exists once.
    assert await store.settle_queued(Settlement(failed=(item,), notices=(bounce,)), "n1") is False
    assert len(await inbox(store, alice)) == 1


async def test_a_bounce_to_a_remote_sender_is_queued_with_the_null_sender(store: Store) -> None:
    await store.accept(request(remote=("x@remote.test",), received=T0))
    (item,) = await store.claim_remote("n1", T0, LEASE, 10)
    bounce = bounce_for("sender@remote.test", None)
    assert await store.settle_queued(Settlement(failed=(item,), notices=(bounce,)), "n1") is True
    (queued,) = await store.queue_items()
    assert queued.queue_id == bounce.queue_id
    assert queued.sender == "" and queued.recipient == "sender@remote.test"
    assert queued.account_id is None
    assert await store.queue_body(bounce.queue_id) == bounce.body


async def test_settle_is_all_or_nothing_when_a_lease_is_lost(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    await store.accept(request(remote=("x@remote.test", "y@remote.test"), received=T0))
    x, y = sorted(await store.claim_remote("n1", T0, LEASE, 10), key=lambda i: i.recipient)
    # y's lease expires and another worker takes it over.
    assert await store.renew_lease([x.id], "n1", T0 + 3 * LEASE) == 1
    (taken,) = await store.claim_remote("n2", T0 + LEASE + 1, LEASE, 10)
    assert taken.id == y.id
    bounce = bounce_for("alice@a.test", alice.id)
    stale = Settlement(delivered=(x,), failed=(y,), notices=(bounce,))
    assert await store.settle_queued(stale, "n1") is False
    assert len(await store.queue_items()) == 2
    assert await inbox(store, alice) == []


async def test_a_deleted_item_cannot_be_settled(store: Store) -> None:
    req = request(remote=("x@remote.test",), received=T0)
    await store.accept(req)
    (item,) = await store.claim_remote("n1", T0, LEASE, 10)
    assert await store.delete_queue(req.queue_id) == 1
    assert await store.complete_queued(item, "n1") is False
    deferral = Deferral(item=item, next_attempt=T0 + 60, failure=failure())
    assert await store.settle_queued(Settlement(deferred=(deferral,)), "n1") is False


async def test_concurrent_settlements_of_one_item_land_once(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    await store.accept(request(remote=("x@remote.test",), received=T0))
    (item,) = await store.claim_remote("n1", T0, LEASE, 10)
    attempts = [
        Settlement(failed=(item,), notices=(bounce_for("alice@a.test", alice.id, f"b{i}"),))
        for i in range(8)
    ]
    outcomes = await asyncio.gather(*(store.settle_queued(s, "n1") for s in attempts))
    assert outcomes.count(True) == 1
    assert len(await inbox(store, alice)) == 1
