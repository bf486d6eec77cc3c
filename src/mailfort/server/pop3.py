"""POP3 listeners: asyncio streams around the sans-IO core (`protocol/pop3/session.py`).

Per connection: input is read only when the core has no complete line left (one read of at most
64 KiB plus one line of ≤ 255 octets is all a connection buffers); output is written with
backpressure, piece by piece for RETR, so a client that does not read stalls only itself and is
dropped after `write_timeout`; a time and command limit before login; RFC 1939's autologout
(at least 10 minutes) after it. Logins go through the node's `auth/login.Logins`, like every
protocol's: throttled per address, network and account, and holding an overload-gate slot only
for store work. The maildrop is locked for the session (`pop3_maildrop`) and unlocked however the
session ends; deletions are applied only after QUIT, in one store transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass, field

from mailfort.auth.login import Attempt, Logins, Outcome
from mailfort.errors import CommitInDoubt, StoreError
from mailfort.metrics import NodeMetrics
from mailfort.network import Networks
from mailfort.protocol.pop3 import replies as R
from mailfort.protocol.pop3 import session as core
from mailfort.protocol.pop3.maildrop import Maildrop
from mailfort.protocol.pop3.replies import Code
from mailfort.server.account_sessions import AccountSessions, SessionTicket
from mailfort.server.admission import ConnectionLimiter
from mailfort.server.listener import (
    Admitted,
    Listener,
    RefusalBudget,
    RefusalLines,
    stream_factory,
)
from mailfort.server.offload import CpuPool, Pacer
from mailfort.server.overload import OverloadGate
from mailfort.server.pop3_maildrop import MaildropLocks, SizeCache, load_maildrop
from mailfort.server.streams import close, peer_ip
from mailfort.status.components import Component
from mailfort.status.notices import NoticeBoard
from mailfort.store.roles import Mailboxes

log = logging.getLogger("mailfort.pop3")
_COALESCE = 16 * 1024


@dataclass(frozen=True, slots=True)
class Pop3Limits:
    unauth_timeout: float = 60.0  # from connect to a successful login
    # ... while most connection slots are taken (ConnectionLimiter.login_deadline)
    stress_unauth_timeout: float = 10.0
    unauth_commands: int = 20
    idle_timeout: float = 600.0  # RFC 1939 §3: an autologout timer of at least 10 minutes
    write_timeout: float = 120.0
    read_size: int = 65536


@dataclass
class Pop3Context:
    """Everything a POP3 session shares with the rest of the node."""

    store: Mailboxes
    auth: Logins
    locks: MaildropLocks
    sizes: SizeCache
    hostname: str
    allow_plaintext_loopback: bool = False
    logins: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0})
    gate: OverloadGate | None = None
    metrics: NodeMetrics | None = None
    # Status notices: an incident touching POP3 is named in the +OK of a login.
    notices: NoticeBoard | None = None
    networks: Networks = field(default_factory=Networks)
    # Threads for work on message bodies (TOP) off the event loop.
    cpu: CpuPool = field(default_factory=CpuPool)
    # Logged-in sessions per account on this node, shared with IMAP and submission.
    sessions: AccountSessions = field(default_factory=lambda: AccountSessions(50))


def _is_loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip == "::1"


def _discard_plaintext(reader: asyncio.StreamReader) -> None:
    """Drop octets the stream buffered but we have not read (asyncio has no public way).

    CVE-2011-0411: a man in the middle appends commands after STLS; they must not run as if
    they came over TLS, but asyncio keeps them in the reader's buffer across `start_tls`."""
    buffer = getattr(reader, "_buffer", None)
    if isinstance(buffer, bytearray):
        buffer.clear()


class Connection:
    def __init__(
        self,
        ctx: Pop3Context,
        limits: Pop3Limits,
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
        self.network = ctx.networks.of(self.client_ip)
        tls = writer.get_extra_info("ssl_object") is not None
        self.core = core.Session(
            core.SessionConfig(
                hostname=ctx.hostname,
                tls=tls,
                plaintext_without_tls=ctx.allow_plaintext_loopback and _is_loopback(self.client_ip),
                max_unauth_commands=limits.unauth_commands,
            )
        )
        self._out = bytearray()
        self.account_id: int | None = None
        self.address = ""
        self.mailbox_id = 0
        self.locked = False
        self.ticket: SessionTicket | None = None  # this session's place among its account's

    # -- transport ----------------------------------------------------------------------------
    async def send(self, data: bytes) -> None:
        """Write `data` (after the answers still held back) now."""
        self._out += data
        await self.flush()

    async def flush(self) -> None:
        if not self._out:
            return
        data = bytes(self._out)
        self._out.clear()
        self.writer.write(data)
        # Backpressure: a client that stops reading makes us wait here, not buffer without end.
        if self.writer.transport.get_write_buffer_size():
            await asyncio.wait_for(self.writer.drain(), self.limits.write_timeout)

    async def _read(self, timeout: float) -> bytes | None:
        """Octets from the client; b"" when it is gone, None when `timeout` ran out."""
        if timeout <= 0:
            return None
        try:
            return await asyncio.wait_for(self.reader.read(self.limits.read_size), timeout)
        except TimeoutError:
            return None
        except ConnectionError:
            return b""

    # -- main loop ----------------------------------------------------------------------------
    def _login_deadline(self, connected_at: float) -> float:
        limits = self.limits
        return self.limiter.login_deadline(
            connected_at, limits.unauth_timeout, limits.stress_unauth_timeout
        )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        connected_at = loop.time()
        await self.send(self.core.greeting())
        while True:
            event = self.core.next_event()
            if isinstance(event, core.Send):
                # Answers to pipelined commands go out together (RFC 2449 §6.6), in one write
                # when the client has sent no more, or every `_COALESCE` octets.
                self._out += event.data
                if len(self._out) >= _COALESCE:
                    await self.flush()
                continue
            await self.flush()
            if isinstance(event, core.NeedData):
                unauthorized = self.core.state is core.State.AUTHORIZATION
                if unauthorized:
                    # Wake at least every stress period: the listener may fill up meanwhile.
                    timeout = self._login_deadline(connected_at) - loop.time()
                    timeout = min(timeout, self.limits.stress_unauth_timeout)
                else:
                    timeout = self.limits.idle_timeout
                data = await self._read(timeout)
                if data is None and unauthorized:
                    if loop.time() < self._login_deadline(connected_at):
                        continue  # woke only to look at the stress again
                    if self.limiter.stressed:
                        log.info("event=stress_unauth_timeout client=%s", self.client_ip)
                if data is None:
                    log.info("event=pop3_autologout client=%s", self.client_ip)
                    with contextlib.suppress(Exception):
                        await self.send(self.core.timed_out())
                    return
                if not data:
                    return
                if self.admitted is not None:
                    self.admitted.arrived()  # the client asks for work: its reservation is done
                self.core.receive_data(data)
            elif isinstance(event, core.Login):
                await self.send(await self.login(event))
            elif isinstance(event, core.Retrieve):
                await self.retrieve(event)
            elif isinstance(event, core.StartTls):
                await self.start_tls(event.reply)
            elif isinstance(event, core.Update):
                await self.send(await self.update(event))
            else:
                return  # Close

    async def start_tls(self, reply: bytes) -> None:
        """Answer STLS and hand the connection to TLS (RFC 2595 §4).

        The client sends its ClientHello as soon as it reads the answer. Reading is paused
        before the answer goes out, so those octets wait in the socket for the TLS layer
        instead of landing in the plaintext stream's buffer (where the handshake would never
        see them); what that buffer already holds was sent before the answer: plaintext that
        must not be executed after the handshake (CVE-2011-0411)."""
        transport = self.writer.transport
        assert isinstance(transport, asyncio.ReadTransport)  # a socket's transport reads, too
        transport.pause_reading()
        _discard_plaintext(self.reader)
        await self.send(reply)
        await self.writer.start_tls(self.tls_context)
        self.core.tls_started()

    async def finish(self) -> None:
        """However the session ended: nothing more is deleted, the maildrop is free again."""
        if self.core.state is not core.State.CLOSED:
            self.core.abort()
        if self.ticket is not None:
            self.ticket.close()
        if self.locked and self.account_id is not None:
            self.locked = False
            await self.ctx.locks.release(self.account_id, self)

    # -- events -------------------------------------------------------------------------------

    async def login(self, event: core.Login) -> bytes:
        """Check the password (`auth/login.py`: a gate slot for the account's store read only),
        then, under a slot of its own, lock and load the maildrop. A failure's delay is waited
        out with no slot held."""
        ip, ctx = self.client_ip, self.ctx
        attempt = await ctx.auth.attempt("pop3", ip, event.user, event.password, ctx.gate)
        if attempt.outcome is Outcome.THROTTLED:
            ctx.auth.record(attempt)
            return self.core.login_failed(core.LoginFailure.THROTTLED)
        if attempt.outcome is Outcome.UNAVAILABLE:
            ctx.auth.record(attempt)
            return self.core.login_failed(core.LoginFailure.UNAVAILABLE)
        if attempt.outcome is Outcome.REJECTED:
            ctx.auth.record(attempt)
            ctx.logins["failed"] += 1
            await asyncio.sleep(attempt.delay)
            return self.core.login_failed(core.LoginFailure.CREDENTIALS)
        gate = ctx.gate
        token = gate.try_acquire("pop3", self.network) if gate is not None else None
        if gate is not None and token is None:
            ctx.auth.record(attempt, Outcome.UNAVAILABLE)
            return self.core.login_failed(core.LoginFailure.UNAVAILABLE)
        opened: Maildrop | core.LoginFailure = core.LoginFailure.UNAVAILABLE
        try:
            opened = await self.open_maildrop(attempt, event.mechanism)
        finally:
            if gate is not None and token is not None:
                gate.release(token, opened is not core.LoginFailure.UNAVAILABLE)
        if isinstance(opened, core.LoginFailure):
            # The maildrop in use, or the account's sessions all taken, is the user's own doing
            # (other clients of theirs); a store that cannot lock or load it is the platform's.
            client_side = opened in (core.LoginFailure.IN_USE, core.LoginFailure.TOO_MANY_SESSIONS)
            ctx.auth.record(attempt, Outcome.REJECTED if client_side else Outcome.UNAVAILABLE)
            return self.core.login_failed(opened)
        ctx.auth.record(attempt)
        reply = self.core.login_succeeded(opened)
        notice = ctx.notices.line(Component.POP3) if ctx.notices else None
        if notice:  # ASCII, one line, short: the +OK stays within RFC 1939's 512 octets
            reply = reply.removesuffix(b"\r\n") + b" - " + notice.encode("ascii") + b"\r\n"
        return reply

    async def open_maildrop(self, attempt: Attempt, mechanism: str) -> Maildrop | core.LoginFailure:
        """Lock and load the maildrop of the account that just logged in."""
        ip, ctx, account = self.client_ip, self.ctx, attempt.account
        assert account is not None
        try:
            acquired = await ctx.locks.acquire(account.id, self)
        except StoreError as exc:
            log.warning("event=pop3_store_error step=lock error=%s", exc)
            return core.LoginFailure.UNAVAILABLE
        if not acquired:
            log.info(
                "event=pop3_login_refused reason=in_use client=%s user=%s", ip, account.address
            )
            return core.LoginFailure.IN_USE
        self.account_id, self.locked = account.id, True
        try:
            loaded = await load_maildrop(ctx.store, account.id, ctx.sizes)
        except StoreError as exc:
            log.warning("event=pop3_store_error step=snapshot error=%s", exc)
            loaded = None
            failure = core.LoginFailure.UNAVAILABLE
        else:
            failure = core.LoginFailure.NO_MAILDROP
        if loaded is None:
            self.locked = False
            await ctx.locks.release(account.id, self)
            return failure
        self.mailbox_id, maildrop = loaded
        # Counted once logged in; the maildrop lock already keeps POP3 to one session.
        self.ticket = ctx.sessions.open(account.id)
        if self.ticket is None:
            log.warning(
                "event=pop3_login_refused reason=sessions client=%s user=%s", ip, account.address
            )
            self.locked = False
            await ctx.locks.release(account.id, self)
            return core.LoginFailure.TOO_MANY_SESSIONS
        self.address = account.address
        ctx.logins["ok"] += 1
        log.info(
            "event=pop3_login client=%s user=%s mechanism=%s messages=%d",
            ip,
            account.address,
            mechanism,
            maildrop.count,
        )
        return maildrop

    async def retrieve(self, event: core.Retrieve) -> None:
        """RETR and TOP. The overload gate's slot covers the store read only: sending the message
        waits for the client to read it, which is neither the node's work nor its latency."""
        assert self.account_id is not None
        gate = self.ctx.gate
        token = gate.try_acquire("pop3", self.network) if gate is not None else None
        if gate is not None and token is None:
            await self.send(self.core.message_unavailable())
            return
        ok = True
        try:
            found = await self.ctx.store.bodies(self.account_id, self.mailbox_id, [event.uid])
        except StoreError as exc:
            ok = False
            log.warning("event=pop3_store_error step=retrieve error=%s", exc)
            await self.send(self.core.message_unavailable())
            return
        finally:
            if gate is not None and token is not None:
                gate.release(token, ok)
        data = found.get(event.uid)
        if data is None:
            await self.send(self.core.message_gone())
            return
        if event.lines is None:
            pieces = self.core.message(data)
        else:
            # TOP makes the whole message CRLF and counts its lines: off the loop. The session
            # waits meanwhile, so nothing else touches its core.
            pieces = await self.ctx.cpu.run(self.core.message, data)
        pacer = Pacer()  # a fast reader never makes send() wait: give the others their turns
        for piece in pieces:
            await self.send(piece)
            await pacer.tick()

    async def update(self, event: core.Update) -> bytes:
        """RFC 1939 §6: QUIT in TRANSACTION removes the marked messages, all in one commit."""
        assert self.account_id is not None
        try:
            removed = await self.ctx.store.delete_messages(
                self.account_id, self.mailbox_id, list(event.uids)
            )
        except CommitInDoubt as exc:
            # The deletions may have happened: -ERR would say they did not. No answer, as after
            # a crash; the client's next session shows what is left.
            log.warning("event=pop3_update_in_doubt user=%s error=%s", self.address, exc)
            self.core.updated(False)
            return b""
        except StoreError as exc:
            log.warning("event=pop3_update_failed user=%s error=%s", self.address, exc)
            return self.core.updated(False)
        log.info(
            "event=pop3_update user=%s deleted=%d marked=%d",
            self.address,
            len(removed),
            len(event.uids),
        )
        return self.core.updated(True)


REFUSALS = RefusalLines(
    busy=R.err(R.SERVER_BUSY, Code.SYS_TEMP),
    client=R.err(R.TOO_MANY_FROM_IP, Code.SYS_TEMP),
    draining=R.err(R.SHUTTING_DOWN, Code.SYS_TEMP),
)


async def start_pop3(
    *,
    ctx: Pop3Context,
    host: str,
    port: int,
    limiter: ConnectionLimiter,
    tls_context: ssl.SSLContext,
    implicit_tls: bool,
    limits: Pop3Limits | None = None,
    budget: RefusalBudget | None = None,
) -> Listener:
    limits = limits or Pop3Limits()

    async def on_connect(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, admitted: Admitted
    ) -> None:
        ip = admitted.ip
        connection = Connection(ctx, limits, reader, writer, tls_context, limiter, admitted)
        abort = False
        try:
            await connection.run()
        except (ConnectionError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError):
            # Gone, or not reading: what is still buffered for it would never be flushed.
            abort = True
        except Exception:
            # Never a traceback on the wire; the rest of the node carries on.
            log.exception("event=pop3_session_crashed client=%s", ip)
            with contextlib.suppress(Exception):
                writer.write(R.err(R.INTERNAL_ERROR, Code.SYS_TEMP))
        finally:
            try:
                await connection.finish()
            finally:
                admitted.release()
                await close(writer, abort=abort)

    listener = Listener(
        host,
        port,
        protocol="pop3",
        factory=stream_factory(on_connect, limit=limits.read_size),
        limiter=limiter,
        lines=REFUSALS,
        gate=ctx.gate,
        metrics=ctx.metrics,
        budget=budget,
        tls=tls_context if implicit_tls else None,
    )
    listener.start()
    return listener
