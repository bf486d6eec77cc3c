"""A COMMIT whose answer is lost: the store asks the database whether it happened.

A database restart or failover can end a session after the server committed and before the
answer reached the node (PostgreSQL's fast shutdown does, and a synchronous commit cancelled
while waiting for the standby is "committed locally"). An accepted message is then there, and
`accept` must say so rather than raise (the SMTP client would get a 451 for mail it will find
delivered). A proxy between the store and the real PostgreSQL forwards everything, and, once,
cuts the connection around the COMMIT: after passing it on (the commit happens, its answer is
lost) or before (nothing is committed, and `accept` fails as before).
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator

import pytest

from mailfort.auth.passwords import hash_password
from mailfort.errors import StoreUnavailable
from mailfort.store.postgres import PostgresStore
from mailfort.store.records import AcceptRequest, LocalDelivery
from tests.cluster_support import PgSchema, base_dsn


class CommitCutter:
    """A TCP proxy to PostgreSQL that, when armed, cuts the next connection sending COMMIT."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.armed: str | None = None  # "after" or "before" forwarding the COMMIT
        self.cuts = 0
        self.refuse = 0  # connections to cut at once from now on (the database still down)
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            self.refuse -= 1
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        done = asyncio.Event()
        muted = asyncio.Event()  # the server's answers go nowhere from the cut on

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    if up and self.armed and b"COMMIT;" in data:
                        when, self.armed = self.armed, None
                        self.cuts += 1
                        muted.set()
                        if when == "after":
                            dst.write(data)
                            await dst.drain()
                            await asyncio.sleep(0.3)  # the server commits; its answer is lost
                        break
                    if not up and muted.is_set():
                        continue
                    dst.write(data)
                    await dst.drain()
            done.set()

        tasks = [
            asyncio.create_task(pump(reader, up_writer, True)),
            asyncio.create_task(pump(up_reader, writer, False)),
        ]
        await done.wait()
        for w in (writer, up_writer):
            w.transport.abort()
        for t in tasks:
            t.cancel()


@pytest.fixture
async def store_and_cutter() -> AsyncIterator[tuple[PostgresStore, CommitCutter, int]]:
    dsn = base_dsn()
    schema = PgSchema.create(dsn)
    parts = urllib.parse.urlsplit(schema.url)
    cutter = CommitCutter((parts.hostname or "127.0.0.1", parts.port or 5432))
    await cutter.start()
    via = parts._replace(netloc=f"{parts.username}@127.0.0.1:{cutter.port}").geturl()
    store = PostgresStore(via, pool_size=2, listen=False)
    try:
        await store.open()
        await store.add_domain("example.test")
        account = await store.add_account("alice@example.test", hash_password("x"))
        yield store, cutter, account.id
    finally:
        await store.close()
        await cutter.stop()
        schema.drop()


def request(account_id: int, queue_id: str) -> AcceptRequest:
    return AcceptRequest(
        queue_id=queue_id,
        sender="s@remote.test",
        body=b"Subject: doubt\r\n\r\nbody\r\n",
        received=1.0,
        client="192.0.2.1",
        authenticated=None,
        local=(LocalDelivery(account_id=account_id, recipient="alice@example.test", prefix=b""),),
    )


async def test_a_commit_whose_answer_was_lost_is_reported_as_done(
    store_and_cutter: tuple[PostgresStore, CommitCutter, int],
) -> None:
    store, cutter, account_id = store_and_cutter
    cutter.armed = "after"
    result = await store.accept(request(account_id, "Q1"))
    assert cutter.cuts == 1
    assert result.delivered == 1
    assert len(await store.list_messages(account_id, "INBOX")) == 1


async def test_a_commit_that_never_reached_the_server_still_fails(
    store_and_cutter: tuple[PostgresStore, CommitCutter, int],
) -> None:
    store, cutter, account_id = store_and_cutter
    cutter.armed = "before"
    with pytest.raises(StoreUnavailable):
        await store.accept(request(account_id, "Q2"))
    assert cutter.cuts == 1
    assert await store.list_messages(account_id, "INBOX") == []


async def test_the_question_is_asked_again_while_the_database_is_still_away(
    store_and_cutter: tuple[PostgresStore, CommitCutter, int],
) -> None:
    store, cutter, account_id = store_and_cutter
    cutter.armed = "after"
    cutter.refuse = 2  # the first questions find no database
    result = await store.accept(request(account_id, "Q3"))
    assert cutter.cuts == 1 and cutter.refuse == 0
    assert result.delivered == 1
    assert len(await store.list_messages(account_id, "INBOX")) == 1
