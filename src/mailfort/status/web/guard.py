"""Bounds on every request: its head, its body, the node's overload gate, and a deadline.

Public pages come from the in-memory snapshot (one store read per refresh, renders memoized per
snapshot) and take no store slot: they are what customers read while mail is overloaded, so
the store-bound limit that refuses SMTP transactions must not refuse them too; only a saturated
CPU does. Everything else (an account page, an unsubscription) takes a slot like any other
store-bound work; a subscription takes one itself, only around its store write (it first waits
for the subscriber to answer a challenge, which is not the node's work).

The gate measures the node, not its clients (DESIGN.md "Defences must not be weapons"):

* the whole body is read *before* a slot is taken, at no less than `min_rate` bytes a second
  after `BODY_GRACE` (a budget as in Postfix's `smtpd_min_data_rate`: each read spends the time
  it took and earns its bytes / `min_rate`, never more than the grace) and within `body_timeout`
  in all; a client that trickles gets 408 and never held a slot;
* a client that leaves before its body arrived is not an error: no answer, no log line, no slot;
* the slot is given back when the response starts (the store work is done by then; sending the
  body to a slow reader is the client's time), with the time since it was taken as its sample;
  only a crash (500) or the app's deadline counts as a loss that shrinks the limit.

Pure ASGI middleware, so a refused request costs almost nothing.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any, Final

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailfort.network import Networks
from mailfort.status.web.context import Gate
from mailfort.status.web.head import refusal

log = logging.getLogger("mailfort.status.web")

# Scrapers must see an overloaded node (that is when its metrics matter most), and a health
# check must never be what tips a node over, so these skip the gate.
UNGATED = frozenset({"/metrics"})
# Routes that take their slots themselves (`Slot.take`), around their store work only: a
# subscription first waits for the subscriber to answer a challenge, an account page's login
# checks a password and may wait out a wrong one's delay, and none of that is the node's work.
SELF_GATED = frozenset(
    {
        ("POST", "/api/v2/webhooks"),
        ("GET", "/account"),
        ("GET", "/api/account.json"),
        ("GET", "/account/mailfort.mobileconfig"),
    }
)
_FROM_MEMORY = frozenset({"/", "/history.atom", "/banner.json", "/banner.html", "/banner.js"})
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
BODY_GRACE: Final = 2.0  # seconds of body-reading budget, at the start and at most


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


_HEAD_REFUSED = {
    414: "request line too long\n",
    431: "request head too large\n",
}


class Guard:
    """Head and body bounds, then admission through `gate()`, then the app under a deadline of
    `timeout` seconds."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        gate: Callable[[], Gate | None],
        timeout: float = 30.0,
        max_body: int = 16 * 1024,
        body_timeout: float = 10.0,
        min_rate: int = 1024,
        networks: Networks | None = None,
    ) -> None:
        self.app = app
        self.networks = networks or Networks()
        self.gate = gate
        self.timeout = timeout
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.min_rate = min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = _head_refusal(scope)
        if refused:
            await _send_plain(send, refused, _HEAD_REFUSED[refused], _CLOSE)
            return
        headers = dict(scope.get("headers") or ())
        length = headers.get(b"content-length", b"0")
        if not length.isdigit():
            await _send_plain(send, 400, "bad Content-Length\n", _CLOSE)
            return
        if int(length) > self.max_body:
            await _send_plain(send, 413, "request body too large\n", _CLOSE)
            return
        if int(length) == 0 and b"transfer-encoding" not in headers:
            # No body (a page view): nothing to wait for, and the cheapest path for a rush.
            await self._admitted(scope, receive, send)
            return
        try:
            body = await self._read_body(receive)
        except _BodyTooLarge:
            await _send_plain(send, 413, "request body too large\n", _CLOSE)
            return
        except _TooSlow:
            _client_log(scope, "event=http_body_too_slow")
            await _send_plain(send, 408, "request body not received in time\n", _CLOSE)
            return
        if body is None:
            return  # the client left: nobody to answer, nothing went wrong
        await self._admitted(scope, _replay(body, receive), send)

    async def _admitted(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate = self._gate_for(scope)
        if gate is None:
            await self._run(scope, receive, send, None)
            return
        if from_memory(scope):
            if gate.saturated():
                gate.shed("http")
                await _busy(send, gate)
                return
            await self._run(scope, receive, send, None)
            return
        client = scope.get("client")
        slot = Slot.take(gate, self.networks.of(client[0]) if client else None)
        if slot is None:
            # The gate counts its own refusals (metrics.refused) for the status signals.
            await _busy(send, gate)
            return
        await self._run(scope, receive, send, slot)

    def _gate_for(self, scope: Scope) -> Gate | None:
        if scope.get("path") in UNGATED or (scope.get("method"), scope.get("path")) in SELF_GATED:
            return None
        return self.gate()

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole request body, or None when the client left; `_TooSlow` past the
        deadline or below the minimum rate, `_BodyTooLarge` past `max_body` (chunked uploads
        announce no length)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        budget = BODY_GRACE
        chunks: list[bytes] = []
        size = 0
        while True:
            started = loop.time()
            wait = deadline - started
            if self.min_rate:
                wait = min(wait, budget)
            if wait <= 0:
                raise _TooSlow
            try:
                message = await asyncio.wait_for(receive(), wait)
            except TimeoutError:
                raise _TooSlow from None
            if message["type"] == "http.disconnect":
                return None
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _BodyTooLarge
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
            if self.min_rate:
                spent = loop.time() - started
                budget = min(BODY_GRACE, budget - spent + len(chunk) / self.min_rate)

    async def _run(self, scope: Scope, receive: Receive, send: Send, slot: Slot | None) -> None:
        """Run the app under the deadline; the slot (if any) is given back when the response
        starts, or when the app ends without one."""
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if slot is not None:
                    slot.done(ok=int(message["status"]) != 500)
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, receive, tracking), self.timeout)
        except TimeoutError:
            log.warning("event=http_request_timeout path=%s", scope.get("path"))
            if slot is not None:
                slot.done(ok=False)  # the body was in: the node itself was too slow
            if not started:
                await _send_plain(send, 503, "timed out, try again later\n", _RETRY)
        except ClientDisconnect:
            if slot is not None:
                slot.forget()  # the client left: its timing says nothing about the node
        except asyncio.CancelledError:
            if slot is not None:
                slot.forget()  # the listener stops
            raise
        except BaseException:
            if slot is not None:
                slot.done(ok=False)
            raise
        else:
            if slot is not None:
                slot.done(ok=True)  # ended without a response (the client left meanwhile)


class Slot:
    """A gate slot held for one request's store work, given back once (`done` or `forget`)."""

    __slots__ = ("gate", "token")

    def __init__(self, gate: Gate | None, token: Any) -> None:
        self.gate = gate
        self.token: Any = token

    @classmethod
    def take(cls, gate: Gate | None, client: str | None = None) -> Slot | None:
        """A slot from `gate` for a request from network `client` (a no-op one without a
        gate), or None: refused (counted). The one place the http listener asks the gate for a
        slot."""
        if gate is None:
            return cls(None, None)
        token = gate.try_acquire("http", client)
        return None if token is None else cls(gate, token)

    def done(self, *, ok: bool) -> None:
        if self.gate is not None and self.token is not None:
            token, self.token = self.token, None
            self.gate.release(token, ok=ok)

    def forget(self) -> None:
        if self.gate is not None and self.token is not None:
            token, self.token = self.token, None
            self.gate.forget(token)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read already, as one message; then the connection's own events (a disconnect)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay


def _head_refusal(scope: Scope) -> int:
    target: bytes = scope.get("raw_path") or scope.get("path", "").encode()
    query: bytes = scope.get("query_string", b"")
    if query:
        target += b"?" + query
    return refusal(scope.get("method", ""), target, scope.get("headers") or ())


def _client_log(scope: Scope, event: str) -> None:
    client = scope.get("client")
    log.info("%s path=%s client=%s", event, scope.get("path"), client[0] if client else "-")


class _BodyTooLarge(Exception):
    """A request body grew past the bound while it was being read."""


class _TooSlow(Exception):
    """A request body did not arrive in time or at the minimum rate."""
