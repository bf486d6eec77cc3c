"""The http listener's bounds, over real sockets: request heads (431/414), bodies (read before a
gate slot is taken, at a minimum rate and within a deadline), and clients that leave. The gate is
the node's real `OverloadGate`; its limit and slots are read directly."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailfort.auth.throttle import ThrottleLimits
from mailfort.config import AuthConfig, Config, LimitsConfig
from mailfort.metrics import NodeMetrics
from mailfort.server.overload import OverloadGate
from mailfort.status.repository import StatusRepository
from mailfort.status.web import WebContext, create_app
from mailfort.status.web.server import MAX_CONNECTIONS, HttpListener
from mailfort.status.web.snapshot import SnapshotCache
from mailfort.store.sqlite import SqliteStore
from tests.auth_support import logins


@dataclass
class Served:
    port: int
    gate: OverloadGate


THROTTLE = ThrottleLimits(per_address=10, per_account=10, base_delay=0.1)


@contextlib.asynccontextmanager
async def web(
    tmp_path: Path,
    config: Config,
    *,
    throttle: ThrottleLimits = THROTTLE,
    gate: OverloadGate | None = None,
    max_connections: int = MAX_CONNECTIONS,
) -> AsyncIterator[HttpListener]:
    """The status web on loopback over a store of its own, as a node serves it."""
    store = SqliteStore(tmp_path / "mailfort.sqlite3")
    await store.open()
    repository = StatusRepository(store)
    ctx = WebContext(
        config=config,
        store=store,
        repository=repository,
        metrics=NodeMetrics(),
        auth=logins(store, throttle),
        snapshots=SnapshotCache(lambda now: repository.page(now), refresh=5.0, timeout=2.0),
        gate=lambda: gate,
    )
    listener = HttpListener(create_app(ctx), "127.0.0.1", 0, max_connections=max_connections)
    await listener.start()
    try:
        yield listener
    finally:
        await listener.stop()
        await store.close()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    config = Config(limits=LimitsConfig(http_body_timeout=4.0, http_min_body_rate=1024))
    gate = OverloadGate(config.overload, NodeMetrics())
    async with web(tmp_path, config, gate=gate) as listener:
        yield Served(listener.port, gate)


async def exchange(port: int, *pieces: bytes, pause: float = 0.0) -> bytes:
    """Send `pieces` (`pause` seconds apart) while reading what comes back, until the server
    closes or 10 s pass; a server that answers early and closes ends the sending."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def read_all() -> bytes:
        data = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                data += chunk
        return data

    answer = asyncio.create_task(read_all())
    try:
        for piece in pieces:
            if answer.done():
                break
            writer.write(piece)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        return await asyncio.wait_for(answer, 10)
    except ConnectionError:
        return await asyncio.wait_for(answer, 10)
    finally:
        writer.close()


def request(target: str = "/", *fields: str, method: str = "GET", body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: status.example", "Connection: close", *fields]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join([*lines, "", ""])).encode() + body


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


async def test_a_head_past_16_kb_gets_431_and_a_long_request_line_414(served: Served) -> None:
    port = served.port
    assert status_of(await exchange(port, request("/", "X-Big: " + "a" * 60_000))) == 431
    assert status_of(await exchange(port, request("/?" + "q" * 100_000))) == 414
    # However the bytes are cut: 20 KB of headers in 1-KB reads.
    head = request("/", *(f"X-F{n}: {'v' * 1000}" for n in range(20)))
    pieces = [head[i : i + 1024] for i in range(0, len(head), 1024)]
    assert status_of(await exchange(port, *pieces, pause=0.01)) == 431
    # Within bounds: served.
    assert status_of(await exchange(port, request("/banner.js", "X-Ok: " + "a" * 15_000))) == 200
    # A second request pipelined behind a first reaches h11 without the meter: still 431.
    first = request("/banner.js").replace(b"Connection: close", b"Connection: keep-alive")
    answer = await exchange(port, first + request("/", "X-Big: " + "a" * 20_000))
    assert answer.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 431" in answer


async def test_clients_that_announce_a_body_and_leave_cost_no_slot_and_no_log_line(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    # Once: each took a gate slot, the app met the disconnect while reading the body, answered
    # 500 with a traceback, and the 500 shrank the limit: 40 of them took it from 64 to 4.
    limit = served.gate.limit.limit
    caplog.set_level(logging.INFO)
    heads = [
        request("/api/v2/webhooks", "Content-Type: application/json", method="POST"),
        request("/api/account.json", method="POST"),
    ]
    for n in range(40):
        head = heads[n % 2].replace(b"Content-Length: 0", b"Content-Length: 1000")
        _, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(head + b'{"url": "http')
        await writer.drain()
        writer.close()
    await asyncio.sleep(0.5)
    assert served.gate.limit.limit == limit
    assert served.gate.limit.in_flight == 0
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not loud, [r.getMessage() for r in loud]


async def test_a_trickled_body_holds_no_slot_and_is_cut_off_at_the_minimum_rate(
    served: Served,
) -> None:
    # Once: the slot was taken before the body was read, so 66 trickling clients held them all.
    async def trickle(path: str) -> tuple[int, float]:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(
            request(path, method="POST").replace(b"Content-Length: 0", b"Content-Length: 1000")
        )
        try:
            for _ in range(100):
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.2)
                assert served.gate.limit.in_flight == 0
                if reader.at_eof() or reader._buffer:  # type: ignore[attr-defined]
                    break
            answer = await asyncio.wait_for(reader.read(4096), 5)
        except ConnectionError:
            answer = b""
        finally:
            writer.close()
        return status_of(answer), time.monotonic() - started

    paths = ("/api/v2/webhooks", "/api/account.json")
    results = await asyncio.gather(*(trickle(paths[n % 2]) for n in range(10)))
    for status, seconds in results:
        assert status == 408
        assert seconds < 4.0, "cut off by the rate (2-s grace), before the 4-s deadline"


async def test_a_body_at_a_fair_rate_is_read_whole(served: Served) -> None:
    # 4 KB in 4 reads 0.25 s apart: 4 KB/s, above the minimum rate, though slower than a LAN.
    body = b'{"url": "ftp://x/"' + b" " * (4000 - 19) + b"}"
    head = request("/api/v2/webhooks", "Content-Type: application/json", method="POST", body=b"")
    head = head.replace(b"Content-Length: 0", f"Content-Length: {len(body)}".encode())
    pieces = [head, *(body[i : i + 1000] for i in range(0, len(body), 1000))]
    answer = await exchange(served.port, *pieces, pause=0.25)
    assert status_of(answer) == 400 and b"url" in answer, answer[:300]


async def test_a_body_within_the_rate_but_past_the_deadline_is_cut_off(tmp_path: Path) -> None:
    config = Config(limits=LimitsConfig(http_body_timeout=1.5, http_min_body_rate=0))
    async with web(tmp_path, config) as listener:
        started = time.monotonic()
        head = request("/api/account.json", method="POST").replace(b": 0", b": 100")
        answer = await exchange(listener.port, head, *([b"x"] * 10), pause=0.3)
        assert status_of(answer) == 408
        assert 1.2 < time.monotonic() - started < 4.0


async def test_a_wrong_password_waits_out_its_delay_without_a_slot(tmp_path: Path) -> None:
    config = Config(auth=AuthConfig(allow_plaintext_loopback=True))
    gate = OverloadGate(config.overload, NodeMetrics())
    slow = ThrottleLimits(per_address=100, per_account=100, base_delay=3.0)
    async with web(tmp_path, config, throttle=slow, gate=gate) as listener:
        limit = gate.limit.limit
        wrong = base64.b64encode(b"nobody@example.test:wrong").decode()
        head = request("/api/account.json", f"Authorization: Basic {wrong}")
        answers = asyncio.gather(*(exchange(listener.port, head) for _ in range(6)))
        # Each holds a slot while its password is checked (two at a time, a few hundred ms
        # each), none while it waits out its delay (3 s for the first failure, then 5 s).
        await asyncio.sleep(0.1)
        deadline = time.monotonic() + 30
        while gate.limit.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert gate.limit.in_flight == 0
        assert not answers.done(), "the slots were free while the answers were still delayed"
        assert [status_of(a) for a in await answers] == [401] * 6
        assert gate.limit.limit >= limit


async def test_one_network_holds_at_most_its_share_of_the_connections(tmp_path: Path) -> None:
    # 40 connections, a quarter (10) per client network.
    async with web(tmp_path, Config(), max_connections=40) as listener:
        port = listener.port
        held = []
        try:
            for n in range(10):  # ten silent connections from ten addresses of 127.0.0.0/24
                source = (f"127.0.0.{n + 2}", 0)
                held.append(await asyncio.open_connection("127.0.0.1", port, local_addr=source))
            await asyncio.sleep(0.1)
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=("127.0.0.99", 0)
            )
            refused = await asyncio.wait_for(reader.read(4096), 5)
            writer.close()
            assert refused.startswith(b"HTTP/1.1 503") and b"retry-after: 5" in refused
            # Another network is served, and so is the TLS proxy (127.0.0.1): it carries everyone.
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=("127.0.9.1", 0)
            )
            writer.write(request("/banner.js"))
            assert (await asyncio.wait_for(reader.read(65536), 5)).startswith(b"HTTP/1.1 200")
            writer.close()
            assert status_of(await exchange(port, request("/banner.js"))) == 200
            # A connection of the network closes: its place is free again.
            held.pop()[1].close()
            await asyncio.sleep(0.1)
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=("127.0.0.99", 0)
            )
            writer.write(request("/banner.js"))
            assert (await asyncio.wait_for(reader.read(65536), 5)).startswith(b"HTTP/1.1 200")
            writer.close()
        finally:
            for _, writer in held:
                writer.close()
