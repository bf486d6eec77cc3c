"""Takeover is bounded: a worker claims only up to its own limit, and less while its node is
stressed, so a survivor of a dead node never takes more of the queue than it can deliver."""

from __future__ import annotations

import asyncio
import threading
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


def dead_end_worker(
    store: SqliteStore, *, max_in_flight: int, stressed: bool, poll_interval: float = 1.0
) -> tuple[RemoteWorker, RemoteClient]:
    """A worker whose remote MX is a port nothing listens on: deliveries, if any got going,
    fail fast on loopback."""
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
        poll_interval=poll_interval,
        max_in_flight=max_in_flight,
        stressed=lambda: stressed,
    )
    return worker, client


def claims(tmp_path: Path, *, stressed: bool) -> int:
    async def run() -> int:
        store = SqliteStore(tmp_path / f"stressed-{stressed}.sqlite3")
        await store.open()
        worker, client = dead_end_worker(store, max_in_flight=40, stressed=stressed)
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


def test_a_stressed_worker_with_deliveries_in_flight_yields(tmp_path: Path) -> None:
    """Under stress `fill` claims into a quarter of the slots, so with a quarter to a half of them
    taken it finds no room and claims nothing; the loop must then wait for a delivery to end,
    not go straight back to `fill` without yielding (the node would spin and serve nothing: seen
    on a CPU-limited node by benchmarks/capacity_validation.py)."""
    finished = threading.Event()

    async def run() -> None:
        store = SqliteStore(tmp_path / "spin.sqlite3")
        await store.open()
        worker, _client = dead_end_worker(store, max_in_flight=8, stressed=True, poll_interval=0.1)
        try:
            for n in range(20):
                await store.accept(request(remote=(f"far{n}@remote.test",)))
            running = asyncio.create_task(worker.run())
            await asyncio.sleep(1.0)  # never returns while the worker spins
            worker.stop()
            await asyncio.wait_for(running, 10)  # run() closes the client
            finished.set()
        finally:
            await store.close()

    thread = threading.Thread(target=lambda: asyncio.run(run()), daemon=True)
    thread.start()
    thread.join(15)
    assert finished.is_set(), "the remote worker's loop never yielded"
