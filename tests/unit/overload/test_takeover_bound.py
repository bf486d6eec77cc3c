"""Takeover is bounded: a worker claims only up to its own limit, and less while its node is
stressed, so a survivor of a dead node never takes more of the queue than it can deliver."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mailfort.delivery.mx import MxResolver
from mailfort.delivery.remote import ClientSettings, RemoteClient
from mailfort.delivery.transport import TransportMap
from mailfort.mail.directory import Directory
from mailfort.queue.remote_worker import RemoteWorker
from mailfort.queue.retry import RetryPolicy
from mailfort.store.sqlite import SqliteStore
from tests.nodeproc import free_ports
from tests.store.helpers import request


def claims(tmp_path: Path, *, stressed: bool) -> int:
    async def run() -> int:
        store = SqliteStore(tmp_path / f"stressed-{stressed}.sqlite3")
        await store.open()
        # Nothing listens there: deliveries, if any got going, would fail fast on loopback.
        dead = f"127.0.0.1:{free_ports(1)[0]}"
        client = RemoteClient(
            ClientSettings(helo="node.test", connect_timeout=1.0),
            resolver=MxResolver(nameservers=[("127.0.0.1", 9)], timeout=0.5),
            transports=TransportMap({"remote.test": dead}),
        )
        worker = RemoteWorker(
            store,
            client,
            Directory(store, config_domains=()),
            RetryPolicy(),
            owner="survivor",
            hostname="node.test",
            lease_seconds=60.0,
            poll_interval=1.0,
            max_in_flight=40,
            stressed=lambda: stressed,
        )
        try:
            for n in range(100):
                await store.accept(request(remote=(f"far{n}@remote.test",)))
            await worker.fill()
            taken = worker.in_flight
            await worker.fill()  # a second round while the first is in flight takes no more
            return max(taken, worker.in_flight)
        finally:
            for task in list(worker._tasks):
                task.cancel()
            await asyncio.gather(*worker._tasks, return_exceptions=True)
            await client.close()
            await store.close()

    return asyncio.run(run())


def test_claims_stop_at_the_workers_own_limit(tmp_path: Path) -> None:
    assert claims(tmp_path, stressed=False) == 40


def test_a_stressed_node_claims_a_quarter(tmp_path: Path) -> None:
    assert claims(tmp_path, stressed=True) == 10
