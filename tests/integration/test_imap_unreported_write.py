"""A write that committed but cannot be reported ends the session instead of being denied.

MOVE and EXPUNGE owe the client untagged EXPUNGEs before their tagged OK. When the store fails
between the commit and those answers (a database restart, seen by the chaos campaign), a tagged
`NO [UNAVAILABLE]` would tell the client nothing happened although the messages moved; the session
ends with `BYE [UNAVAILABLE]` instead, and the client, with no tagged answer, resynchronises.
In-process IMAP on a real SQLite store; only the store's change feed is made to fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from mailfort.errors import CommitInDoubt, StoreUnavailable
from mailfort.server.admission import ConnectionLimiter
from mailfort.server.imap.cache import MetaCache
from mailfort.server.imap.connection import start_imap
from mailfort.server.imap.session import ImapContext
from mailfort.server.tls import ensure_self_signed, server_context
from mailfort.store.records import AppendItem
from mailfort.store.sqlite import SqliteStore
from tests.auth_support import logins
from tests.conftest import PASSWORD

USER = "alice@example.test"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, int]]:
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()
    await store.add_domain("example.test")
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    account = await store.add_account(USER, cheap)
    await store.append(
        account.id,
        "INBOX",
        [AppendItem(data=b"Subject: m\r\n\r\nx\r\n", flags=frozenset(), internal_date=0.0)] * 2,
    )
    cert, key = ensure_self_signed(tmp_path / "tls", "localhost")
    server = await start_imap(
        ctx=ImapContext(
            store=store,
            auth=logins(store),
            cache=MetaCache(),
            hostname="mx.test",
            max_message_size=1_000_000,
            allow_plaintext_loopback=True,
        ),
        host="127.0.0.1",
        port=0,
        limiter=ConnectionLimiter(max_total=10, max_per_ip=10),
        tls_context=server_context(cert, key),
        implicit_tls=False,
    )
    try:
        yield store, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await store.close()


def failing(exc: Exception) -> Callable[..., Awaitable[Any]]:
    async def fail(*args: object, **kwargs: object) -> Any:
        raise exc

    return fail


async def selected(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A session logged in as alice with INBOX selected."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    for line in (f'l LOGIN {USER} "{PASSWORD}"'.encode(), b"s SELECT INBOX"):
        writer.write(line + b"\r\n")
        while not (answer := await reader.readline()).startswith(line[:2]):
            pass
        assert b" OK " in answer
    return reader, writer


async def uids(store: SqliteStore, mailbox: str) -> list[int]:
    account = await store.get_account(USER)
    assert account is not None
    return [m.uid for m in await store.list_messages(account.id, mailbox)]


@pytest.mark.parametrize("command", [b"UID MOVE 1 Archive", b"UID EXPUNGE 1"])
async def test_a_committed_write_the_store_cannot_report_ends_the_session(
    served: tuple[SqliteStore, int], monkeypatch: pytest.MonkeyPatch, command: bytes
) -> None:
    store, port = served
    reader, writer = await selected(port)
    try:
        if command.startswith(b"UID EXPUNGE"):
            writer.write(b"f UID STORE 1 +FLAGS.SILENT (\\Deleted)\r\n")
            assert (await reader.readline()).startswith(b"f OK")
        monkeypatch.setattr(store, "changes", failing(StoreUnavailable("restarting")))
        writer.write(b"c " + command + b"\r\n")
        rest = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    lines = rest.splitlines()
    assert lines[-1].startswith(b"* BYE [UNAVAILABLE]"), rest
    assert not [line for line in lines if line.startswith(b"c ")], rest  # no tagged answer
    assert await uids(store, "INBOX") == [2]
    if command.startswith(b"UID MOVE"):
        assert lines[0].startswith(b"* OK [COPYUID "), rest
        assert len(await uids(store, "Archive")) == 1


async def test_a_write_whose_commit_is_in_doubt_gets_no_tagged_answer(
    served: tuple[SqliteStore, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store cannot tell whether the write committed (its COMMIT lost its answer and the
    database could not be asked): neither OK nor NO is true, so the session ends with BYE."""
    store, port = served
    reader, writer = await selected(port)
    try:
        monkeypatch.setattr(store, "copy", failing(CommitInDoubt("commit in doubt")))
        writer.write(b"c UID MOVE 1 Archive\r\n")
        rest = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert rest.startswith(b"* BYE [UNAVAILABLE]") and b"\r\nc " not in rest, rest
