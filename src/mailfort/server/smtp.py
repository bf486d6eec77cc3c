"""SMTP listeners: aiosmtpd's protocol with mailfort's admission control and session limits.

aiosmtpd parses the commands; `LimitedSMTP` adds the limits and replaces the parts of aiosmtpd that
cost the most per message (measured with `benchmarks/smtp_ingest.py`, see benchmarks/README.md):
DATA is read in bulk and handed to the sans-IO `protocol.smtp.data.DataReceiver` instead of line by
line; MAIL and RCPT paths in their everyday form skip aiosmtpd's header parser; replies to
pipelined commands leave in one write; the idle timer is checked lazily instead of being re-created
for every command.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import inspect
import logging
import os
import re
import socket
import ssl
from collections import defaultdict
from collections.abc import Callable
from typing import Any, AnyStr, Final

import aiosmtpd.smtp
from aiosmtpd.smtp import MISSING, SMTP, syntax

from mailfort.protocol.smtp import replies as R
from mailfort.protocol.smtp.data import END, TEXT_LINE_LIMIT, DataReceiver
from mailfort.server.admission import ConnectionLimiter, Refusal
from mailfort.server.overload import REASON_OVERLOAD, OverloadGate, Token
from mailfort.server.smtp_policy import OVERLOADED_CONNECT, OVERLOADED_MAIL, Mode, SmtpPolicy
from mailfort.server.spool import SPOOL_THRESHOLD, SpoolFile

log = logging.getLogger("mailfort.smtp")


_CLASS_NAMES: dict[type, tuple[str, ...]] = {}


def _names(obj: object) -> list[str]:
    """`dir()` as aiosmtpd uses it: only to scan for `smtp_`, `handle_` and `auth_` names.

    aiosmtpd's `SMTP.__init__` scans dir(self) and dir(handler) for every new connection, and
    `inspect.getmembers` read every attribute to find the `auth_*` ones. At 4x load in
    benchmarks/overload.py that was a fifth of the node's CPU, for connections that then sent
    one message. The class part never changes and is worked out once; unsorted (no one needs
    the order), plus the instance's own attributes.
    """
    cls = type(obj)
    names = _CLASS_NAMES.get(cls)
    if names is None:
        names = _CLASS_NAMES[cls] = tuple(dir(cls))
    own = getattr(obj, "__dict__", None)
    return [*names, *own] if own else list(names)


class _AiosmtpdInspect:
    """What aiosmtpd needs of `inspect`: the `auth_*` members, an EHLO hook's signature."""

    @staticmethod
    def getmembers(obj: object) -> list[tuple[str, Any]]:
        return [(name, getattr(obj, name)) for name in _names(obj) if name.startswith("auth_")]

    @staticmethod
    def signature(fn: Any) -> inspect.Signature:
        return _signature(fn)


@functools.lru_cache(maxsize=64)  # bound methods of the same handler compare equal: a hit
def _signature(fn: Any) -> inspect.Signature:
    return inspect.signature(fn)


# Module globals shadow builtins: aiosmtpd's own `dir(...)` and `inspect.` calls reach these.
setattr(aiosmtpd.smtp, "inspect", _AiosmtpdInspect)  # noqa: B010 (a module attribute, on purpose)
setattr(aiosmtpd.smtp, "dir", _names)  # noqa: B010

_REFUSALS = {
    Refusal.NODE_FULL: R.TOO_MANY_CONNECTIONS_NODE,
    Refusal.IP_FULL: R.TOO_MANY_CONNECTIONS_IP,
    Refusal.DRAINING: R.SHUTTING_DOWN,
}

# Commands a well-behaved client sends a few times per session; a flood of them is abuse.
CALL_LIMITS = {
    "*": 1000,
    "NOOP": 50,
    "HELP": 20,
    "VRFY": 20,
    "EXPN": 20,
    "AUTH": 10,
    "EHLO": 20,
    "HELO": 20,
    "STARTTLS": 2,
}

# A StreamReader's limit is both the longest line readuntil() returns and, doubled, how much it
# buffers before it stops reading the socket. aiosmtpd sets it to its 1001-octet line limit, so
# every 5 KB message paused and resumed the socket. Lines stay bounded where they are read:
# commands by aiosmtpd's 512-octet check (the same `500` as before, once the line has ended),
# DATA lines by DataReceiver, AUTH answers in `challenge_auth`.
READ_LIMIT: Final = 128 * 1024
# An AUTH answer could be 1001 octets and its LF under the old reader limit.
AUTH_LINE_LIMIT: Final = 1002

# RFC 5321 4.1.2 Path in its everyday form, "<" dot-atom "@" domain ">" and maybe parameters:
# the address and parameters aiosmtpd's parser would return, at a fraction of its cost. Anything
# else (quoted local parts, address literals, comments, non-ASCII) goes to aiosmtpd.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH: Final = re.compile(
    rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(?:[ \t]+([^ \t(].*))?\Z",
    re.DOTALL,
)

# Replies that may wait for the rest of a pipelined group (RFC 2920 3.2): the session's own task
# is still answering commands that were already read, and what it says goes out in one write as
# soon as it waits for anything. Every other reply is written at once, together with what waited:
# errors, and above all the replies after which aiosmtpd closes the connection (221, 421, 502)
# or starts TLS (220), which must not be left behind.
_MAY_WAIT: Final = (b"250 ", b"354 ")
_MAX_WAITING: Final = 64 * 1024


async def receive_data(reader: asyncio.StreamReader, receiver: DataReceiver) -> None:
    """Feed `receiver` from `reader` up to the end of the data, never past it.

    asyncio cannot put bytes back, and a pipelining client may send its next command right after
    the final dot, so each read must stop at the end marker:
    - while what was read so far could begin the marker (at the start, where the data is deemed
      to follow a CRLF, and after such a read), take exactly as many octets as could complete it;
    - otherwise take everything up to the next marker (`readuntil`), which then cannot have begun
      in bytes already taken. When the reader holds more than its limit without a marker,
      `LimitOverrunError.consumed` is all but its last few octets, which stay in the reader so
      that a marker across that point is found by the next `readuntil`.
    A client that sends many short lines that could begin the marker ("\\r\\n" again and again)
    is read a few octets at a time, as aiosmtpd read every line; only its own session pays.
    """
    bulk = False  # a readuntil() since the last short read: the next one cannot miss a marker
    while not receiver.done:
        if receiver.pending and not bulk:
            chunk = await reader.readexactly(receiver.needed)
        else:
            try:
                chunk = await reader.readuntil(END)
            except asyncio.LimitOverrunError as exc:
                chunk = await reader.read(exc.consumed)
                bulk = True
        taken = receiver.feed(chunk)
        assert taken == len(chunk), "read past the end of the data"


# Bytes read per recv(). As a plain Protocol, asyncio recv()s into a fresh 256 KiB bytes object
# for every read and shrinks it to what came, several times per message (~20 us each here); as a
# BufferedProtocol it reads into this session's own buffer, and only what came is copied out.
RECV_BUFFER: Final = 16 * 1024


class LimitedSMTP(SMTP, asyncio.BufferedProtocol):
    """aiosmtpd's SMTP plus a connection slot per session and a total session time limit.

    Also mends a few aiosmtpd habits at the edge: replies get enhanced codes and lose control
    characters (`push`), an idle client hears why it is dropped, and bytes arriving during DATA
    count as activity.
    """

    line_length_limit = READ_LIMIT  # aiosmtpd's name for the StreamReader limit

    def __init__(
        self,
        handler: SmtpPolicy,
        *,
        limiter: ConnectionLimiter,
        session_timeout: float,
        stress_idle_timeout: float | None = None,
        admitted_at: float | None = None,
        **kwargs: Any,
    ) -> None:
        # aiosmtpd keeps these on the class and grows MAIL's entry on every EHLO, so one session's
        # EHLOs (or another session's arrival, which clears it) changed every session's limit.
        self.command_size_limits = defaultdict(lambda: SMTP.command_size_limit)
        # The overload gate's slot for the transaction under way (MAIL FROM to its reply).
        self._token: Token | None = None
        # When the overload gate admitted this session with a reservation for its first
        # transaction (OverloadGate.admit); None once given back, or when there is none.
        self._admitted_at = admitted_at
        super().__init__(handler, **kwargs)
        self._policy = handler
        self._receiving_data = False
        self._limiter = limiter
        self._session_timeout = session_timeout
        self._slot_ip: str | None = None
        self._refused = False
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting = bytearray()  # replies not yet written (see _MAY_WAIT)
        self._flush_scheduled = False
        self._active_at = 0.0  # loop time of the client's last command or DATA bytes
        self._idle_limit = 0.0
        self._stress_idle = stress_idle_timeout  # see _idle_check
        self._idle_timer_at: float | None = None  # when the armed idle timer fires
        self._recv_view = memoryview(bytearray(RECV_BUFFER))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None and self._slot_ip is None and not self._refused
        if first:
            peer = transport.get_extra_info("peername")
            ip = str(peer[0]) if peer else "unknown"
            refusal = self._limiter.admit(ip)
            if refusal is not None:
                self._refused = True
                log.warning("event=connection_refused reason=%s client=%s", refusal.value, ip)
                self._arrived()
                if self._policy.metrics is not None:
                    self._policy.metrics.refused(self._policy.protocol, refusal.value)
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(_REFUSALS[refusal].encode() + b"\r\n")
                transport.close()
                return
            self._slot_ip = ip
            self._deadline = self.loop.call_later(self._session_timeout, self._expire)
        elif self.session is not None:
            # After STARTTLS aiosmtpd starts a new session (RFC 3207 4.2): the old one's login,
            # if it had one, no longer counts among its account's sessions.
            self._policy.ended(self.session)
        super().connection_made(transport)

    # -- reading (asyncio.BufferedProtocol) -----------------------------------------------------
    def get_buffer(self, sizehint: int) -> memoryview:
        return self._recv_view

    def buffer_updated(self, nbytes: int) -> None:
        # Copied out at once: the next read reuses the buffer, and StreamReader keeps what it gets.
        self.data_received(bytes(self._recv_view[:nbytes]))

    # -- replies -------------------------------------------------------------------------------
    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            text = R.for_wire(self._policy.with_notice(status))
            line = text.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
        else:
            line = status
        waiting = self._waiting
        waiting += line
        waiting += b"\r\n"
        if (line[:4] in _MAY_WAIT or line[3:4] == b"-") and len(waiting) < _MAX_WAITING:
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self.loop.call_soon(self._flush)
            return
        self._flush()
        await self._writer.drain()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._waiting:
            return
        data = bytes(self._waiting)
        self._waiting.clear()
        if not self._writer.transport.is_closing():
            self._writer.write(data)

    # -- commands ------------------------------------------------------------------------------
    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        self.command_size_limits.clear()
        await super().smtp_EHLO(hostname)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd runs the email package's header parser and defines a typing.Protocol class on
        # every call: a quarter of a millisecond per MAIL or RCPT.
        match = _PLAIN_PATH.match(arg) if arg else None
        if match is None:
            address: str | None
            params: str | None
            try:
                address, params = super()._getaddr(arg)
            except Exception:
                # aiosmtpd's parser raises IndexError, AttributeError... on some malformed
                # paths ("<@"): the client's mistake, so a 553, not a 451 and a traceback.
                return None, None
            return address, params
        address = match[1]
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, match[2] or ""

    # -- the transaction's slot in the overload gate ------------------------------------------
    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        self._arrived()
        gate = self._policy.gate
        if gate is not None and self._token is None:
            self._token = await gate.acquire(self._policy.protocol, _SLOT_WAIT)
            if self._token is None:
                # Refused before anything of the message was read: nothing can be half-accepted.
                await self.push(OVERLOADED_MAIL)
                return
        await super().smtp_MAIL(arg)
        if self.envelope is None or self.envelope.mail_from is None:
            self._forget_token()  # MAIL itself was refused: no transaction holds the slot

    def _arrived(self) -> None:
        admitted_at, self._admitted_at = self._admitted_at, None
        if admitted_at is not None and self._policy.gate is not None:
            self._policy.gate.arrived(admitted_at)

    def _set_post_data_state(self) -> None:
        # Every end of a transaction passes here: after DATA, RSET, HELO/EHLO, STARTTLS.
        self._forget_token()
        super()._set_post_data_state()  # type: ignore[no-untyped-call]

    def _forget_token(self) -> None:
        token, self._token = self._token, None
        if token is not None and self._policy.gate is not None:
            self._policy.gate.forget(token)

    def _finish_token(self, status: str) -> None:
        token, self._token = self._token, None
        if token is not None and self._policy.gate is not None:
            # A 451 from the store is a loss signal. The sample is the whole transaction, MAIL
            # to 250, round trips included (Gradient2's own measure): when the loop is busy every
            # round trip waits, and that is the queueing the limit must see. (The node's own time
            # at DATA alone missed it: the limit sat at its maximum with hundreds of sessions in
            # flight; benchmarks/overload.py.)
            self._policy.gate.release(token, ok=not status.startswith("451"))

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        # aiosmtpd's checks, in its order; then the data through DataReceiver.
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push(R.NEED_RCPT)
            return
        if arg:
            await self.push(R.DATA_SYNTAX)
            return
        await self.push(R.START_DATA)
        # Past SPOOL_THRESHOLD the message goes to the node's spool as it arrives. The file is
        # closed (and, having no name, gone) when this DATA ends, however it ends.
        spooled: list[SpoolFile] = []
        receiver = DataReceiver(
            max_size=self.data_size_limit,
            max_line=TEXT_LINE_LIMIT,
            spool=self._spool_opener(spooled),
            spool_threshold=SPOOL_THRESHOLD,
        )
        self._receiving_data = True
        try:
            await receive_data(self._reader, receiver)
        except asyncio.IncompleteReadError:
            # The client closed mid-data; aiosmtpd's own reader would have been cancelled.
            self._writer.close()
            raise asyncio.CancelledError from None
        finally:
            self._receiving_data = False
            if not receiver.done:
                _close_all(spooled)
        try:
            data = receiver.result()
            if data.refusal is not None:
                self._set_post_data_state()
                await self.push(data.refusal)
                return
            assert self.session is not None
            self.envelope.content = self.envelope.original_content = data.content
            self.envelope.spooled = spooled[0] if data.spooled else None  # type: ignore[attr-defined]
            try:
                status = await self._policy.handle_DATA(self, self.session, self.envelope)
            except BaseException:
                self._forget_token()
                raise
            self._finish_token(status)
            self._set_post_data_state()
            await self.push(status)
        finally:
            _close_all(spooled)
            if self.transport is not None:
                self._reset_timeout()

    def _spool_opener(self, opened: list[SpoolFile]) -> Callable[[], SpoolFile] | None:
        spool = self._policy.spool
        if spool is None:
            return None

        def open_file() -> SpoolFile:
            file = spool.open()
            opened.append(file)
            return file

        return open_file

    async def challenge_auth(
        self,
        challenge: str | bytes,
        encode_to_b64: bool = True,
        log_client_response: bool = False,
    ) -> Any:
        """aiosmtpd's, with the answer's length bounded as before READ_LIMIT grew.

        A longer answer raises ValueError, as StreamReader.readline does past its limit."""
        raw = challenge.encode() if isinstance(challenge, str) else challenge
        await self.push(b"334 " + (base64.b64encode(raw) if encode_to_b64 else raw))
        line = await self._reader.readline()
        if len(line) > AUTH_LINE_LIMIT:
            raise ValueError("authentication answer is too long")
        blob = line.strip()
        if blob == b"*":  # RFC 4954 4: the client cancels
            await self.push(R.AUTH_CANCELLED)
            return MISSING
        try:
            return base64.b64decode(blob, validate=True)
        except binascii.Error:
            await self.push(R.AUTH_NOT_BASE64)
            return MISSING

    # -- time limits ---------------------------------------------------------------------------
    def _reset_timeout(self, duration: float | None = None) -> None:
        # aiosmtpd cancels and re-creates a timer on every command. Instead note the time and
        # keep one timer, which on firing re-arms itself for whatever is left of the period.
        now = self.loop.time()
        self._active_at = now
        self._idle_limit = duration or self._timeout_duration
        due = now + self._idle_limit
        if self._stress_idle is not None:
            due = min(due, now + self._stress_idle)  # see _idle_check
        if self._idle_timer_at is None or self._idle_timer_at > due:
            if self._timeout_handle is not None:
                self._timeout_handle.cancel()
            self._timeout_handle = self.loop.call_at(due, self._idle_check)
            self._idle_timer_at = due

    def _idle_check(self) -> None:
        """While the listeners' connection slots are mostly taken, an idle session gets the
        short stress timeout instead of the usual one (Postfix's stress mode), so that idle or
        slow clients cannot keep a full node from taking new mail. Idle sessions go until the
        node is below the stress share again, not all of them. The timer looks again at least
        every stress period: a node that fills up must not wait out the whole idle timeout of
        the sessions it already has."""
        self._idle_timer_at = None
        now = self.loop.time()
        limit, stress, stressed = self._idle_limit, self._stress_idle, False
        if stress is not None and stress < limit and self._limiter.stressed:
            limit, stressed = stress, True
        due = self._active_at + limit
        if due > now:
            if stress is not None:
                due = min(due, now + stress)
            self._timeout_handle = self.loop.call_at(due, self._idle_check)
            self._idle_timer_at = due
        else:
            if stressed:
                log.info("event=stress_idle_timeout client=%s", self._slot_ip)
            self._timeout_cb()

    def data_received(self, data: bytes) -> None:
        # aiosmtpd restarts the idle timer only on commands, so a large message on a slow link
        # would be cut off after one idle period; the session deadline still bounds a trickle.
        if self._receiving_data:
            self._active_at = self.loop.time()
        super().data_received(data)

    def _timeout_cb(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            log.info("event=idle_timeout client=%s", self._slot_ip)
            assert isinstance(transport, asyncio.WriteTransport)
            self._flush()
            transport.write(R.IDLE_TIMEOUT.encode() + b"\r\n")
            transport.close()

    def _expire(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            assert isinstance(transport, asyncio.WriteTransport)
            self._flush()
            transport.write(R.SESSION_TOO_LONG.encode() + b"\r\n")
            transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        self._forget_token()
        self._arrived()
        if self.session is not None:
            self._policy.ended(self.session)
        if self._slot_ip is not None:
            self._limiter.release(self._slot_ip)
            self._slot_ip = None
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return super().eof_received()


def _close_all(files: list[SpoolFile]) -> None:
    for file in files:
        file.close()


# Seconds an open session may wait at MAIL for a slot in the overload gate before its 451.
_SLOT_WAIT: Final = 1.0
# Connections refused per accept() call at most: asyncio calls it again on the next loop turn.
_SHED_BATCH: Final = 64


class _SheddingSocket(socket.socket):
    """A listening socket whose accept() answers 421 itself while the node is overloaded.

    At 4x load most connections are refused; through asyncio each one cost a transport, a
    protocol, several callbacks and two epoll changes, and the refusals alone took over half the
    node's CPU (benchmarks/overload.py). Here a refused connection costs accept, one write and
    close, and never reaches the event loop's machinery."""

    gate: OverloadGate
    policy: SmtpPolicy

    def accept(self) -> tuple[socket.socket, Any]:
        for _ in range(_SHED_BATCH):
            fd, address = self._accept()  # type: ignore[attr-defined]
            if self.gate.admit():
                return socket.socket(self.family, self.type, self.proto, fileno=fd), address
            try:
                os.write(fd, _BUSY_LINE)  # a fresh socket's empty buffer takes it at once
            except OSError:
                pass
            finally:
                os.close(fd)
            self.gate.shed(self.policy.protocol)
        raise BlockingIOError  # asyncio comes back on its next turn; others get to run first


def _shedding_socket(host: str, port: int, policy: SmtpPolicy, gate: OverloadGate) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = _SheddingSocket(family, kind, proto)
    sock.gate, sock.policy = gate, policy
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


# A burst of connections waits in the kernel to be accepted and told 421, rather than overflow a
# short backlog and wait for the client's SYN retry with no answer at all.
_BACKLOG: Final = 1024


class _Busy(asyncio.Protocol):
    """A connection refused at once because the node is overloaded: one line, then close."""

    def __init__(self, policy: SmtpPolicy) -> None:
        self._policy = policy

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._policy.metrics is not None:
            self._policy.metrics.refused(self._policy.protocol, REASON_OVERLOAD)
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_BUSY_LINE)
        transport.close()


_BUSY_LINE: Final = OVERLOADED_CONNECT.encode() + b"\r\n"


async def start_smtp(
    *,
    policy: SmtpPolicy,
    host: str,
    port: int,
    limiter: ConnectionLimiter,
    tls: ssl.SSLContext,
    hostname: str,
    max_message_size: int,
    idle_timeout: float,
    session_timeout: float,
    stress_idle_timeout: float | None = None,
) -> asyncio.Server:
    mode = policy.mode
    implicit_tls = mode is Mode.SUBMISSIONS

    def factory() -> asyncio.Protocol:
        gate = policy.gate
        admitted_at = None
        if gate is not None:
            if not implicit_tls:
                admitted_at = gate.clock()  # _SheddingSocket.accept admitted it just now
            elif not limiter.draining:
                # On the TLS port the refusal comes inside TLS (the others shed in accept(),
                # see _SheddingSocket), before aiosmtpd builds a session.
                if not gate.admit():
                    return _Busy(policy)
                admitted_at = gate.clock()
        return LimitedSMTP(
            policy,
            limiter=limiter,
            session_timeout=session_timeout,
            stress_idle_timeout=stress_idle_timeout,
            admitted_at=admitted_at,
            data_size_limit=max_message_size,
            enable_SMTPUTF8=True,
            hostname=hostname,
            ident="mailfort ESMTP",
            tls_context=None if implicit_tls else tls,
            timeout=idle_timeout,
            auth_required=mode is not Mode.MX,
            # aiosmtpd only knows about STARTTLS; on the implicit-TLS port every byte is encrypted.
            auth_require_tls=not implicit_tls,
            command_call_limit=CALL_LIMITS,
        )

    loop = asyncio.get_running_loop()
    if policy.gate is not None and not implicit_tls:
        # On a TLS port the refusal must come inside TLS: there the factory answers it.
        sock = _shedding_socket(host, port, policy, policy.gate)
        return await loop.create_server(factory, sock=sock, backlog=_BACKLOG)
    return await loop.create_server(
        factory,
        host,
        port,
        ssl=tls if implicit_tls else None,
        reuse_address=True,
        backlog=_BACKLOG,
    )
