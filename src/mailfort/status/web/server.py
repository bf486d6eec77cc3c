"""The `http` listener: uvicorn serving the status app inside the node's own event loop.

Bounded like every listener (DESIGN.md "Bounded everything"): connections and in-flight requests
(`limit_concurrency`, past it uvicorn answers 503), keep-alive idle time, the size of a request
head h11 will buffer, and the time a request head may take to arrive (`_BoundedH11`). The node
binds the socket itself, so port 0 works in tests, a taken port fails `Node.start` like any other
listener, and uvicorn never calls `sys.exit` on a bind error.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_CONNECTIONS = 1000
KEEP_ALIVE = 5.0  # seconds an idle keep-alive connection stays open
MAX_HEAD = 16 * 1024  # bytes of request line and headers h11 buffers before refusing
HEAD_TIMEOUT = 10.0  # seconds from a connection (or a request's first byte) to its whole head

_TIMED_OUT = b"request head not received in time\n"
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncache-control: no-store\r\ncontent-length: "
    + str(len(_TIMED_OUT)).encode()
    + b"\r\n\r\n"
    + _TIMED_OUT
)


class _BoundedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head.

    uvicorn times only the idle time between requests (keep-alive). A client that connected and
    sent nothing, or trickled a head a byte at a time, kept its connection for ever, and
    `limit_concurrency` such clients made the status page answer 503 to every visitor: a
    slowloris against the page customers need when mail is in trouble. The deadline runs from
    the connection, or from the first byte of each later request, to the end of that head; past
    it a client that sent part of a head gets 408, one that sent nothing is closed. (Bodies are
    bounded by the app's own deadline and size limit in `guard.py`.)
    """

    head_timeout = HEAD_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._arm_head_timer()

    def _waiting_for_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_head_timer(self) -> None:
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self._waiting_for_head():
            self._arm_head_timer()
        self._head_bytes += len(data)
        super().data_received(data)
        if not self._waiting_for_head():
            self._cancel_head_timer()  # the head is complete: the app's deadline takes over

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._waiting_for_head():
            return
        if self._head_bytes:
            self.transport.write(_REQUEST_TIMEOUT)
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
            http=type("BoundedH11", (_BoundedH11,), {"head_timeout": head_timeout}),
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
