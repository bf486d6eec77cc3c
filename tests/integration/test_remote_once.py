"""Remote mail reaches its destination once when no node dies during its delivery.

A copy more is SMTP's known duplicate (RFC 5321 6.1), and it is allowed only where it cannot be
avoided: a node that dies between sending a message and committing the answer (a lost lease; see
`tests/chaos/test_remote_kill.py`). Everything else settles what it sent:
- a drained node (SIGTERM, `mailfort node drain`) waits for the answer to a message it has sent
  and commits it; a delivery that has not sent anything yet is given back at once;
- an outcome the store failed to commit is committed again, not left for a second delivery;
- a worker whose own lease lapsed while the store refused renewals does not start the item it is
  still delivering a second time when its next claim returns it.
The sink is a real SMTP server on loopback; the store a real SQLite file. Store failures are
injected by replacing one store method on the real store.
"""

from __future__ import annotations

import asyncio
import signal
import smtplib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailfort.delivery.mx import MxResolver
from mailfort.delivery.remote import ClientSettings, RemoteClient
from mailfort.delivery.transport import TransportMap
from mailfort.errors import StoreUnavailable
from mailfort.mail.directory import Directory
from mailfort.queue.remote_worker import RemoteWorker
from mailfort.queue.retry import RetryPolicy
from mailfort.store.sqlite import SqliteStore
from tests.conftest import PASSWORD, client_tls
from tests.nodeproc import NodeProcess
from tests.smtpsink import Sink
from tests.store.helpers import request

ALICE = "alice@example.test"


def _wait(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- a drained node --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_drain_waits_for_the_answer_to_a_sent_message(tmp_path: Path) -> None:
    """SIGTERM while the sink holds its answer to one message and a second waits for the one
    connection the destination allows: the node answers the first before it exits and gives the
    second back unsent. Each reaches the sink once (before, the drain abandoned the first and
    released its lease, so the restarted node sent it again)."""
    sink = Sink().start()
    node = NodeProcess(
        tmp_path,
        delivery=(
            'dns_nameservers = ["127.0.0.1:9"]\n'
            "retry_base = 0.3\nretry_max = 1.0\ndestination_concurrency = 1\n"
            f'[delivery.transports]\n"*" = "127.0.0.1:{sink.port}"\n'
        ),
    )
    try:
        node.provision(domains=("example.test",), users={ALICE: PASSWORD})
        node.start()
        assert node.proc is not None
        sink.hold()
        with smtplib.SMTP("127.0.0.1", node.ports["submission"], timeout=30) as client:
            client.starttls(context=client_tls())
            client.login(ALICE, PASSWORD)
            for n in (1, 2):
                body = (
                    f"From: {ALICE}\r\nSubject: drain {n}\r\n"
                    f"Message-ID: <drain{n}@example.test>\r\n\r\nx\r\n"
                )
                client.sendmail(ALICE, [f"far{n}@away.test"], body.encode())
        _wait(lambda: len(node.queue()) == 2 and sink.received(), 10, "one message sent")
        (sent,) = sink.received()

        node.proc.send_signal(signal.SIGTERM)
        time.sleep(1.5)
        assert node.proc.poll() is None, "the drained node left a sent message unanswered"
        assert len(sink.received()) == 1, "a drained node started another transaction"
        sink.release()
        assert node.proc.wait(timeout=15) == 0
        (waiting,) = node.queue()  # the sent one is settled, the other is given back
        assert waiting.recipient not in sent.recipients
        assert waiting.lease_owner is None

        node.start()
        _wait(lambda: not node.queue(), 10, "an empty queue")
        time.sleep(0.5)
        copies = sorted(r for t in sink.received() for r in t.recipients)
        assert copies == ["far1@away.test", "far2@away.test"]
    finally:
        sink.release()
        node.stop()
        sink.stop()


# -- one worker on a real store, with store failures injected --------------------------------
@dataclass
class Harness:
    """A store with one remote message queued and a worker to deliver it to the sink, with a
    1-s lease, run until the test ends (then cancelled, as a dying node's worker is)."""

    store: SqliteStore
    worker: RemoteWorker
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.worker.run())

    async def emptied(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while await self.store.queue_items():
            assert time.monotonic() < deadline, "the queue never emptied"
            await asyncio.sleep(0.05)


@asynccontextmanager
async def harness(tmp_path: Path, sink: Sink) -> AsyncIterator[Harness]:
    store = SqliteStore(tmp_path / "once.sqlite3")
    await store.open()
    client = RemoteClient(
        ClientSettings(helo="node.test", connect_timeout=2.0, command_timeout=10.0),
        resolver=MxResolver(nameservers=[("127.0.0.1", 9)], timeout=0.5),
        transports=TransportMap({"*": f"127.0.0.1:{sink.port}"}),
    )
    worker = RemoteWorker(
        store,
        client,
        Directory(store, config_domains=()),
        RetryPolicy(base=0.2, cap=0.5),
        owner="node1",
        hostname="node.test",
        lease_seconds=1.0,
        poll_interval=0.1,
    )
    h = Harness(store, worker)
    try:
        await store.accept(request(remote=("far@away.test",)))
        yield h
    finally:
        sink.release()
        if h.task is not None:
            h.task.cancel()
            await asyncio.gather(h.task, return_exceptions=True)
        await client.close()
        await store.close()


def failing(real: Callable[..., Awaitable[Any]], times: int | None) -> Callable[..., Any]:
    """`real`, failing its first `times` calls (None: every call) as a lost database does."""
    calls = 0

    async def flaky(*args: object) -> Any:
        nonlocal calls
        calls += 1
        if times is None or calls <= times:
            raise StoreUnavailable("postgresql: ConnectionDoesNotExistError: connection was closed")
        return await real(*args)

    return flaky


async def test_an_outcome_the_store_failed_to_commit_is_committed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = Sink().start()
    try:
        async with harness(tmp_path, sink) as h:
            monkeypatch.setattr(h.store, "settle_queued", failing(h.store.settle_queued, 1))
            h.start()
            await h.emptied()
            await asyncio.sleep(2.0)  # two leases: a lapsed one would have been sent again
            assert len(sink.received()) == 1
            assert h.worker.delivered == 1
    finally:
        sink.stop()


async def test_a_worker_does_not_start_what_it_is_still_delivering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = Sink().start()
    sink.hold()
    try:
        async with harness(tmp_path, sink) as h:
            monkeypatch.setattr(h.store, "renew_lease", failing(h.store.renew_lease, None))
            h.start()
            while not sink.received():
                await asyncio.sleep(0.05)
            # The renewals fail, so the 1-s lease lapses and the worker's next claims return
            # the item it is still waiting on.
            await asyncio.sleep(2.5)
            assert len(sink.received()) == 1
            sink.release()
            await h.emptied()
            await asyncio.sleep(0.5)
            assert len(sink.received()) == 1
            assert h.worker.delivered == 1
    finally:
        sink.stop()
