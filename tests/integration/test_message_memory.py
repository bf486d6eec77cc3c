"""The node's memory budget for store writes, pushed past, on listeners started in-process.

A spooled message is read back into memory only within `[limits] max_message_bytes_in_memory`.
Here the test itself holds the whole budget (as concurrent large writes would): a large APPEND
gets `NO [UNAVAILABLE]` and a large SMTP message `451 4.3.0` after the bounded wait, nothing is
stored, and a small message (never spooled) does not wait at all. Once the budget is free the
same large messages are stored.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from mailfort.mail.directory import Directory
from mailfort.server.admission import ConnectionLimiter
from mailfort.server.imap.cache import MetaCache
from mailfort.server.imap.connection import start_imap
from mailfort.server.imap.session import ImapContext
from mailfort.server.memory_budget import MemoryBudget
from mailfort.server.smtp import start_smtp
from mailfort.server.smtp_policy import Mode, SmtpPolicy
from mailfort.server.spool import Spool
from mailfort.server.tls import ensure_self_signed, server_context
from mailfort.store.sqlite import SqliteStore
from tests.auth_support import logins
from tests.conftest import PASSWORD

USER = "alice@example.test"
BUDGET = 1_000_000
LARGE = b"Subject: large\r\n\r\n" + (b"z" * 78 + b"\r\n") * 5000  # 400 KB: spooled
SMALL = b"Subject: small\r\n\r\nhello\r\n"


@dataclass
class Node:
    store: SqliteStore
    memory: MemoryBudget
    imap_port: int
    smtp_port: int

    async def inbox(self) -> list[bytes]:
        account = await self.store.get_account(USER)
        assert account is not None
        found = []
        for message in await self.store.list_messages(account.id, "INBOX"):
            data = await self.store.message_bytes(account.id, "INBOX", message.uid)
            assert data is not None
            found.append(data)
        return found


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()
    await store.add_domain("example.test")
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    await store.add_account(USER, cheap)
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    memory = MemoryBudget(BUDGET, wait=0.3)
    cert, key = ensure_self_signed(tmp_path / "tls", "localhost")
    tls = server_context(cert, key)
    auth = logins(store)
    imap = await start_imap(
        ctx=ImapContext(
            store=store,
            auth=auth,
            cache=MetaCache(),
            hostname="mx.test",
            max_message_size=BUDGET,
            allow_plaintext_loopback=True,
            spool=spool,
            memory=memory,
        ),
        host="127.0.0.1",
        port=0,
        limiter=ConnectionLimiter(max_total=10, max_per_ip=10),
        tls_context=tls,
        implicit_tls=False,
    )
    policy = SmtpPolicy(
        mode=Mode.MX,
        store=store,
        directory=Directory(store),
        hostname="mx.test",
        max_recipients=10,
        auth=auth,
        spool=spool,
        memory=memory,
    )
    smtp = await start_smtp(
        policy=policy,
        host="127.0.0.1",
        port=0,
        limiter=ConnectionLimiter(max_total=10, max_per_ip=10),
        tls=tls,
        hostname="mx.test",
        max_message_size=BUDGET,
        idle_timeout=30,
        session_timeout=60,
    )
    ports = [server.sockets[0].getsockname()[1] for server in (imap, smtp)]
    try:
        yield Node(store, memory, *ports)
    finally:
        for server in (imap, smtp):
            server.close()
        await store.close()


async def imap_append(port: int, message: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reader.readline()
        writer.write(f'l LOGIN {USER} "{PASSWORD}"\r\n'.encode())
        assert (await reader.readline()).startswith(b"l OK")
        writer.write(b"a APPEND INBOX {%d+}\r\n" % len(message) + message + b"\r\n")
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


def smtp_send(port: int, message: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("test")
        client.mail("a@remote.test")
        client.rcpt(USER)
        code, text = client.data(message)  # the reply to the final dot, whatever it is
        return code, text[:5]


async def test_past_the_memory_budget_a_large_message_is_refused_for_now(node: Node) -> None:
    async with node.memory.hold(BUDGET):
        answer = await imap_append(node.imap_port, LARGE)
        assert answer.startswith(b"a NO [UNAVAILABLE]"), answer
        code, text = await asyncio.to_thread(smtp_send, node.smtp_port, LARGE)
        assert (code, text) == (451, b"4.3.0")
        # A small message is in memory already: it never waits for the budget.
        assert (await imap_append(node.imap_port, SMALL)).startswith(b"a OK")
        assert (await asyncio.to_thread(smtp_send, node.smtp_port, SMALL))[0] == 250
        assert len(await node.inbox()) == 2
    assert (await imap_append(node.imap_port, LARGE)).startswith(b"a OK")
    assert (await asyncio.to_thread(smtp_send, node.smtp_port, LARGE))[0] == 250
    stored = await node.inbox()
    assert stored[2] == LARGE and stored[3].endswith(LARGE)
    assert node.memory.held == 0
    assert open_spool_files(node.store.path.parent / "spool") == 0


def open_spool_files(directory: Path) -> int:
    prefix = str(directory.resolve()) + "/"
    return sum(
        1
        for fd in os.listdir("/proc/self/fd")
        if os.path.realpath(f"/proc/self/fd/{fd}").startswith(prefix)
    )


async def test_a_large_message_waits_for_the_budget_while_it_is_busy(node: Node) -> None:
    async def release_soon() -> None:
        async with node.memory.hold(BUDGET):
            await asyncio.sleep(0.1)  # shorter than the wait: the write goes after it

    holder = asyncio.create_task(release_soon())
    await asyncio.sleep(0.01)
    assert (await imap_append(node.imap_port, LARGE)).startswith(b"a OK")
    await holder
    assert await node.inbox() == [LARGE]
