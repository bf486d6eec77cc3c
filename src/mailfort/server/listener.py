"""One accept loop for every mail listener: each connection is admitted or refused at accept(),
before asyncio builds anything for it, and refusing never costs the node more than a set share
of its CPU.

Admission (in this order, cheapest first): the node is draining; the client's address or network
holds its share of the listener's connections (`ConnectionLimiter`); the client's network holds
its share of the overload gate's connect reservations; the node is hard overloaded
(`OverloadGate.admit`). An admitted connection carries an `Admitted`: its connection slot and
its reservation, given back exactly once however the connection ends.

A refusal is one line (`421 …`, `* BYE …`, `-ERR …`) written on the raw socket and a close: no
transport, protocol or task (on an implicit-TLS port the line must go inside TLS, which costs a
handshake, so such a refusal is weighted as several). At thousands of connections a second even
that adds up: at 4x the node's capacity refusals took a tenth of its CPU and at 10x they would
take most of it. So refusing has a budget (`[overload] refusal_cpu_share` of each
`BUDGET_WINDOW`, measured as the thread's CPU time): once it is spent the listener stops
accepting until the window ends, and new connections wait in the kernel's accept queue
(`BACKLOG`), in order, to be admitted or refused when it resumes; past the queue the kernel
drops SYNs and clients retry them. Every connection the node accepts is answered.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from mailfort.metrics import NodeMetrics
from mailfort.server.admission import ConnectionLimiter, Refusal
from mailfort.server.overload import REASON_CLIENT, REASON_OVERLOAD, OverloadGate, Reservation

log = logging.getLogger("mailfort.listener")

# Connections accepted per wake-up at most: others get the loop between batches.
BATCH: Final = 64
# A burst waits in the kernel to be accepted and answered, rather than overflow a short queue
# (the kernel caps it at net.core.somaxconn).
BACKLOG: Final = 1024
BUDGET_WINDOW: Final = 0.1  # seconds over which the refusal budget is counted
# A refusal inside TLS costs a handshake (ECDSA P-256 here): about as much as this many plain ones.
TLS_REFUSAL_WEIGHT: Final = 8
_EMFILE_PAUSE: Final = 0.5  # out of file descriptors: wait this long before accepting again
_FLUSH_EVERY: Final = 1.0  # seconds between refusal counts written to the metrics
_LOG_EVERY: Final = 10.0  # one log line per refusal reason and network in this time at most
_LOG_KEYS: Final = 1024
_MAX_TLS_REFUSALS: Final = 256  # refusals waiting for a TLS handshake at once, per listener
# Refusals that mean "this node cannot take more now": only these spend the refusal budget. A
# client turned away for its own excess (its address or network at its share or rate) must not
# make the listener stop accepting for everyone: that would hand a stranger a way to close it.
_NODE_REASONS: Final = frozenset({REASON_OVERLOAD, Refusal.NODE_FULL.value})


class RefusalBudget:
    """The CPU time refusals may take: `share` of every `window` seconds, for all listeners of
    a node together (they share one CPU)."""

    def __init__(
        self,
        share: float,
        *,
        window: float = BUDGET_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allowance = share * window
        self.window = window
        self.clock = clock
        self._window_end = 0.0
        self._spent = 0.0
        self.pauses = 0

    def _roll(self) -> None:
        now = self.clock()
        if now >= self._window_end:
            self._window_end = now + self.window
            self._spent = 0.0

    def spend(self, cpu_seconds: float) -> None:
        self._roll()
        self._spent += cpu_seconds

    @property
    def exhausted(self) -> bool:
        self._roll()
        return self._spent >= self.allowance

    @property
    def window_end(self) -> float:
        self._roll()
        return self._window_end


class Admitted:
    """What a connection holds from admission: a slot in its listener's `ConnectionLimiter` and
    perhaps a reservation in the overload gate. `release()` gives both back (once)."""

    __slots__ = ("_gate", "_limiter", "ip", "network", "released", "reservation")

    def __init__(
        self,
        ip: str,
        network: str,
        limiter: ConnectionLimiter,
        gate: OverloadGate | None,
        reservation: Reservation | None,
    ) -> None:
        self.ip = ip
        self.network = network
        self._limiter = limiter
        self._gate = gate
        self.reservation = reservation
        self.released = False

    def arrived(self) -> None:
        """The session asks for its first unit of work: its reservation has done its job."""
        reservation, self.reservation = self.reservation, None
        if reservation is not None and self._gate is not None:
            self._gate.arrived(reservation)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self.arrived()
        self._limiter.release(self.ip)


@dataclass(frozen=True, slots=True)
class RefusalLines:
    """What a listener's protocol says when it turns a connection away (one line each, CRLF)."""

    busy: bytes  # the node is overloaded or full
    client: bytes  # this address or network has its share already
    draining: bytes  # the node is shutting down

    def for_reason(self, reason: str) -> bytes:
        if reason == Refusal.DRAINING.value:
            return self.draining
        if reason in (Refusal.IP_FULL.value, Refusal.NETWORK_FULL.value, REASON_CLIENT):
            return self.client
        return self.busy


ProtocolFactory = Callable[[Admitted], asyncio.BaseProtocol]


class Listener:
    """A listening socket on `host:port` (port 0: any free one), the accept loop on it once
    `start()`ed, and what it starts for admitted connections (`factory(admitted)` builds each
    one's protocol). Shaped like the part of `asyncio.Server` the node uses (`sockets`,
    `close`, `wait_closed`)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        protocol: str,
        factory: ProtocolFactory,
        limiter: ConnectionLimiter,
        lines: RefusalLines,
        gate: OverloadGate | None = None,
        metrics: NodeMetrics | None = None,
        budget: RefusalBudget | None = None,
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float = 30.0,
    ) -> None:
        sock = listening_socket(host, port)
        self.sockets = [sock]
        self.protocol = protocol
        self._sock = sock
        self._fd = sock.fileno()
        self._factory = factory
        self._limiter = limiter
        self._lines = lines
        self._gate = gate
        self._metrics = metrics
        self._budget = budget
        self._tls = tls
        self._handshake_timeout = handshake_timeout
        self._loop = asyncio.get_running_loop()
        self._reading = False
        self._closed = False
        self._resume: asyncio.TimerHandle | None = None
        self._starting: set[asyncio.Task[None]] = set()
        self._refused: collections.Counter[str] = collections.Counter()
        self._flush: asyncio.TimerHandle | None = None
        self._logged: dict[tuple[str, str], float] = {}
        self._tls_refusals = 0  # refusals waiting for their TLS handshake
        self.accepted = 0

    # -- asyncio.Server's shape -----------------------------------------------------------------
    def start(self) -> None:
        self._read(True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._read(False)
        if self._resume is not None:
            self._resume.cancel()
        self._flush_refusals()
        self._sock.close()

    async def wait_closed(self) -> None:
        return None

    def is_serving(self) -> bool:
        return not self._closed

    # -- the accept loop ------------------------------------------------------------------------
    def _read(self, on: bool) -> None:
        if on == self._reading or (on and self._closed):
            return
        self._reading = on
        if on:
            self._loop.add_reader(self._fd, self._accept_batch)
        else:
            self._loop.remove_reader(self._fd)

    def _pause(self, until: float) -> None:
        """Stop accepting until `until` (monotonic seconds, as the budget's clock)."""
        self._read(False)
        if self._resume is None:
            delay = max(0.0, until - time.monotonic())
            self._resume = self._loop.call_later(delay, self._resumed)

    def _resumed(self) -> None:
        self._resume = None
        self._read(True)

    def _accept_batch(self) -> None:
        budget = self._budget
        for _ in range(BATCH):
            if budget is not None and budget.exhausted:
                # Refusing has had its share of this window: the rest wait in the kernel.
                budget.pauses += 1
                self._pause(budget.window_end)
                return
            started = time.thread_time()
            try:
                # The raw descriptor: a refusal never needs a socket object.
                fd, address = self._sock._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors or memory: accepting again at once would spin.
                    log.error("event=accept_failed listener=%s error=%s", self.protocol, exc)
                    self._pause(time.monotonic() + _EMFILE_PAUSE)
                    return
                continue  # ECONNABORTED and the like: that client is gone already
            ip = str(address[0]) if isinstance(address, tuple) else "unknown"
            admitted, reason = self._admit(ip)
            if admitted is not None:
                self.accepted += 1
                sock = self._sock
                self._start(socket.socket(sock.family, sock.type, sock.proto, fileno=fd), admitted)
                continue
            self._refuse(fd, reason, ip)
            if budget is not None and reason in _NODE_REASONS:
                weight = TLS_REFUSAL_WEIGHT if self._tls is not None else 1
                budget.spend((time.thread_time() - started) * weight)

    def _admit(self, ip: str) -> tuple[Admitted | None, str]:
        limiter, gate = self._limiter, self._gate
        refusal = limiter.admit(ip)
        if refusal is not None:
            return None, refusal.value
        network = limiter.networks.of(ip)
        reservation = None
        if gate is not None:
            if gate.reservations_full(network):
                limiter.release(ip)
                return None, REASON_CLIENT
            reservation = gate.admit(network)
            if reservation is None:
                limiter.release(ip)
                return None, REASON_OVERLOAD
        return Admitted(ip, network, limiter, gate, reservation), ""

    def _refuse(self, fd: int, reason: str, ip: str) -> None:
        self._count(reason, ip)
        line = self._lines.for_reason(reason)
        if self._tls is not None:
            if self._tls_refusals >= _MAX_TLS_REFUSALS:
                # Each answer inside TLS waits for a handshake: past this many at once (a flood
                # of clients that never complete one) they are closed unanswered, not piled up.
                os.close(fd)
                return
            # The answer must come inside TLS: a handshake, then the line (see _Refuse).
            sock = self._sock
            conn = socket.socket(sock.family, sock.type, sock.proto, fileno=fd)
            self._tls_refusals += 1
            task = self._loop.create_task(self._refuse_in_tls(conn, line))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)
            return
        try:
            os.write(fd, line)  # a fresh socket's empty buffer takes one line at once
        except OSError:
            pass
        finally:
            os.close(fd)

    async def _refuse_in_tls(self, conn: socket.socket, line: bytes) -> None:
        try:
            await self._loop.connect_accepted_socket(
                lambda: _Refuse(line), conn, ssl=self._tls, ssl_handshake_timeout=5.0
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError):
            conn.close()
        finally:
            self._tls_refusals -= 1

    def _start(self, conn: socket.socket, admitted: Admitted) -> None:
        task = self._loop.create_task(self._connect(conn, admitted))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _connect(self, conn: socket.socket, admitted: Admitted) -> None:
        try:
            await self._loop.connect_accepted_socket(
                lambda: self._factory(admitted),
                conn,
                ssl=self._tls,
                ssl_handshake_timeout=self._handshake_timeout if self._tls else None,
            )
        except Exception as exc:
            # A TLS handshake that failed or timed out: the client's doing, nothing to log
            # beyond one line; its slot and reservation are free again.
            admitted.release()
            conn.close()
            if not isinstance(exc, OSError | ssl.SSLError | TimeoutError | ConnectionError):
                log.exception("event=connection_setup_failed listener=%s", self.protocol)

    # -- refusals: counted in bulk, logged sparingly ----------------------------------------------
    def _count(self, reason: str, ip: str) -> None:
        self._refused[reason] += 1
        if self._flush is None:
            self._flush = self._loop.call_later(_FLUSH_EVERY, self._flush_refusals)
        key = (reason, self._limiter.networks.of(ip))
        now = self._loop.time()
        last = self._logged.get(key)
        if last is not None and now - last < _LOG_EVERY:
            return
        if len(self._logged) >= _LOG_KEYS:
            self._logged.clear()
        self._logged[key] = now
        # One line per reason and network per _LOG_EVERY: a flood must not become a flood of
        # log lines (the disk is shared with the store).
        log.warning(
            "event=connection_refused proto=%s reason=%s client=%s", self.protocol, reason, ip
        )

    def _flush_refusals(self) -> None:
        self._flush = None
        refused, self._refused = self._refused, collections.Counter()
        if self._metrics is not None:
            for reason, n in refused.items():
                self._metrics.refused(self.protocol, reason, n)


class _Refuse(asyncio.Protocol):
    """A connection refused inside TLS: one line, then close."""

    def __init__(self, line: bytes) -> None:
        self._line = line

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self._line)
        transport.close()


class _PortSharing:
    """Whether this process's listeners share their ports with its sibling worker processes."""

    enabled = False


def share_ports() -> None:
    """Make every listener this process opens from now on join its port's SO_REUSEPORT group.

    Set once by a worker of `mailfort serve --workers N` before its node starts: each worker
    then listens on its own socket of the same port and the kernel spreads new connections
    across them by a hash of the client's address and port, so every worker accepts only what
    it was given and none is woken for a connection another takes. Off otherwise, so that a
    second node started on a port by mistake fails with "address already in use"."""
    _PortSharing.enabled = True


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` (port 0: any free one) in the port's SO_REUSEPORT group,
    never listening: it holds the port for the workers that join the group (only listening
    sockets receive connections), across their restarts, and turns port 0 into one port that
    all of them bind."""
    return _bound_socket(host, port, reuse_port=True)


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening, non-blocking socket for `host:port` (port 0: any free one)."""
    sock = _bound_socket(host, port, reuse_port=_PortSharing.enabled)
    try:
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _bound_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def stream_factory(
    on_connect: Callable[[asyncio.StreamReader, asyncio.StreamWriter, Admitted], object],
    *,
    limit: int,
) -> ProtocolFactory:
    """A `ProtocolFactory` for stream-based sessions (IMAP, POP3), like `asyncio.start_server`."""
    loop = asyncio.get_running_loop()

    def factory(admitted: Admitted) -> asyncio.BaseProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)

        def connected(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> object:
            return on_connect(r, w, admitted)

        return asyncio.StreamReaderProtocol(reader, connected, loop=loop)  # type: ignore[arg-type]

    return factory
