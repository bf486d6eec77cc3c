"""The local queue worker: delivers what acceptance could not, exactly once, and survives errors."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

import pytest

from mailfort.mail.directory import Directory
from mailfort.queue.local_worker import LocalWorker
from mailfort.store.records import AcceptRequest, QueuedRecipient
from mailfort.store.sqlite import SqliteStore

T0 = 1_800_000_000.0


def worker(store: SqliteStore, owner: str, now: list[float]) -> LocalWorker:
    return LocalWorker(
        store,
        owner=owner,
        lease_seconds=30,
        poll_interval=0.01,
        retry_seconds=60,
        clock=lambda: now[0],
    )


async def queue_local(
    store: SqliteStore, account_id: int, address: str, *also: QueuedRecipient
) -> AcceptRequest:
    request = AcceptRequest(
        queue_id=f"Q{time.time_ns()}",
        sender="s@remote.test",
        body=b"Subject: hi\r\n\r\nhello\r\n",
        received=T0,
        client="192.0.2.1",
        authenticated=None,
        queued=(
            QueuedRecipient(recipient=address, original=address, account_id=account_id),
            *also,
        ),
    )
    await store.accept(request)
    return request


def remove_inbox(path: Path, account_id: int) -> None:
    """An account without an INBOX, which the store API never leaves behind."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM mailboxes WHERE account_id = ? AND name = 'INBOX'", (account_id,))


async def test_delivers_queued_local_mail_once(store: SqliteStore) -> None:
    alice = await store.add_account("alice@a.test", "h")
    request = await queue_local(store, alice.id, alice.address)
    now = [T0]
    first, second = worker(store, "n1", now), worker(store, "n2", now)

    delivered = await asyncio.gather(first.run_once(), second.run_once())

    assert sorted(delivered) == [0, 1]
    assert await store.queue_items() == []
    (message,) = await store.list_messages(alice.id, "INBOX")
    data = await store.message_bytes(alice.id, "INBOX", message.uid)
    assert data == (
        b"Return-Path: <s@remote.test>\r\nDelivered-To: alice@a.test\r\n" + request.body
    )
    assert await first.run_once() + await second.run_once() == 0


async def test_an_undeliverable_item_is_deferred_with_backoff(
    store: SqliteStore, tmp_path: Path
) -> None:
    alice = await store.add_account("alice@a.test", "h")
    remove_inbox(tmp_path / "store.sqlite3", alice.id)
    await queue_local(store, alice.id, alice.address)
    now = [T0]
    local = worker(store, "n1", now)

    assert await local.run_once() == 0
    (item,) = await store.queue_items()
    assert item.attempts == 1
    assert item.last_error is not None and item.last_error.startswith("450 4.2.0")
    assert T0 + 30 <= item.next_attempt <= T0 + 60
    assert item.lease_owner is None
    # Not retried before it is due.
    assert await local.run_once() == 0
    (same,) = await store.queue_items()
    assert same.attempts == 1


async def test_the_loop_survives_an_unexpected_error(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await store.add_account("alice@a.test", "h")
    local = worker(store, "n1", [T0])
    calls = 0
    real = local.run_once

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in one round")
        return await real()

    monkeypatch.setattr(local, "run_once", flaky)
    task = asyncio.create_task(local.run())
    try:
        await queue_local(store, alice.id, alice.address)
        for _ in range(200):
            if local.delivered:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert calls >= 2
    assert local.delivered == 1


async def test_an_item_for_a_deleted_account_is_dropped(store: SqliteStore) -> None:
    alice = await store.add_account("alice@a.test", "h")
    # Accepted under a resolution the directory remembered from before the account was deleted.
    await queue_local(store, alice.id + 100, "ghost@a.test")
    local = worker(store, "n1", [T0])

    assert await local.run_once() == 0
    assert await store.queue_items() == []
    assert local.dropped == 1


async def test_only_the_dead_item_of_a_message_goes(store: SqliteStore) -> None:
    remote = QueuedRecipient(recipient="bob@remote.test", original="bob@remote.test")
    await queue_local(store, 999, "ghost@a.test", remote)
    local = worker(store, "n1", [T0])

    assert await local.run_once() == 0
    (left,) = await store.queue_items()
    assert left.recipient == "bob@remote.test"  # the remote worker's, untouched
    assert local.dropped == 1


async def test_the_sender_gets_a_bounce(store: SqliteStore) -> None:
    await store.add_domain("a.test")
    sender = await store.add_account("sender@a.test", "h")
    request = AcceptRequest(
        queue_id="QBOUNCE1",
        sender="sender@a.test",
        body=b"Subject: for a ghost\r\n\r\nhello\r\n",
        received=T0,
        client="192.0.2.1",
        authenticated=None,
        queued=(
            QueuedRecipient(recipient="ghost@a.test", original="ghost@a.test", account_id=999),
        ),
    )
    await store.accept(request)
    local = LocalWorker(
        store,
        owner="n1",
        lease_seconds=30,
        poll_interval=0.01,
        retry_seconds=60,
        directory=Directory(store, cache_seconds=0),
        hostname="mx.a.test",
        clock=lambda: T0,
    )

    assert await local.run_once() == 0
    assert await store.queue_items() == []
    assert (local.dropped, local.bounces) == (1, 1)
    (message,) = await store.list_messages(sender.id, "INBOX")
    dsn = await store.message_bytes(sender.id, "INBOX", message.uid)
    assert dsn is not None
    assert b"Final-Recipient: rfc822; ghost@a.test" in dsn
    assert b"Status: 5.1.1" in dsn and b"Action: failed" in dsn
    assert b"Subject: for a ghost" in dsn  # the original's header section
    assert b"Return-Path: <>" in dsn
