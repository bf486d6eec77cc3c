"""The accept loop (server/listener.py) on a real socket: refusals at accept(), their CPU budget,
and what an admitted connection holds until it ends."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from mailfort.config import OverloadConfig
from mailfort.metrics import NodeMetrics
from mailfort.server.admission import ConnectionLimiter
from mailfort.server.listener import Admitted, Listener, RefusalBudget, RefusalLines
from mailfort.server.overload import OverloadGate
from mailfort.server.tls import ensure_self_signed, server_context

LINES = RefusalLines(busy=b"BUSY\r\n", client=b"YOURS\r\n", draining=b"BYE\r\n")


class Hello(asyncio.Protocol):
    """An admitted connection: says hello, and gives its slot back when it closes."""

    def __init__(self, admitted: Admitted) -> None:
        self.admitted = admitted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(b"HELLO\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.admitted.release()


async def first_line(port: int, source: str = "127.0.0.1") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


async def test_an_overloaded_node_answers_every_connection_within_its_refusal_budget() -> None:
    metrics = NodeMetrics()
    gate = OverloadGate(OverloadConfig(initial_limit=2, min_limit=1, max_limit=2), metrics)
    held = [gate.try_acquire("smtp"), gate.try_acquire("smtp")]  # every slot taken: overloaded
    assert all(held) and gate.overloaded()
    budget = RefusalBudget(0.001, window=0.05)  # 50 us of every 50 ms: one refusal or so
    limiter = ConnectionLimiter(max_total=1000, max_per_ip=1000)
    listener = Listener(
        "127.0.0.1", 0, protocol="smtp", factory=Hello, limiter=limiter, lines=LINES,
        gate=gate, metrics=metrics, budget=budget,
    )  # fmt: skip
    listener.start()
    port = listener.sockets[0].getsockname()[1]
    try:
        answers = await asyncio.gather(*(first_line(port) for _ in range(60)))
        # The listener stopped accepting between windows; the kernel held the connections, and
        # every one that was accepted was answered.
        assert answers == [b"BUSY\r\n"] * 60
        assert budget.pauses > 0
        for token in held:
            assert token is not None
            gate.release(token)
        assert await first_line(port) == b"HELLO\r\n"
        assert limiter.total <= 1
    finally:
        listener.close()
    await asyncio.sleep(1.1)  # refusals are counted in bulk
    value = metrics.registry.get_sample_value(
        "mailfort_admission_refusals_total", {"protocol": "smtp", "reason": "overload"}
    )
    assert value == 60


async def test_a_clients_own_refusals_never_stop_the_listener() -> None:
    # A stranger over its network's share or rate is refused cheaply, but its refusals do not
    # spend the node's budget: otherwise its flood would make the listener stop accepting for
    # everyone (a defence turned into a weapon).
    budget = RefusalBudget(0.001, window=0.05)
    limiter = ConnectionLimiter(max_total=1000, max_per_ip=1000, network_rate=5.0)
    listener = Listener(
        "127.0.0.1", 0, protocol="smtp", factory=Hello, limiter=limiter, lines=LINES,
        budget=budget,
    )  # fmt: skip
    listener.start()
    port = listener.sockets[0].getsockname()[1]
    try:
        answers = await asyncio.gather(*(first_line(port, "127.0.0.2") for _ in range(40)))
        assert answers.count(b"HELLO\r\n") == 5 and answers.count(b"YOURS\r\n") == 35
        assert budget.pauses == 0
        assert await first_line(port, "127.0.1.2") == b"HELLO\r\n"  # another network
    finally:
        listener.close()


async def test_an_admitted_connection_holds_its_slot_and_reservation_until_it_ends() -> None:
    metrics = NodeMetrics()
    gate = OverloadGate(OverloadConfig(initial_limit=4, min_limit=1, max_limit=4), metrics)
    limiter = ConnectionLimiter(max_total=1000, max_per_ip=1000)
    listener = Listener(
        "127.0.0.1", 0, protocol="smtp", factory=Hello, limiter=limiter, lines=LINES, gate=gate
    )
    listener.start()
    port = listener.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.readline() == b"HELLO\r\n"
        assert limiter.total == 1 and gate.arriving == 1  # silent: still reserved
        writer.close()
        await writer.wait_closed()
        for _ in range(50):
            if limiter.total == 0:
                break
            await asyncio.sleep(0.02)
        assert limiter.total == 0 and gate.arriving == 0
    finally:
        listener.close()


async def test_refusals_inside_tls_wait_for_a_bounded_number_of_handshakes(
    tmp_path: Path,
) -> None:
    # On an implicit-TLS port a refusal is answered inside TLS, which waits for the client's
    # handshake; clients that never send one must not pile up without end.
    from mailfort.server import listener as listener_module

    cert, key = ensure_self_signed(tmp_path, "mx.test")
    metrics = NodeMetrics()
    gate = OverloadGate(OverloadConfig(initial_limit=1, min_limit=1, max_limit=1), metrics)
    held = gate.try_acquire("submission")
    assert held is not None and gate.overloaded()
    limiter = ConnectionLimiter(max_total=1000, max_per_ip=1000)
    listener = Listener(
        "127.0.0.1", 0, protocol="submission", factory=Hello, limiter=limiter, lines=LINES,
        gate=gate, tls=server_context(cert, key),
    )  # fmt: skip
    listener.start()
    port = listener.sockets[0].getsockname()[1]
    bound = listener_module._MAX_TLS_REFUSALS
    silent = []
    try:
        for _ in range(bound + 20):
            silent.append(await asyncio.open_connection("127.0.0.1", port))
        await asyncio.sleep(0.5)
        assert listener._tls_refusals == bound
        # Past the bound a silent client is closed unanswered at once.
        closed = 0
        for reader, _ in silent[-20:]:
            if await asyncio.wait_for(reader.read(), 5) == b"":
                closed += 1
        assert closed == 20
        # A client that does its handshake still hears why it is turned away.
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        for _, writer in silent:
            writer.close()
        await asyncio.sleep(0.5)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        assert await asyncio.wait_for(reader.readline(), 10) == b"BUSY\r\n"
        writer.close()
    finally:
        listener.close()
        gate.release(held)
