"""A destination that takes connections and never says a word costs the worker one wave of
connect timeouts, not one per queued message: transactions wait for their turn *before* asking
the breaker, so once it opens the rest are held back at once (and with them, the customers' mail
behind them in the queue is not kept waiting)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mailfort.delivery.mx import MxResolver
from mailfort.delivery.remote import ClientSettings, RemoteClient
from mailfort.delivery.transport import TransportMap
from mailfort.mail.directory import Directory
from mailfort.overload.breaker import BreakerConfig
from mailfort.queue.remote_worker import Politeness, RemoteWorker
from mailfort.queue.retry import RetryPolicy
from mailfort.store.sqlite import SqliteStore
from tests.store.helpers import request

ITEMS = 20
CONCURRENCY = 2


async def silent_destination(tmp_path: Path) -> tuple[int, int]:
    """(connections the silent server got, messages the worker held back)."""
    connections = 0

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.read()  # never a greeting; until the client gives up

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = SqliteStore(tmp_path / "queue.sqlite3")
    await store.open()
    client = RemoteClient(
        ClientSettings(helo="node.test", connect_timeout=0.5, concurrency=CONCURRENCY),
        resolver=MxResolver(nameservers=[("127.0.0.1", 9)], timeout=0.5),
        transports=TransportMap({"dead.test": f"127.0.0.1:{port}"}),
    )
    worker = RemoteWorker(
        store,
        client,
        Directory(store, config_domains=()),
        RetryPolicy(),
        owner="n1",
        hostname="node.test",
        lease_seconds=60.0,
        poll_interval=0.1,
        politeness=Politeness(breaker=BreakerConfig(failure_threshold=CONCURRENCY)),
    )
    try:
        for n in range(ITEMS):
            await store.accept(request(remote=(f"r{n}@dead.test",)))
        await worker.fill()
        await asyncio.wait_for(asyncio.gather(*worker._tasks), 30)
        return connections, worker.held_back
    finally:
        await client.close()
        await store.close()
        server.close()


def test_a_silent_destination_costs_one_wave_of_timeouts(tmp_path: Path) -> None:
    connections, held_back = asyncio.run(silent_destination(tmp_path))
    assert connections == CONCURRENCY  # before: one per message, CONCURRENCY at a time
    assert held_back == ITEMS - CONCURRENCY
