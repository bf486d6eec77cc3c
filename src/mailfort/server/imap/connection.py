"""IMAP listeners: asyncio streams around the sans-IO reader and the session.

Per connection: a bounded command reader (line and literal limits enforced before bytes are
buffered; APPEND message literals past a small threshold written to the node's spool as they
arrive, so that a session holds little memory whatever it sends), one command at a time
(pipelined commands wait in the reader), output written with backpressure (a client that does
not read stalls only itself and is dropped after a timeout), a limit on time and commands before
login, and the RFC's 30-minute autologout afterwards. Every spool file a connection opened is
closed after its command, or when the connection ends however it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from dataclasses import dataclass

from mailfort.protocol.imap import answers, framing, response
from mailfort.protocol.imap.commands import Append, Command, StartTLS
from mailfort.server.admission import ConnectionLimiter
from mailfort.server.imap import dispatch
from mailfort.server.imap.session import ImapContext, Session, State
from mailfort.server.listener import (
    Admitted,
    Listener,
    RefusalBudget,
    RefusalLines,
    stream_factory,
)
from mailfort.server.spool import SPOOL_THRESHOLD, SpoolFile
from mailfort.server.streams import close, peer_ip

log = logging.getLogger("mailfort.imap")

# Octets written at a time before waiting for the client (see Connection.send).
_WRITE_SLICE = 256 * 1024


@dataclass(frozen=True, slots=True)
class ImapLimits:
    max_line: int = 64 * 1024
    max_literal: int = 64 * 1024 * 1024
    # Before login only LOGIN and AUTHENTICATE take literals: a stranger may not make us hold
    # a message-sized literal per connection (RFC 9051 7.5 lets us refuse it with NO [TOOBIG]).
    unauth_max_literal: int = 8 * 1024
    unauth_timeout: float = 60.0
    # While most connection slots are taken (`ConnectionLimiter.stressed`), a client has only
    # this long from connect to login: strangers must not keep a full node from its users.
    stress_unauth_timeout: float = 10.0
    unauth_commands: int = 20
    idle_timeout: float = 30 * 60.0  # RFC 9051 5.4: at least 30 minutes once authenticated
    write_timeout: float = 120.0
    # A literal (an APPEND's message) may take `literal_grace` seconds plus one more per
    # `min_literal_rate` octets received (Postfix's smtpd_min_data_rate); 0: no rate.
    literal_grace: float = 60.0
    min_literal_rate: float = 0.0


class Connection:
    def __init__(
        self,
        ctx: ImapContext,
        limits: ImapLimits,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        tls_context: ssl.SSLContext,
        limiter: ConnectionLimiter,
        admitted: Admitted | None = None,
    ) -> None:
        self.ctx = ctx
        self.limits = limits
        self.limiter = limiter  # the listener's: its stress shortens the time to log in
        self.admitted = admitted
        self.reader = reader
        self.writer = writer
        self.tls_context = tls_context
        self.client_ip = peer_ip(writer)
        self.tls = writer.get_extra_info("ssl_object") is not None
        self.spooled: list[SpoolFile] = []  # spool files opened and not yet closed
        self.framer = self._new_framer()
        self.events: deque[framing.Event] = deque()
        self.closing = asyncio.Event()
        self.blocked = 0.0  # seconds spent waiting for the client to read what was sent
        self._literal_at: float | None = None  # loop time the literal being read began
        self._literal_read = 0  # octets of it received so far
        self._read_task: asyncio.Future[bytes | None] | None = None
        self.session = Session(ctx, self)

    def _new_framer(self) -> framing.CommandReader:
        spool = self.ctx.spool
        return framing.CommandReader(
            max_line=self.limits.max_line,
            max_literal=self.limits.max_literal,
            spool=None if spool is None else self._spool_file,
            spool_threshold=SPOOL_THRESHOLD,
        )

    def _spool_file(self, size: int) -> SpoolFile:
        assert self.ctx.spool is not None
        file = self.ctx.spool.open()
        self.spooled.append(file)
        return file

    def _done_with(self, command: Command) -> None:
        """The command was handled (or never will be): close the spool files it carries."""
        if isinstance(command, Append):
            for message in command.messages:
                if isinstance(message.data, SpoolFile):
                    message.data.close()
        self.spooled = [file for file in self.spooled if not file.closed]

    def release(self) -> None:
        """The connection is over: no spool file of it may stay open, nor its session's place."""
        self.framer.close()
        for file in self.spooled:
            file.close()
        self.spooled.clear()
        self._drop_events()
        self.session.end()

    def _drop_events(self) -> None:
        for event in self.events:
            if isinstance(event, framing.Parsed):
                self._done_with(event.command)
        self.events.clear()

    def shutdown(self) -> None:
        """Drain: a session waiting for its client is told BYE now; a busy one after its command."""
        self.closing.set()
        if self._read_task is not None:
            # Waking the read (rather than closing the transport) lets run() say BYE and end
            # normally; a TLS close would wait for a client that may not be reading.
            self._read_task.cancel()

    # -- SessionIO ----------------------------------------------------------------------------
    async def send(self, data: bytes) -> None:
        # Backpressure: a client that stops reading makes us wait here, not buffer without end.
        # In slices: over TLS one large write is encrypted whole into the socket's buffer before
        # the layer below can push back (a 20 MB FETCH answer sat there three times over for a
        # client that read nothing), so each slice waits for the one before it. That wait is
        # the client's, not the node's: the overload gate leaves it out.
        view = memoryview(data)
        for start in range(0, len(view), _WRITE_SLICE):
            self.writer.write(view[start : start + _WRITE_SLICE])
            started = time.monotonic()
            try:
                await asyncio.wait_for(self.writer.drain(), self.limits.write_timeout)
            finally:
                self.blocked += time.monotonic() - started

    async def read_line(self, timeout: float) -> bytes | None:
        self.events.extend(self.framer.expect_line())
        while True:
            while self.events:
                event = self.events.popleft()
                if isinstance(event, framing.RawLine):
                    return event.data
                # The line was refused (too long): the main loop answers BAD and closes; read
                # on, and the commands after it would be swallowed while we wait for a line.
                self.events.appendleft(event)
                return None
            data = await self._read(timeout)
            if not data:
                return None
            self.events.extend(self.framer.feed(data))

    async def start_tls(self) -> None:
        # RFC 3501 6.2.1 (CVE-2011-0411): what the stream holds now was sent before the client
        # saw our OK, so it is plaintext that must never run inside TLS. Reading stopped when the
        # command was taken (run()), so the client's handshake is not among it.
        await self._drop_buffered()
        await self.writer.start_tls(self.tls_context)
        self.tls = True
        # RFC 3501 6.2.1: nothing the client sent before the handshake may be used after it.
        self.framer.close()
        self.framer = self._new_framer()
        self._drop_events()

    async def _drop_buffered(self) -> None:
        while True:
            # A read of buffered octets completes in its first step; one that would wait for the
            # network finds nothing buffered (and reading is paused, so nothing arrives).
            pending = asyncio.ensure_future(self.reader.read(65536))
            await asyncio.sleep(0)
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
                return
            if pending.exception() is not None or not pending.result():
                return

    def _reading(self, on: bool) -> None:
        transport = self.writer.transport
        if isinstance(transport, asyncio.ReadTransport) and transport.is_reading() != on:
            if on:
                transport.resume_reading()
            else:
                transport.pause_reading()

    async def _read(self, timeout: float) -> bytes | None:
        """Octets from the client; b"" when it is gone, None when `timeout` ran out."""
        try:
            return await asyncio.wait_for(self.reader.read(65536), timeout)
        except TimeoutError:
            return None
        except ConnectionError:
            return b""

    def _literal_deadline(self, now: float) -> float | None:
        """When the literal being read must be complete by, at the minimum rate for what came
        so far; None when no literal is being read (or there is no rate)."""
        if not self.framer.literal_left or not self.limits.min_literal_rate:
            self._literal_at = None
            return None
        if self._literal_at is None:
            self._literal_at, self._literal_read = now, 0
        rate = self.limits.min_literal_rate
        return self._literal_at + self.limits.literal_grace + self._literal_read / rate

    def _login_deadline(self, connected_at: float) -> float:
        # Only before login: an IDLE session of a logged-in user sits idle for half an hour by
        # design, stress or not.
        limits = self.limits
        return self.limiter.login_deadline(
            connected_at, limits.unauth_timeout, limits.stress_unauth_timeout
        )

    # -- main loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        await self.session.greet()
        unauth_commands = 0
        loop = asyncio.get_running_loop()
        connected_at = loop.time()
        while True:
            if not self.events:
                authed = self.session.state is not State.NOT_AUTHENTICATED
                if authed:
                    timeout = self.limits.idle_timeout
                else:
                    # Wake at least every stress period: the listener may fill up meanwhile.
                    remaining = max(0.0, self._login_deadline(connected_at) - loop.time())
                    timeout = min(remaining, self.limits.stress_unauth_timeout)
                literal_due = self._literal_deadline(loop.time())
                if literal_due is not None:
                    timeout = min(timeout, max(0.0, literal_due - loop.time()))
                if self.closing.is_set():
                    await self._bye(answers.BYE_SHUTDOWN)
                    return
                self._read_task = asyncio.ensure_future(self._read(timeout))
                try:
                    data = await self._read_task
                except asyncio.CancelledError:
                    if not self.closing.is_set():
                        raise
                    data = b""
                finally:
                    self._read_task = None
                if data is None and literal_due is not None and loop.time() >= literal_due:
                    log.info(
                        "event=literal_too_slow client=%s octets=%d",
                        self.client_ip,
                        self._literal_read,
                    )
                    await self._bye(answers.BYE_LITERAL_TOO_SLOW)
                    return
                if data is None and not authed and not self.closing.is_set():
                    if loop.time() < self._login_deadline(connected_at):
                        continue  # woke only to look at the stress again
                    if self.limiter.stressed:
                        log.info("event=stress_unauth_timeout client=%s", self.client_ip)
                if not data:
                    if self.closing.is_set():
                        await self._bye(answers.BYE_SHUTDOWN)
                        return
                    if not authed or timeout <= 0:
                        await self._bye(answers.BYE_AUTOLOGOUT)
                    elif self.reader.at_eof():
                        return
                    else:
                        await self._bye(answers.BYE_AUTOLOGOUT)
                    return
                self.framer.max_literal = (
                    self.limits.max_literal if authed else self.limits.unauth_max_literal
                )
                if self._literal_at is not None:
                    self._literal_read += len(data)
                self.events.extend(self.framer.feed(data))
                continue
            event = self.events.popleft()
            if self.admitted is not None:
                self.admitted.arrived()  # the client asks for work: its reservation is done
            if self.session.state is State.NOT_AUTHENTICATED and not isinstance(
                event, framing.Continue | framing.RawLine
            ):
                # Refused and malformed commands count too: garbage is no cheaper to answer.
                unauth_commands += 1
                if unauth_commands > self.limits.unauth_commands:
                    await self._bye(answers.BYE_TOO_MANY_UNAUTHENTICATED)
                    return
            if isinstance(event, framing.Continue):
                await self.send(answers.READY_FOR_LITERAL)
                continue
            if isinstance(event, framing.LiteralTooBig):
                await self.send(answers.LITERAL_TOO_BIG.line(event.tag or "*"))
                continue
            if isinstance(event, framing.ParseError):
                await self.send(response.tagged(event.tag or "*", "BAD", event.text, event.code))
                if event.close:
                    await self._bye(answers.BYE_INVALID_INPUT)
                    return
                continue
            if isinstance(event, framing.RawLine):
                continue  # a stray line after AUTHENTICATE/IDLE ended; nothing waits for it
            starttls = isinstance(event.command, StartTLS)
            if starttls:
                self._reading(False)  # until the handshake; see start_tls()
            try:
                keep = await dispatch.run(self.session, event.command)
            finally:
                self._done_with(event.command)
            if starttls:
                self._reading(True)  # STARTTLS refused, or the new transport after it
            if not keep:
                return

    async def _bye(self, line: bytes) -> None:
        with contextlib.suppress(Exception):
            await self.send(line)


REFUSALS = RefusalLines(
    busy=answers.BYE_BUSY, client=answers.BYE_CONNECTIONS, draining=answers.BYE_SHUTDOWN
)


async def start_imap(
    *,
    ctx: ImapContext,
    host: str,
    port: int,
    limiter: ConnectionLimiter,
    tls_context: ssl.SSLContext,
    implicit_tls: bool,
    limits: ImapLimits | None = None,
    connections: set[Connection] | None = None,
    budget: RefusalBudget | None = None,
) -> Listener:
    """`connections`, when given, holds every open connection (for draining the node)."""
    limits = limits or ImapLimits()
    registry: set[Connection] = connections if connections is not None else set()

    async def on_connect(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, admitted: Admitted
    ) -> None:
        ip = admitted.ip
        connection = Connection(ctx, limits, reader, writer, tls_context, limiter, admitted)
        registry.add(connection)
        try:
            await connection.run()
        except (ConnectionError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # The node is exiting with this session still open. This task is the handler's
            # last frame and nobody awaits it: end quietly instead of logging a traceback.
            pass
        except Exception:
            # Never a traceback on the wire; the rest of the node carries on.
            log.exception("event=imap_session_crashed client=%s", ip)
            with contextlib.suppress(Exception):
                writer.write(answers.BYE_SERVERBUG)
        finally:
            registry.discard(connection)
            admitted.release()
            connection.release()
            await close(writer)

    listener = Listener(
        host,
        port,
        protocol="imap",
        factory=stream_factory(on_connect, limit=65536),
        limiter=limiter,
        lines=REFUSALS,
        gate=ctx.gate,
        metrics=ctx.metrics,
        budget=budget,
        tls=tls_context if implicit_tls else None,
    )
    listener.start()
    return listener
