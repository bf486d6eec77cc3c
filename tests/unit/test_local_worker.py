"""The local queue worker: delivers what acceptance could not, exactly once, and survives errors."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailfort.queue.local_worker import ACCOUNT_GONE, LocalWorker
from mailfort.store.api import AcceptRequest, QueuedRecipient
from mailfort.store.sqlite import SqliteStore

T0 = 1_800_000_000.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "store.sqlite3")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


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


async def test_a_dead_item_waits_for_the_rest_of_its_message(store: SqliteStore) -> None:
    await store.add_account("alice@a.test", "h")
    remote = QueuedRecipient(recipient="bob@remote.test", original="bob@remote.test")
    request = await queue_local(store, 999, "ghost@a.test", remote)
    now = [T0]
    local = worker(store, "n1", now)

    assert await local.run_once() == 0
    items = {i.recipient: i for i in await store.queue_items()}
    assert set(items) == {"ghost@a.test", "bob@remote.test"}  # the remote one is not ours
    assert items["ghost@a.test"].last_error == ACCOUNT_GONE
    assert local.dropped == 0

    await store.delete_queue(request.queue_id)  # stands in for the remote delivery
    await queue_local(store, 999, "ghost@a.test")
    now[0] += 7200
    assert await local.run_once() == 0
    assert await store.queue_items() == [] and local.dropped == 1
