"""Bounds on every request: the node's overload gate, a deadline, and a body size limit.

Public pages come from the in-memory snapshot (one store read per refresh, renders memoized per
snapshot) and take no store slot: they are what customers read while mail is overloaded, so
the store-bound limit that refuses SMTP transactions must not refuse them too; only a saturated
CPU does. Everything else (an account page, a webhook subscription) takes a slot like any other
store-bound work.

Pure ASGI middleware (no body buffering) so that a refused request costs almost nothing.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailfort.status.web.context import Gate

log = logging.getLogger("mailfort.status.web")

# Scrapers must see an overloaded node (that is when its metrics matter most), and a health
# check must never be what tips a node over, so these skip the gate.
UNGATED = frozenset({"/metrics"})
# Pages that take their slots themselves, for their store work only (`account.py`): a login's
# password check and failure delay must not hold a slot, nor count as store latency.
OWN_SLOTS = frozenset({"/account", "/api/account.json"})
_FROM_MEMORY = frozenset({"/", "/history.atom", "/banner.json", "/banner.html", "/banner.js"})
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def from_memory(scope: Scope) -> bool:
    """A public page drawn from the snapshot. (An incident too old for the snapshot is read from
    the store: `pages.find` takes a slot for that read itself.)"""
    if scope.get("method") not in _READS:
        return False
    path: str = scope.get("path", "")
    return (
        path in _FROM_MEMORY
        or path.startswith("/incidents/")
        or (path.startswith("/api/v2/") and path.endswith(".json"))
    )


_RETRY = [(b"retry-after", b"5")]
_CLOSE = [(b"connection", b"close")]
_TIMED_OUT = -1  # what _run reports for a request cut off at its deadline


async def _send_plain(
    send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]]
) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _busy(send: Send, gate: Gate) -> None:
    retry = str(max(1, math.ceil(float(gate.retry_after))))
    await _send_plain(send, 503, "busy, try again later\n", [(b"retry-after", retry.encode())])


class Guard:
    """Admission through `gate()`, then the app under a deadline of `timeout` seconds."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        gate: Callable[[], Gate | None],
        timeout: float = 30.0,
        max_body: int = 16 * 1024,
    ) -> None:
        self.app = app
        self.gate = gate
        self.timeout = timeout
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length", b"0")
        if not length.isdigit():
            await _send_plain(send, 400, "bad Content-Length\n", _CLOSE)
            return
        if int(length) > self.max_body:
            await _send_plain(send, 413, "request body too large\n", _CLOSE)
            return
        path = scope.get("path")
        gate = None if path in UNGATED or path in OWN_SLOTS else self.gate()
        token = None
        if gate is not None:
            if from_memory(scope):
                if gate.saturated():
                    gate.shed("http")
                    await _busy(send, gate)
                    return
                gate = None  # no slot taken, none to give back
            else:
                token = gate.try_acquire("http")
                if token is None:
                    # The gate counts its own refusals (metrics.refused) for the status signals.
                    await _busy(send, gate)
                    return
        status = 500
        try:
            status = await self._run(scope, self._bounded(receive), send)
        finally:
            if gate is not None:
                # Only a crash or a blown deadline says the node lacks resources; a handler's
                # own 503 (espeak-ng missing, store down) is already a cheap answer.
                gate.release(token, ok=status not in (500, _TIMED_OUT))

    def _bounded(self, receive: Receive) -> Receive:
        """Cut off bodies sent without (or beyond) their Content-Length (chunked uploads)."""
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge
            return message

        return bounded

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Run the app; returns the status it answered with."""
        status = 0

        async def tracking(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, receive, tracking), self.timeout)
        except TimeoutError:
            log.warning("event=http_request_timeout path=%s", scope.get("path"))
            if not status:
                await _send_plain(send, 503, "timed out, try again later\n", _RETRY)
            return _TIMED_OUT
        except BodyTooLarge:
            if not status:
                await _send_plain(send, 413, "request body too large\n", _CLOSE)
            return 413
        return status


class BodyTooLarge(Exception):
    """A request body grew past the bound while it was being read."""
