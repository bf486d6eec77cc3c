"""The `http` listener: uvicorn serving the status app inside the node's own event loop.

Bounded like every listener (DESIGN.md "Bounded everything"): connections and in-flight requests
(`limit_concurrency`, past it uvicorn answers 503) and the share of them one client network may
hold (`NetworkShares`, 503 at connect), keep-alive idle time, the size of a request
head (`head.HeadMeter`: 431, or 414 for a request line, before h11 parses anything) and the time
it may take to arrive (`_BoundedH11`); request bodies are bounded by `guard.Guard`. The node
binds the socket itself, so port 0 works in tests, a taken port fails `Node.start` like any other
listener, and uvicorn never calls `sys.exit` on a bind error.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
from collections.abc import Generator

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from mailfort.network import Networks, share_of
from mailfort.status.web.head import HEAD_TOO_LARGE, MAX_HEAD, URI_TOO_LONG, HeadMeter

log = logging.getLogger("mailfort.status.web")

MAX_CONNECTIONS = 1000
KEEP_ALIVE = 5.0  # seconds an idle keep-alive connection stays open
HEAD_TIMEOUT = 10.0  # seconds from a connection (or a request's first byte) to its whole head


def _closing(status: str, text: bytes, extra: bytes = b"") -> bytes:
    """A whole response that ends the connection, written before any app runs."""
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n".encode()
        + extra
        + b"connection: close\r\ncache-control: no-store\r\ncontent-length: "
        + str(len(text)).encode()
        + b"\r\n\r\n"
        + text
    )


_NETWORK_FULL = _closing(
    "503 Service Unavailable",
    b"too many connections from your network, try again later\n",
    b"retry-after: 5\r\n",
)
# The TLS proxy in front (the only peers whose X-Forwarded-For is believed): it carries every
# visitor, so it is not one client; it must bound its own clients.
TRUSTED_PROXIES = frozenset({"127.0.0.1", "::1"})
_REQUEST_TIMEOUT = _closing("408 Request Timeout", b"request head not received in time\n")
_REFUSED_HEAD = {
    URI_TOO_LONG: _closing("414 URI Too Long", b"request line too long\n"),
    HEAD_TOO_LARGE: _closing("431 Request Header Fields Too Large", b"request head too large\n"),
}


class NetworkShares:
    """Connections open per client network (`Networks`: a /24 or /64); a network holds at most
    `share` of them. (An address is in its network, so this bounds each address too.)"""

    def __init__(self, networks: Networks, share: int) -> None:
        self.networks = networks
        self.share = share
        self._open: collections.Counter[str] = collections.Counter()

    def admit(self, ip: str) -> str | None:
        """The client's network, counted; None when it has its share already."""
        network = self.networks.of(ip)
        if self._open[network] >= self.share:
            return None
        self._open[network] += 1
        return network

    def release(self, network: str) -> None:
        self._open[network] -= 1
        if self._open[network] <= 0:
            del self._open[network]


class _BoundedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head.

    uvicorn times only the idle time between requests (keep-alive). A client that connected and
    sent nothing, or trickled a head a byte at a time, kept its connection for ever, and
    `limit_concurrency` such clients made the status page answer 503 to every visitor: a
    slowloris against the page customers need when mail is in trouble. The deadline runs from
    the connection, or from the first byte of each later request, to the end of that head; past
    it a client that sent part of a head gets 408, one that sent nothing is closed. (Bodies are
    bounded by the app's own deadline and size limit in `guard.py`.)

    The bytes of each head are counted as they arrive (`HeadMeter`); past its bound the client
    gets 431 (or 414 for a request line) and the connection is closed before h11 buffers or
    parses the rest.
    """

    head_timeout = HEAD_TIMEOUT
    shares: NetworkShares | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head = HeadMeter()
        self._network: str | None = None
        peer = self.client[0] if self.client else None
        if self.shares is not None and peer is not None and peer not in TRUSTED_PROXIES:
            self._network = self.shares.admit(peer)
            if self._network is None:
                # One network must not take every connection the listener has (they are
                # bounded in all by limit_concurrency): refused at once, before any parsing.
                log.info("event=http_connection_refused reason=network client=%s", peer)
                transport.write(_NETWORK_FULL)
                transport.close()
                return
        self._arm_head_timer()

    def _waiting_for_head(self) -> bool:
        # IDLE: before a request's head is parsed (SEND_BODY/DONE while one is in progress,
        # until both sides are done and h11 starts the next cycle).
        return self.conn.their_state is h11.IDLE

    def _arm_head_timer(self) -> None:
        self._head.reset()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # refused at connect, or answered and closing: nothing more is read
        if self._waiting_for_head():
            if self._head_timer is None:
                self._arm_head_timer()
            refused = self._head.feed(data)
            if refused:
                self._refuse_head(refused)
                return
        super().data_received(data)
        if not self._waiting_for_head():
            self._cancel_head_timer()  # the head is complete: the app's deadline takes over

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._network is not None and self.shares is not None:
            self.shares.release(self._network)
            self._network = None
        super().connection_lost(exc)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._waiting_for_head():
            return
        if self._head.seen:
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()

    def _refuse_head(self, status: int) -> None:
        self._cancel_head_timer()
        if self.transport.is_closing():
            return
        client = self.client[0] if self.client else "-"
        log.info("event=http_head_refused status=%d client=%s", status, client)
        self.transport.write(_REFUSED_HEAD[status])
        self.transport.close()


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The node owns SIGTERM/SIGINT (they start its drain); uvicorn must not take them over.
        yield


class HttpListener:
    def __init__(
        self,
        app: ASGIApp,
        host: str,
        port: int,
        *,
        max_connections: int = MAX_CONNECTIONS,
        keep_alive: float = KEEP_ALIVE,
        head_timeout: float = HEAD_TIMEOUT,
        networks: Networks | None = None,
        network_share: float = 0.25,
    ) -> None:
        self.host = host
        self._socket = socket.create_server(
            (host, port),
            family=socket.AF_INET6 if ":" in host else socket.AF_INET,
            backlog=1024,
        )
        self.port: int = self._socket.getsockname()[1]
        self.config = uvicorn.Config(
            app,
            host=host,
            port=self.port,
            http=type(
                "BoundedH11",
                (_BoundedH11,),
                {
                    "head_timeout": head_timeout,
                    # [limits] max_network_share of the connections, per client network.
                    "shares": NetworkShares(
                        networks or Networks(), share_of(max_connections, network_share)
                    ),
                },
            ),
            ws="none",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            # X-Forwarded-For/-Proto count only from a proxy on this host (the TLS proxy).
            proxy_headers=True,
            forwarded_allow_ips="127.0.0.1,::1",
            limit_concurrency=max_connections,
            timeout_keep_alive=int(keep_alive),
            timeout_graceful_shutdown=5,
            h11_max_incomplete_event_size=MAX_HEAD,
        )
        self.server = _Server(self.config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(
            self.server.serve(sockets=[self._socket]), name="http-listener"
        )
        while not self.server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("http listener stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 10.0)
            except TimeoutError:
                self.server.force_exit = True
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self._socket.close()
