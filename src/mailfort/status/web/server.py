"""The `http` listener: uvicorn serving the status app inside the node's own event loop.

Bounded like every listener (DESIGN.md "Bounded everything"): connections and in-flight requests
(`limit_concurrency`, past it uvicorn answers 503), keep-alive idle time, and the size of a request
head h11 will buffer. The node binds the socket itself, so port 0 works in tests, a taken port fails
`Node.start` like any other listener, and uvicorn never calls `sys.exit` on a bind error.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import uvicorn
from starlette.types import ASGIApp

MAX_CONNECTIONS = 1000
KEEP_ALIVE = 5.0  # seconds an idle keep-alive connection stays open
MAX_HEAD = 16 * 1024  # bytes of request line and headers h11 buffers before refusing


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
            http="h11",
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
