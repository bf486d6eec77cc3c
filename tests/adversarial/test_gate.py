"""Attacks on the overload gate and the connection bounds: a stranger must not be able to make the
node refuse everyone else, shrink its adaptive limit, or hold its connections.

Each attack runs from 127.0.0.0/24 while the customer (127.0.9.1) keeps using the node; the gate's
limit is read from /metrics before and after (it starts at 64)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import Counter

from tests.adversarial.conftest import (
    assert_unharmed,
    attacker,
    metric,
    served,
    store_limit,
)
from tests.nodeproc import NodeProcess


async def _open(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await asyncio.wait_for(reader.readline(), 10)
        if line[3:4] != b"-":
            return line


async def _trickle_data(port: int, source: str, seconds: float, outcome: Counter[str]) -> None:
    """A transaction whose message arrives a byte at a time: the client, not the node, is slow."""
    try:
        reader, writer = await _open(port, source)
    except OSError:
        outcome["connect failed"] += 1
        return
    try:
        greeting = await _reply(reader)
        if not greeting.startswith(b"220"):
            outcome[greeting[:9].decode()] += 1
            return
        for line in (b"EHLO slow.test", b"MAIL FROM:<x@slow.test>", b"RCPT TO:<bob@example.test>"):
            writer.write(line + b"\r\n")
            await _reply(reader)
        writer.write(b"DATA\r\n")
        if not (await _reply(reader)).startswith(b"354"):
            outcome["no 354"] += 1
            return
        outcome["trickling"] += 1
        writer.write(b"Subject: slow\r\n\r\n")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.5)
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        outcome["cut off"] += 1
    finally:
        writer.close()


def test_trickled_data_neither_holds_slots_nor_shrinks_the_limit(
    hostile_node: NodeProcess,
) -> None:
    # Seen before: 4 sessions trickling DATA collapsed the limit to its minimum (their slow
    # uploads were taken for the node's latency) and every SMTP connection got 421.
    node = hostile_node
    before = store_limit(node)
    outcome: Counter[str] = Counter()

    async def attack() -> None:
        async def one(n: int) -> None:
            await asyncio.sleep(n * 0.05)  # arrivals one by one: a burst is another test
            await _trickle_data(node.ports["smtp"], attacker(n % 20 + 1), 6.0, outcome)

        await asyncio.gather(*(one(n) for n in range(40)))

    with served(node) as report:
        time.sleep(0.5)
        asyncio.run(attack())
    assert outcome["trickling"] >= 20, outcome
    assert store_limit(node) >= before, (before, store_limit(node))
    assert_unharmed(node, report)


def test_silent_connections_cannot_take_every_reservation(hostile_node: NodeProcess) -> None:
    # Seen before: ~80 silent connections a second took every connect reservation (each lasts
    # 2 s), and every other client's connection was refused as "overload".
    node = hostile_node
    sockets: list[socket.socket] = []
    refused = 0
    with served(node) as report:
        time.sleep(0.5)
        deadline = time.monotonic() + 5.0
        n = 0
        while time.monotonic() < deadline:
            for _ in range(10):  # ~100 a second, spread over the attacker's /24
                n += 1
                try:
                    sock = socket.create_connection(
                        ("127.0.0.1", node.ports["smtp"]),
                        timeout=5,
                        source_address=(attacker(n % 250 + 1), 0),
                    )
                except OSError:
                    refused += 1
                    continue
                sockets.append(sock)
            time.sleep(0.1)
        greetings = Counter()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.settimeout(5)
                greetings[sock.recv(100)[:9]] += 1
        for sock in sockets:
            sock.close()
    assert len(sockets) >= 300
    # The attacker's own network is refused once it holds its share: its own doing.
    assert greetings[b"421 4.7.0"] > 0, greetings
    assert_unharmed(node, report)
    reasons = {
        reason: metric(node, "mailfort_admission_refusals_total", protocol="smtp", reason=reason)
        for reason in ("network", "client", "overload")
    }
    assert (reasons["network"] or 0) + (reasons["client"] or 0) > 0, reasons


def _hold(port: int, source: str, command: bytes) -> socket.socket | None:
    """A connection that got its greeting and asked for something (so it holds a slot, not a
    connect reservation); None when it was refused."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    except OSError:
        return None
    greeting = sock.recv(1000)
    if greeting[:3] not in (b"220", b"* O"):
        sock.close()
        return None
    sock.sendall(command)
    sock.recv(1000)
    return sock


def test_one_network_cannot_hold_every_connection(fresh_node) -> None:  # type: ignore[no-untyped-def]
    # 250 addresses of one /24 with 20 connections each would hold 5,000 slots; the network
    # may hold its share (a quarter) of each listener's, and everyone else gets the rest.
    node = fresh_node("[limits]\nmax_connections = 200\nimap_max_connections = 200\n")
    held: list[socket.socket] = []
    with served(node) as report:
        time.sleep(0.5)
        for listener, command in (("smtp", b"EHLO x\r\n"), ("imap", b"a CAPABILITY\r\n")):
            for n in range(100):
                sock = _hold(node.ports[listener], attacker(n % 50 + 1), command)
                if sock is not None:
                    held.append(sock)
        time.sleep(3.0)
    for sock in held:
        sock.close()
    assert len(held) == 50 + 50, len(held)  # a quarter of each listener's 200
    assert_unharmed(node, report)
    for protocol in ("smtp", "imap"):
        refused = metric(
            node, "mailfort_admission_refusals_total", protocol=protocol, reason="network"
        )
        assert refused == 50, (protocol, refused)


def _flood(port: int, seconds: float, first: int) -> int:
    """Connect, read the first line, close: as fast as one process can (another process)."""
    done, n = 0, first
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        n += 1
        try:
            with socket.create_connection(
                ("127.0.0.1", port), timeout=5, source_address=(attacker(n % 250 + 1), 0)
            ) as sock:
                sock.recv(100)
        except OSError:
            pass
        done += 1
    return done


def test_a_connection_flood_from_one_machine_is_refused_cheaply(hostile_node: NodeProcess) -> None:
    # A flood is 4x load from one sender: two processes connecting as fast as they can. The
    # network's share of reservations and connections turns most of it away at accept(), and
    # refusing has a CPU budget, so the customer on another network is still served.
    import multiprocessing

    node = hostile_node
    with served(node) as report, multiprocessing.get_context("spawn").Pool(2) as pool:
        time.sleep(0.5)
        counts = pool.starmap(_flood, [(node.ports["smtp"], 5.0, 0), (node.ports["smtp"], 5.0, 7)])
    assert sum(counts) > 1000, counts
    assert_unharmed(node, report)
    # Past its network's connection rate the flood was refused at accept(), its own doing.
    refused = metric(node, "mailfort_admission_refusals_total", protocol="smtp", reason="network")
    assert refused and refused > sum(counts) / 2, (refused, counts)


def test_a_reader_that_does_not_read_neither_holds_the_node_nor_shrinks_the_limit(
    hostile_node: NodeProcess,
) -> None:
    # A logged-in client FETCHes a big message and never reads the answer: its command waits
    # for it (with a slot, at most its network's share of them), and that wait is the client's,
    # not the node's latency.
    import imaplib

    from tests.rawclient import client_tls

    node = hostile_node
    owner = imaplib.IMAP4_SSL("127.0.0.1", node.ports["imaps"], ssl_context=client_tls())
    owner.login("bob@example.test", "correct horse battery staple")
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 256  # 256 KB
    owner.append("INBOX", None, None, big)
    owner.logout()
    before = store_limit(node)
    readers: list[socket.socket] = []
    with served(node) as report:
        time.sleep(0.5)
        for n in range(12):
            raw = socket.create_connection(
                ("127.0.0.1", node.ports["imaps"]), timeout=10,
                source_address=(attacker(n + 1), 0),
            )  # fmt: skip
            sock = client_tls().wrap_socket(raw)
            sock.recv(1000)
            sock.sendall(b'a LOGIN "bob@example.test" "correct horse battery staple"\r\n')
            while b"a OK" not in sock.recv(4000):
                pass
            # 10 MB of answers: more than the socket buffers hold, so the command waits.
            sock.sendall(b"b SELECT INBOX\r\n" + b"c FETCH 1:* BODY.PEEK[]\r\n" * 40)
            readers.append(sock)  # and never read again
        time.sleep(6.0)
    for sock in readers:
        sock.close()  # the waiting commands end now, each after ~6 s of the client's time
    time.sleep(1.0)
    # Had those 6 s counted as the node's latency, each of the 12 samples would have cut the
    # limit by a tenth (to about a third in all); the node's own work may move it a little.
    assert store_limit(node) >= before * 0.85, (before, store_limit(node))
    assert_unharmed(node, report)
