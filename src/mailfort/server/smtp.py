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
import re
import ssl
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, AnyStr, Final

import aiosmtpd.smtp
from aiosmtpd.smtp import MISSING, SMTP, syntax

from mailfort.protocol.smtp import replies as R
from mailfort.protocol.smtp.data import END, TEXT_LINE_LIMIT, DataReceiver
from mailfort.server.admission import ConnectionLimiter
from mailfort.server.listener import Admitted, Listener, RefusalBudget, RefusalLines
from mailfort.server.overload import REASON_LIMIT
from mailfort.server.smtp_policy import OVERLOADED_CONNECT, OVERLOADED_MAIL, Mode, SmtpPolicy
from mailfort.server.spool import SPOOL_THRESHOLD, SpoolFile

log = logging.getLogger("mailfort.smtp")


_CLASS_NAMES: dict[type, tuple[str, ...]] = {}
# The only names aiosmtpd looks for in what dir() gives it.
_HOOK_PREFIXES: Final = ("smtp_", "handle_", "auth_")


def _names(obj: object) -> list[str]:
    """`dir()` as aiosmtpd uses it: only to scan for `smtp_`, `handle_` and `auth_` names.

    aiosmtpd's `SMTP.__init__` scans dir(self) and dir(handler) for every new connection, and
    `inspect.getmembers` read every attribute to find the `auth_*` ones. At 4x load in
    benchmarks/overload.py that was a fifth of the node's CPU, for connections that then sent
    one message; and filtering those names by prefix, four times per connection, was still two
    thirds of a session's construction (41 us). Hooks are methods of the class (the session's
    and the policy's), never attributes set on an instance, so the names are worked out once
    per class, already filtered; unsorted (no one needs the order).
    """
    cls = type(obj)
    names = _CLASS_NAMES.get(cls)
    if names is None:
        names = _CLASS_NAMES[cls] = tuple(n for n in dir(cls) if n.startswith(_HOOK_PREFIXES))
    return list(names)


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

REFUSALS: Final = RefusalLines(
    busy=OVERLOADED_CONNECT.encode() + b"\r\n",
    client=R.TOO_MANY_CONNECTIONS_IP.encode() + b"\r\n",
    draining=R.SHUTTING_DOWN.encode() + b"\r\n",
)

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
        admitted: Admitted,
        limiter: ConnectionLimiter,
        session_timeout: float,
        stress_idle_timeout: float | None = None,
        min_data_rate: float = 0.0,
        **kwargs: Any,
    ) -> None:
        # aiosmtpd keeps these on the class and grows MAIL's entry on every EHLO, so one session's
        # EHLOs (or another session's arrival, which clears it) changed every session's limit.
        self.command_size_limits = defaultdict(lambda: SMTP.command_size_limit)
        # The connection slot and overload-gate reservation this session was admitted with.
        self._admitted = admitted
        self._in_transaction = False  # counted among the gate's sessions at work (`begin`)
        super().__init__(handler, **kwargs)
        self._policy = handler
        self._receiving_data = False
        self._data_started = 0.0  # loop time DATA's 354 went out
        self._data_bytes = 0  # octets of DATA received so far
        self._min_data_rate = min_data_rate
        self._limiter = limiter
        self._session_timeout = session_timeout
        self._slot_ip = admitted.ip
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting = bytearray()  # replies not yet written (see _MAY_WAIT)
        self._flush_scheduled = False
        self._active_at = 0.0  # loop time of the client's last command or DATA bytes
        self._idle_limit = 0.0
        self._stress_idle = stress_idle_timeout  # see _idle_check
        self._idle_timer_at: float | None = None  # when the armed idle timer fires
        self._recv_view = memoryview(bytearray(RECV_BUFFER))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._deadline is None:  # the first call; STARTTLS makes a second one
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

    def _getparams(self, params: Sequence[str]) -> dict[str, str | bool] | None:
        # RFC 1870 4: size-value = 1*20DIGIT. aiosmtpd's isdigit() lets "²" through to an int()
        # that raises (a 451 and a traceback for a client's typo) and reads "٣" as 3.
        found: dict[str, str | bool] | None = super()._getparams(params)
        size = None if found is None else found.get("SIZE")
        if isinstance(size, str) and not (size.isascii() and size.isdigit() and len(size) <= 20):
            return None  # the syntax error aiosmtpd answers for a malformed parameter
        return found

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        # RFC 3207 4: no TLS inside TLS. aiosmtpd would answer 220 and start a second handshake
        # inside the first; on the implicit-TLS port it says 454 "not available".
        transport = self.transport
        if transport is not None and transport.get_extra_info("ssl_object") is not None:
            await self.push(R.TLS_ALREADY_ACTIVE)
            return
        await super().smtp_STARTTLS(arg)

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

    # -- the transaction ------------------------------------------------------------------------
    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        # The transaction counts among the node's sessions at work (the gate's lag-driven
        # `sessions`) from here to its end; its connect reservation, which counted there until
        # now, is given back. The store slot is taken only when the store work starts, after
        # DATA has arrived: time spent waiting for the client (a slow upload, a client that went
        # away) must neither hold a slot nor count as the node's latency.
        self._admitted.arrived()
        gate = self._policy.gate
        if gate is not None and not self._in_transaction:
            # Nothing of the message was sent yet: refusing now saves the client the upload.
            reason = REASON_LIMIT if gate.full() else gate.begin(self._admitted.network)
            if reason is not None:
                gate.metrics.refused(self._policy.protocol, reason)
                await self.push(OVERLOADED_MAIL)
                return
            self._in_transaction = True
        await super().smtp_MAIL(arg)
        if self.envelope is None or self.envelope.mail_from is None:
            self._end_transaction()  # MAIL itself was refused: no transaction began

    def _end_transaction(self) -> None:
        if self._in_transaction:
            self._in_transaction = False
            if self._policy.gate is not None:
                self._policy.gate.end(self._admitted.network)

    def _set_post_data_state(self) -> None:
        # Every end of a transaction passes here: after DATA, RSET, HELO/EHLO, STARTTLS.
        self._end_transaction()
        super()._set_post_data_state()  # type: ignore[no-untyped-call]

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
        self._data_started = self.loop.time()
        self._data_bytes = 0
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
            status = await self._store_work(self.session, self.envelope)
            self._set_post_data_state()
            await self.push(status)
        finally:
            _close_all(spooled)
            if self.transport is not None:
                self._reset_timeout()

    async def _store_work(self, session: Any, envelope: Any) -> str:
        """The policy's DATA work (building the request, the durable commit) under a slot of
        the overload gate, taken now that the data has arrived.

        The sample is this work alone: the node's own latency, with the round trips and the
        upload left out. A session that finds no slot within `_SLOT_WAIT` gets a 451 and keeps
        nothing: the sender retries, as it would after a 4xx at MAIL."""
        gate = self._policy.gate
        if gate is None:
            return await self._policy.handle_DATA(self, session, envelope)
        token = await gate.acquire(self._policy.protocol, _SLOT_WAIT, self._admitted.network)
        if token is None:
            return OVERLOADED_MAIL
        try:
            status = await self._policy.handle_DATA(self, session, envelope)
        except BaseException:
            gate.forget(token)
            raise
        # A 451 from the store is a loss signal: it backs the limit off.
        gate.release(token, ok=not status.startswith("451"))
        return status

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
        slow = False
        if self._receiving_data and self._min_data_rate > 0:
            # Postfix's smtpd_min_data_rate: DATA may take the idle time plus one second per
            # `min_data_rate` octets received, so a client that trickles its message cannot
            # hold a connection (and its share of them) for the whole session time.
            allowed = self._data_started + limit + self._data_bytes / self._min_data_rate
            if allowed < due:
                due, slow = allowed, True
        if due > now:
            if stress is not None:
                due = min(due, now + stress)
            self._timeout_handle = self.loop.call_at(due, self._idle_check)
            self._idle_timer_at = due
        else:
            if slow:
                log.info("event=data_too_slow client=%s octets=%d", self._slot_ip, self._data_bytes)
                self._close_with(R.DATA_TOO_SLOW)
                return
            if stressed:
                log.info("event=stress_idle_timeout client=%s", self._slot_ip)
            self._timeout_cb()

    def data_received(self, data: bytes) -> None:
        # aiosmtpd restarts the idle timer only on commands, so a large message on a slow link
        # would be cut off after one idle period; the session deadline still bounds a trickle.
        if self._receiving_data:
            self._active_at = self.loop.time()
            self._data_bytes += len(data)
        super().data_received(data)

    def _timeout_cb(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            log.info("event=idle_timeout client=%s", self._slot_ip)
        self._close_with(R.IDLE_TIMEOUT)

    def _expire(self) -> None:
        self._close_with(R.SESSION_TOO_LONG)

    def _close_with(self, reply: str) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            assert isinstance(transport, asyncio.WriteTransport)
            self._flush()
            transport.write(reply.encode() + b"\r\n")
            transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        self._end_transaction()
        self._admitted.release()
        if self.session is not None:
            self._policy.ended(self.session)
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(error)


def _close_all(files: list[SpoolFile]) -> None:
    for file in files:
        file.close()


# Seconds a session whose data has arrived may wait for a slot in the overload gate before its 451.
_SLOT_WAIT: Final = 1.0


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
    min_data_rate: float = 0.0,
    budget: RefusalBudget | None = None,
) -> Listener:
    mode = policy.mode
    implicit_tls = mode is Mode.SUBMISSIONS

    def factory(admitted: Admitted) -> asyncio.BaseProtocol:
        return LimitedSMTP(
            policy,
            admitted=admitted,
            limiter=limiter,
            session_timeout=session_timeout,
            stress_idle_timeout=stress_idle_timeout,
            min_data_rate=min_data_rate,
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

    listener = Listener(
        host,
        port,
        protocol=policy.protocol,
        factory=factory,
        limiter=limiter,
        lines=REFUSALS,
        gate=policy.gate,
        metrics=policy.metrics,
        budget=budget,
        tls=tls if implicit_tls else None,
    )
    listener.start()
    return listener
