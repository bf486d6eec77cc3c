"""One HTTP/1.1 request to a webhook subscriber, to the very address that was checked.

`WebhookClient.request` resolves the URL's host once (`webhook_url.resolve`: every address must
be public unless the operator allows private ones), connects to one of those addresses itself,
and sends the request with the URL's name in the `Host` header and, for https, as the TLS server
name, so the certificate is checked against the name the subscriber gave. A stdlib or httpx
client would look the name up again when it connects, and a DNS server that answers a public
address first and 127.0.0.1 second (DNS rebinding) would steer it past the check.

Redirects are answers like any other (never followed: a `Location` could point anywhere). The
whole exchange, lookup included, runs under one deadline, and at most `max_answer` bytes of the
answer's body are read. The HTTP framing is h11's (a sans-IO HTTP/1.1 implementation).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import h11

from mailfort import __version__
from mailfort.status.webhook_url import (
    IPAddress,
    Resolver,
    Target,
    resolve,
    system_resolver,
)

USER_AGENT: Final = f"mailfort/{__version__} (webhooks)"
_READ: Final = 16 * 1024
_CONNECT_TRIES: Final = 3  # addresses tried in turn when a connection is refused


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes  # at most `max_answer` bytes of it


class WebhookClient:
    """Sends requests to webhook URLs; shared by the subscription check and the sender."""

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        allow_private: bool = False,
        resolver: Resolver = system_resolver,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout = timeout
        # Webhooks to loopback or private addresses: an operator's choice (`[status]
        # webhook_allow_private`), never a subscriber's.
        self.allow_private = allow_private
        self.resolver = resolver
        self._tls = tls

    @property
    def tls(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    async def request(
        self,
        target: Target,
        method: str,
        *,
        path: str | None = None,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        max_answer: int = 4096,
    ) -> Answer:
        """Send one request to `target` (at `path`, default the target's own) and read the
        answer. Raises `Refused` for a non-public host, `OSError` or `TimeoutError` when the
        exchange fails."""
        deadline = asyncio.get_running_loop().time() + self.timeout
        async with asyncio.timeout_at(deadline):
            addresses = await resolve(target, self.resolver, allow_private=self.allow_private)
            reader, writer = await self._connect(target, addresses)
        try:
            async with asyncio.timeout_at(deadline):
                return await _exchange(
                    reader,
                    writer,
                    _request(target, method, path or target.path, body, headers or {}),
                    body,
                    max_answer,
                )
        finally:
            # Outside the deadline: a peer slow to close must not turn an answer into a timeout.
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _connect(
        self, target: Target, addresses: list[IPAddress]
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        failure: OSError = OSError(f"no address to connect to for {target.host!r}")
        for address in addresses[:_CONNECT_TRIES]:
            try:
                if target.scheme == "https":
                    return await asyncio.open_connection(
                        str(address), target.port, ssl=self.tls, server_hostname=target.host
                    )
                return await asyncio.open_connection(str(address), target.port)
            except OSError as exc:  # ssl.SSLError (a certificate for another name) is one
                failure = exc
        raise failure


def _request(
    target: Target, method: str, path: str, body: bytes, headers: Mapping[str, str]
) -> h11.Request:
    fields = [
        ("Host", target.authority),
        ("User-Agent", USER_AGENT),
        ("Connection", "close"),
        *headers.items(),
    ]
    if method != "GET":
        fields.append(("Content-Length", str(len(body))))
    return h11.Request(method=method, target=path, headers=fields)


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: h11.Request,
    body: bytes,
    max_answer: int,
) -> Answer:
    conn = h11.Connection(h11.CLIENT)
    try:
        out = conn.send(request) or b""
        if body:
            out += conn.send(h11.Data(data=body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        writer.write(out)
        await writer.drain()
        status = 0
        data = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(_READ))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                data += event.data
                if len(data) >= max_answer:
                    break  # enough to judge; the rest is not read
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    except h11.ProtocolError as exc:
        raise OSError(f"not an HTTP answer: {exc}") from None
    if not status:
        raise OSError("the connection closed before an answer")
    return Answer(status, bytes(data[:max_answer]))
