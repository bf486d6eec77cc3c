"""Remote delivery is polite to a failing MX: a circuit breaker per destination and a retry
budget bound how often a real node connects to it, and mail still arrives once it recovers.

The failing MX is a listener on loopback that counts connections and greets each with
`421 4.3.2` (a server that takes nothing); the recovered one is the test's SMTP sink on the same
port. Mail enters by the MX port to local aliases that forward to remote.test, which a transport
override routes to that port (no DNS).
"""

from __future__ import annotations

import asyncio
import smtplib
import threading
import time
from pathlib import Path

import pytest

from tests.nodeproc import NodeProcess, free_ports
from tests.polling import wait_for
from tests.smtpsink import Sink

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ITEMS = 10


class FailingMx:
    """Accepts connections, counts them, and refuses each with a 421 greeting."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"421 4.3.2 mx.remote.test overloaded, try again later\r\n")
        try:
            await writer.drain()
        finally:
            writer.close()

    def start(self) -> FailingMx:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._on_connect, "127.0.0.1", self.port, reuse_address=True),
            self._loop,
        ).result(5)
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def start_node(root: Path, port: int, overload: str) -> NodeProcess:
    delivery = (
        'dns_nameservers = ["127.0.0.1:9"]\ndns_timeout = 1.0\n'
        "retry_base = 0.3\nretry_max = 0.6\nconnect_timeout = 2.0\ncommand_timeout = 5.0\n"
        f'[delivery.transports]\n"remote.test" = "127.0.0.1:{port}"\n'
    )
    node = NodeProcess(root, delivery=delivery, extra_config=overload)
    node.provision(
        domains=("example.test",),
        aliases=tuple((f"fwd{i}@example.test", f"user{i}@remote.test") for i in range(ITEMS)),
    )
    return node.start()


def send_all(node: NodeProcess) -> None:
    with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as smtp:
        for i in range(ITEMS):
            body = f"Subject: item {i}\r\nMessage-ID: <item{i}@outside.test>\r\n\r\nhello\r\n"
            smtp.sendmail("sender@outside.test", [f"fwd{i}@example.test"], body)


def test_breaker_stops_hammering_a_failing_mx_and_probes_until_it_recovers(
    tmp_path: Path,
) -> None:
    port = free_ports(1)[0]
    mx = FailingMx(port).start()
    node = start_node(
        tmp_path,
        port,
        # A strict budget (no reserve): after the outage every item is a retry, yet the backlog
        # must go at once when the probe finds the destination delivering again.
        "[overload]\nbreaker_failures = 2\nbreaker_open_seconds = 1.5\n"
        "breaker_max_open_seconds = 3.0\nretry_budget_reserve = 0\n",
    )
    sink: Sink | None = None
    try:
        send_all(node)
        # Without a breaker each item would be retried every 0.3-0.6 s: ~10 connections/s.
        time.sleep(6)
        connections = mx.connections
        print(f"failing MX saw {connections} connections in 6 s for {ITEMS} items")
        assert 2 <= connections <= ITEMS + 8  # at most one round, then only probes
        items = node.queue()
        assert len(items) == ITEMS
        assert any("circuit breaker" in (item.last_error or "") for item in items)
        mx.stop()
        sink = Sink(port=port).start()
        # The next probe finds the MX healthy; then every item goes, each exactly once.
        wait_for(lambda: not node.queue(), 20, "the queue to empty")
        received = sorted(r for t in sink.received() for r in t.recipients)
        assert received == sorted(f"user{i}@remote.test" for i in range(ITEMS))
        assert "Traceback" not in node.log()
    finally:
        node.stop()
        if sink is not None:
            sink.stop()
        else:
            mx.stop()


def test_retry_budget_bounds_retries_to_a_share_of_attempts(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    mx = FailingMx(port).start()
    # The breaker is out of the way (it would stop retries by itself); the budget allows
    # retries up to 10 % of attempts plus 2 per minute.
    node = start_node(
        tmp_path,
        port,
        "[overload]\nbreaker_failures = 1000\nretry_budget_ratio = 0.1\n"
        "retry_budget_reserve = 2\nretry_budget_window = 60.0\n",
    )
    try:
        send_all(node)
        wait_for(lambda: mx.connections >= ITEMS, 10, "the first attempts")
        time.sleep(6)
        connections = mx.connections
        retries = connections - ITEMS
        print(f"failing MX saw {connections} connections: {ITEMS} first tries, {retries} retries")
        # ratio * (attempts + 1) + reserve >= retries + 1  =>  at most 3 retries here.
        assert 1 <= retries <= 3
        assert len(node.queue()) == ITEMS
        assert "Traceback" not in node.log()
    finally:
        node.stop()
        mx.stop()


def test_a_server_that_defers_recipients_is_not_a_failing_destination(tmp_path: Path) -> None:
    # Greylisting: a working MX answers 450 to every RCPT. That is an answer per recipient, not
    # a dead destination; the breaker must stay closed so retries keep their own schedule
    # instead of being held back for the breaker's pause.
    port = free_ports(1)[0]
    sink = Sink(port=port).start()
    for i in range(ITEMS):
        sink.script(f"user{i}@remote.test", "defer", "defer", "accept")
    node = start_node(
        tmp_path,
        port,
        "[overload]\nbreaker_failures = 2\nbreaker_open_seconds = 30.0\n"
        "retry_budget_reserve = 1000\n",
    )
    try:
        send_all(node)
        wait_for(lambda: not node.queue(), 30, "the queue to empty")
        received = sorted(r for t in sink.received() for r in t.recipients)
        assert received == sorted(f"user{i}@remote.test" for i in range(ITEMS))
        assert "breaker_open" not in node.log()
    finally:
        node.stop()
        sink.stop()
