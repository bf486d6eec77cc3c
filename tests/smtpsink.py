"""An SMTP server that plays the remote MX in tests and benchmarks (aiosmtpd, in its own thread).

It can be told, per recipient, to accept, defer (450) or reject (550), or to follow a script
("defer twice, then accept"); it can hold the reply to the final dot until released, and it offers
STARTTLS with a self-signed certificate. It records every transaction it got as far as DATA:
connection number, the local address the connection came to, TLS or not, envelope and bytes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from mailfort.server.tls import ensure_self_signed, server_context

# aiosmtpd logs every command at INFO; a benchmark would measure that.
logging.getLogger("mail.log").setLevel(logging.WARNING)

ACCEPT = "accept"
DEFER = "defer"
REJECT = "reject"


@dataclass(frozen=True)
class Transaction:
    connection: int
    local: str  # the address the client connected to
    tls: bool
    sender: str
    recipients: tuple[str, ...]
    options: tuple[str, ...]
    data: bytes
    answered: bool  # False while the reply to the final dot is held
    at: float = 0.0  # time.time() when the final dot arrived
    helo: str = ""  # the client's EHLO/HELO name
    peer: str = ""  # the address the client connected from


@dataclass
class _Rules:
    scripts: dict[str, list[str]] = field(default_factory=dict)

    def next(self, recipient: str) -> str:
        script = self.scripts.get(recipient.lower())
        if not script:
            return ACCEPT
        return script.pop(0) if len(script) > 1 else script[0]


class Sink:
    def __init__(
        self,
        *,
        hosts: Iterable[str] = ("127.0.0.1",),
        port: int = 0,
        hostname: str = "sink.test",
        tls_dir: Path | None = None,
        record_data: bool = True,
        record_prefix: int = 0,
        size_limit: int = 33554432,
        timeout: float = 60.0,
        require_client_cert: bool = False,
        delay: float = 0.0,
    ) -> None:
        self.hosts = tuple(hosts)
        self.port = port
        self.hostname = hostname
        self.tls_dir = tls_dir
        self.record_data = record_data
        # Keep only this many leading bytes of each message (0: all): a load test that sends
        # thousands of large messages needs their identifying header, not megabytes of body.
        self.record_prefix = record_prefix
        self.size_limit = size_limit
        self.timeout = timeout  # idle: then "421" and close, as aiosmtpd does
        self.require_client_cert = require_client_cert  # makes every STARTTLS handshake fail
        self.delay = delay  # seconds before answering the final dot (after recording it)
        self.rules = _Rules()
        self.transactions: list[Transaction] = []
        self.connections = 0
        self.delivered = 0  # transactions answered 250
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._hold = False
        self._release: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.Server] = []

    # -- control (from the test's thread) -----------------------------------------------------
    def script(self, recipient: str, *actions: str) -> None:
        """Answer RCPT for `recipient` with these actions in turn; the last one sticks."""
        with self._lock:
            self.rules.scripts[recipient.lower()] = list(actions)

    def hold(self) -> None:
        """Keep the reply to the final dot until `release()`."""
        self._hold = True

    def release(self) -> None:
        self._hold = False
        if self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)

    def received(self, recipient: str | None = None) -> list[Transaction]:
        with self._lock:
            found = list(self.transactions)
        if recipient is None:
            return found
        return [t for t in found if recipient.lower() in (r.lower() for r in t.recipients)]

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; sink has {self.received()}")

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Sink:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            for server in self._servers:
                server.close()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="smtp-sink", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    async def _serve(self) -> None:
        self._release = asyncio.Event()
        tls = None
        if self.tls_dir is not None:
            cert, key = ensure_self_signed(self.tls_dir, self.hostname)
            tls = server_context(cert, key)
            if self.require_client_cert:
                tls.verify_mode = ssl.CERT_REQUIRED
                tls.load_verify_locations(cert)
        loop = asyncio.get_running_loop()

        def factory() -> SMTP:
            return SMTP(
                _Handler(self),
                hostname=self.hostname,
                tls_context=tls,
                data_size_limit=self.size_limit,
                enable_SMTPUTF8=True,
                timeout=self.timeout,
            )

        # One port on every host: the first host picks it; when it is taken on another host,
        # start over with a new one (a fixed port is tried once).
        for _ in range(1 if self.port else 20):
            port = self.port
            try:
                for host in self.hosts:
                    server = await loop.create_server(factory, host, port)
                    port = server.sockets[0].getsockname()[1]
                    self._servers.append(server)
            except OSError:
                for server in self._servers:
                    server.close()
                self._servers.clear()
                continue
            self.port = port
            return
        raise OSError(f"no port free on all of {self.hosts}")

    def stop(self) -> None:
        if self._loop is not None:
            self.release()
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    # -- handler side (the sink's thread) ---------------------------------------------------------
    def _connection(self, session: Session) -> int:
        number: int | None = getattr(session, "sink_connection", None)
        if number is None:
            with self._lock:
                number = next(self._ids)
                self.connections += 1
            session.sink_connection = number
        return number


def _recorded(sink: Sink, content: bytes | None) -> bytes:
    if not sink.record_data or not content:
        return b""
    return bytes(content[: sink.record_prefix] if sink.record_prefix else content)


class _Handler:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        with self.sink._lock:
            action = self.sink.rules.next(address)
        if action == REJECT:
            return f"550 5.1.1 <{address}>: Recipient address rejected: no such user"
        if action == DEFER:
            return f"450 4.2.1 <{address}>: Recipient address temporarily unavailable"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        sink = self.sink
        transport = server.transport
        local = transport.get_extra_info("sockname")[0] if transport else "?"
        peer = transport.get_extra_info("peername")[0] if transport else "?"
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        held = sink._hold
        record = Transaction(
            connection=sink._connection(session),
            local=local,
            tls=tls,
            sender=str(envelope.mail_from),
            recipients=tuple(envelope.rcpt_tos),
            options=tuple(envelope.mail_options),
            data=_recorded(sink, envelope.original_content),
            answered=not held,
            at=time.time(),
            helo=str(session.host_name or ""),
            peer=peer,
        )
        with sink._lock:
            sink.transactions.append(record)
            index = len(sink.transactions) - 1
        if held and sink._release is not None:
            await sink._release.wait()
            with sink._lock:
                sink.transactions[index] = Transaction(**{**record.__dict__, "answered": True})
        if sink.delay:
            await asyncio.sleep(sink.delay)
        with sink._lock:
            sink.delivered += 1
        return "250 2.0.0 Ok: queued"
