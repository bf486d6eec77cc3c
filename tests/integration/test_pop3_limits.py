"""POP3 limits and failures, on a listener started in-process so each test sets its own bounds.

Time before and after login, commands before login, connections per address, failed logins,
a client that never reads (output is bounded and the client is dropped), pipelined floods,
STLS command injection, store failures and bugs (always `-ERR`, never a traceback).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from mailfort.auth.throttle import ThrottleLimits
from mailfort.errors import CommitInDoubt, StoreUnavailable
from mailfort.server import pop3
from mailfort.server.admission import ConnectionLimiter
from mailfort.server.pop3_maildrop import LocalMaildropLocks, SizeCache
from mailfort.server.tls import ensure_self_signed, server_context
from mailfort.store.api import Store
from mailfort.store.records import AppendItem
from mailfort.store.sqlite import SqliteStore
from tests.auth_support import logins
from tests.conftest import PASSWORD, client_tls

USER = "alice@example.test"
MESSAGE = b"Subject: hello\r\n\r\nbody\r\n"


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def line(self, timeout: float = 5.0) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), timeout)

    async def command(self, text: bytes, timeout: float = 5.0) -> bytes:
        self.writer.write(text + b"\r\n")
        return await self.line(timeout)

    async def login(self) -> None:
        assert (await self.command(f"USER {USER}".encode())).startswith(b"+OK")
        reply = await self.command(f"PASS {PASSWORD}".encode())
        assert reply.startswith(b"+OK logged in"), reply

    async def closed(self, timeout: float = 5.0) -> bytes:
        """Everything until the server closes the connection (fails if it does not)."""
        return await asyncio.wait_for(self.reader.read(), timeout)

    def close(self) -> None:
        self.writer.close()


@dataclass
class Harness:
    store: Store
    ctx: pop3.Pop3Context
    tls: ssl.SSLContext
    limiter: ConnectionLimiter
    servers: list[asyncio.Server] = field(default_factory=list)
    port: int = 0
    plain_port: int = 0

    async def start(self, **limits: Any) -> None:
        settings = pop3.Pop3Limits(**limits)
        for implicit in (True, False):
            server = await pop3.start_pop3(
                ctx=self.ctx,
                host="127.0.0.1",
                port=0,
                limiter=self.limiter,
                tls_context=self.tls,
                implicit_tls=implicit,
                limits=settings,
            )
            self.servers.append(server)
            port = server.sockets[0].getsockname()[1]
            if implicit:
                self.port = port
            else:
                self.plain_port = port

    async def connect(self, *, tls: bool = True, rcvbuf: int | None = None) -> Client:
        sock = socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        port = self.port if tls else self.plain_port
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=client_tls() if tls else None, server_hostname="" if tls else None
        )
        client = Client(reader, writer)
        assert (await client.line()).startswith(b"+OK ")
        return client

    async def messages(self) -> int:
        account = await self.store.get_account(USER)
        assert account is not None
        return len(await self.store.list_messages(account.id, "INBOX"))

    async def settled(self) -> None:
        """Wait until every connection has been torn down on the server side."""
        for _ in range(200):
            if self.limiter.total == 0:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{self.limiter.total} connections still open")


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()
    await store.add_domain("example.test")
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    account = await store.add_account(USER, cheap)
    items = [AppendItem(data=MESSAGE, internal_date=time.time()) for _ in range(2)]
    await store.append(account.id, "INBOX", items)
    cert, key = ensure_self_signed(tmp_path / "tls", "localhost")

    ctx = pop3.Pop3Context(
        store=store,
        auth=logins(store, ThrottleLimits(per_address=100, per_network=100, base_delay=0.0)),
        locks=LocalMaildropLocks(),
        sizes=SizeCache(),
        hostname="mx.test",
    )
    h = Harness(
        store, ctx, server_context(cert, key), ConnectionLimiter(max_total=50, max_per_ip=50)
    )
    try:
        yield h
    finally:
        for server in h.servers:
            server.close()
        await h.settled()
        await store.close()


def held(h: Harness) -> int:
    locks = h.ctx.locks
    assert isinstance(locks, LocalMaildropLocks)
    return locks.held()


# -- time and counts ----------------------------------------------------------------------------
async def test_autologout_after_idle_deletes_nothing(harness: Harness) -> None:
    await harness.start(idle_timeout=0.3)
    client = await harness.connect()
    await client.login()
    assert (await client.command(b"DELE 1")).startswith(b"+OK")
    rest = await client.closed()
    assert rest == b"-ERR autologout; idle for too long\r\n"
    await harness.settled()
    assert await harness.messages() == 2 and held(harness) == 0


async def test_time_before_login_is_bounded_in_total(harness: Harness) -> None:
    await harness.start(unauth_timeout=0.5)
    client = await harness.connect()
    start = time.monotonic()
    while True:  # busy, but never logging in: the limit is on the total, not on idling
        reply = await client.command(b"CAPA")
        if not reply.startswith(b"+OK"):
            break
        while (await client.line()) != b".\r\n":
            pass
        await asyncio.sleep(0.05)
    assert reply == b"-ERR autologout; idle for too long\r\n"
    assert 0.4 < time.monotonic() - start < 3
    assert await client.closed() == b""


async def test_too_many_commands_before_login(harness: Harness) -> None:
    await harness.start(unauth_commands=5)
    client = await harness.connect()
    client.writer.write(b"NOOP\r\n" * 10)
    rest = await client.closed()
    assert rest.count(b"-ERR NOOP is not allowed") == 5
    assert rest.endswith(b"-ERR too many commands without logging in; closing\r\n")


async def test_connections_per_address(harness: Harness) -> None:
    harness.limiter.max_per_ip = 1
    await harness.start()
    first = await harness.connect()
    second_reader, second_writer = await asyncio.open_connection(
        "127.0.0.1", harness.port, ssl=client_tls(), server_hostname=""
    )
    refused = await asyncio.wait_for(second_reader.read(), 5)
    assert refused == b"-ERR [SYS/TEMP] too many connections from your address\r\n"
    second_writer.close()
    assert (await first.command(b"CAPA")).startswith(b"+OK")
    first.close()


async def test_failed_logins_are_throttled(harness: Harness) -> None:
    harness.ctx.auth = logins(harness.store, ThrottleLimits(per_address=2, base_delay=0.01))
    await harness.start()
    client = await harness.connect()
    for _ in range(2):
        await client.command(f"USER {USER}".encode())
        assert (await client.command(b"PASS wrong")).startswith(b"-ERR [AUTH] ")
    await client.command(f"USER {USER}".encode())
    reply = await client.command(f"PASS {PASSWORD}".encode())
    assert reply == b"-ERR [SYS/TEMP] too many failed logins, try again later\r\n"
    assert harness.ctx.logins["failed"] == 2 and held(harness) == 0
    client.close()


# -- backpressure -------------------------------------------------------------------------------
@pytest.fixture
def watch_output(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The most octets a connection ever had waiting to be written, and buffered as input."""
    seen = {"output": 0, "input": 0}
    flush = pop3.Connection.flush

    async def watched(self: pop3.Connection) -> None:
        # What the transport will hold right after this write, at most.
        waiting = self.writer.transport.get_write_buffer_size() + len(self._out)
        seen["output"] = max(seen["output"], waiting)
        seen["input"] = max(seen["input"], self.core.buffered)
        await flush(self)

    monkeypatch.setattr(pop3.Connection, "flush", watched)
    return seen


async def test_a_client_that_never_reads_is_bounded_and_dropped(
    harness: Harness, watch_output: dict[str, int]
) -> None:
    account = await harness.store.get_account(USER)
    assert account is not None
    big = b"Subject: big\r\n\r\n" + (b".y" * 499 + b"\r\n") * 2000  # 2 MB, every line stuffed
    await harness.store.append(account.id, "INBOX", [AppendItem(data=big, internal_date=0.0)])
    harness.ctx.allow_plaintext_loopback = True
    await harness.start(write_timeout=0.5)
    client = await harness.connect(tls=False, rcvbuf=4096)
    await client.login()
    start = time.monotonic()
    # Gigabytes of answers asked for, none read: the server must stall, then give up on it.
    client.writer.write(b"RETR 3\r\n" * 20_000)
    await harness.settled()
    assert time.monotonic() - start < 5
    assert watch_output["output"] < 512 * 1024, watch_output
    assert watch_output["input"] <= 65536 + 255, watch_output
    assert held(harness) == 0
    client.close()


async def test_pipelined_commands_are_all_answered_in_order(harness: Harness) -> None:
    await harness.start()
    client = await harness.connect()
    await client.login()
    client.writer.write(b"NOOP\r\nSTAT\r\n" * 5_000 + b"QUIT\r\n")
    answers = (await client.closed(timeout=30)).split(b"\r\n")
    assert answers[:2] == [b"+OK nothing to do", b"+OK 2 %d" % (2 * len(MESSAGE))]
    assert answers[:-2] == answers[:2] * 5_000
    assert answers[-2:] == [b"+OK mx.test signing off (2 messages left)", b""]


# -- STLS ---------------------------------------------------------------------------------------
async def test_stls_discards_commands_pipelined_in_plaintext(harness: Harness) -> None:
    await harness.start()
    client = await harness.connect(tls=False)
    assert (await client.command(f"USER {USER}".encode())).startswith(b"-ERR [AUTH] ")
    client.writer.write(f"STLS\r\nUSER {USER}\r\n".encode())
    assert await client.line() == b"+OK begin TLS negotiation\r\n"
    await client.writer.start_tls(client_tls(), server_hostname="")
    assert await client.command(f"PASS {PASSWORD}".encode()) == (
        b"-ERR PASS must follow a successful USER\r\n"
    )
    await client.login()
    client.close()


# -- failures -----------------------------------------------------------------------------------
def failing(error: Exception) -> Callable[..., Awaitable[Any]]:
    async def fail(*args: object, **kwargs: object) -> Any:
        raise error

    return fail


async def test_store_outages_are_temporary_errors(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await harness.start()
    store = harness.store
    client = await harness.connect()
    with monkeypatch.context() as patch:
        patch.setattr(store, "get_account", failing(StoreUnavailable("down")))
        await client.command(f"USER {USER}".encode())
        reply = await client.command(f"PASS {PASSWORD}".encode())
        assert reply == b"-ERR [SYS/TEMP] temporarily unavailable, try again later\r\n"
    await client.login()
    with monkeypatch.context() as patch:
        patch.setattr(store, "bodies", failing(StoreUnavailable("down")))
        assert (await client.command(b"RETR 1")).startswith(b"-ERR [SYS/TEMP] ")
    assert await client.command(b"DELE 1") == b"+OK message 1 deleted\r\n"
    with monkeypatch.context() as patch:
        patch.setattr(store, "delete_messages", failing(StoreUnavailable("down")))
        reply = await client.command(b"QUIT")
        assert reply.startswith(b"-ERR [SYS/TEMP] some deleted messages not removed")
    assert await client.closed() == b""
    await harness.settled()
    assert await harness.messages() == 2 and held(harness) == 0


async def test_deletions_in_doubt_get_no_answer(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QUIT's commit lost its answer and the database could not be asked whether it happened:
    `-ERR ... not removed` could be false, so the session ends without an answer."""
    await harness.start()
    client = await harness.connect()
    await client.login()
    assert await client.command(b"DELE 1") == b"+OK message 1 deleted\r\n"
    monkeypatch.setattr(harness.store, "delete_messages", failing(CommitInDoubt("in doubt")))
    client.writer.write(b"QUIT\r\n")
    assert await client.closed() == b""


async def test_a_bug_is_an_err_line_not_a_traceback(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await harness.start()
    client = await harness.connect()
    await client.login()
    monkeypatch.setattr(harness.store, "bodies", failing(RuntimeError("boom")))
    with caplog.at_level(logging.ERROR, logger="mailfort.pop3"):
        client.writer.write(b"RETR 1\r\n")
        rest = await client.closed()
        await harness.settled()
    assert rest == b"-ERR [SYS/TEMP] internal error, please reconnect\r\n"
    assert "event=pop3_session_crashed" in caplog.text
    assert held(harness) == 0 and await harness.messages() == 2
