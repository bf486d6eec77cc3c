"""SMTP listeners: asyncio glue around the sans-IO session core (`protocol/smtp/session.py`).

Per connection, one `SmtpConnection` (an asyncio BufferedProtocol) and one task that runs the
core's events: the policy's decisions (`server/smtp_policy.py`), the overload gate's slots, the
STARTTLS handshake. What is left here is what needs a transport or a clock:
- reading: the socket is read into one buffer per connection and fed to the core; reading
  pauses while the core holds more than `READ_LIMIT` octets it has not worked through;
- writing: the replies the core produced go out when it needs more input, so the replies to
  pipelined commands leave in one write (RFC 2920 3.2); a client that does not read stalls
  its own session (the transport's flow control), never the node;
- time: the idle timeout (restarted by each command and by bytes arriving during DATA or a
  BDAT transaction), its short stress variant while the node's connection slots are mostly
  taken, the minimum data rate during DATA and from a transaction's first BDAT to its last
  chunk (421 4.4.2), and the total session time;
- admission: the connection's slot and overload-gate reservation (`Admitted`), and the gate's
  count of sessions at work from MAIL to the end of the transaction;
- the spool: DATA or BDAT chunks past `SPOOL_THRESHOLD` are written to a spool file as they
  arrive; the message ends (DATA's final dot, BDAT LAST) into the same store work and gate slot.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Final

from mailfort.mail.directory import Resolution
from mailfort.protocol.smtp import replies as R
from mailfort.protocol.smtp import session as core
from mailfort.protocol.smtp.data import DataSink
from mailfort.protocol.smtp.envelope import Envelope
from mailfort.server.admission import ConnectionLimiter
from mailfort.server.listener import Admitted, Listener, RefusalBudget, RefusalLines
from mailfort.server.overload import REASON_LIMIT
from mailfort.server.smtp_policy import (
    OVERLOADED_CONNECT,
    OVERLOADED_MAIL,
    Client,
    LoggedIn,
    Mode,
    SmtpPolicy,
)
from mailfort.server.spool import SPOOL_THRESHOLD, SpoolFile

log = logging.getLogger("mailfort.smtp")

REFUSALS: Final = RefusalLines(
    busy=OVERLOADED_CONNECT.encode() + b"\r\n",
    client=R.TOO_MANY_CONNECTIONS_IP.encode() + b"\r\n",
    draining=R.SHUTTING_DOWN.encode() + b"\r\n",
)

# Octets received and not yet worked through by the core past which reading pauses (a client
# that pipelines faster than its commands are answered waits in its own socket buffer).
READ_LIMIT: Final = 128 * 1024
# Replies held for one write: past this many octets they leave at once, and the session waits
# for the client to read them.
MAX_WAITING: Final = 64 * 1024
# Bytes read per recv(): as a BufferedProtocol the connection reads into its own buffer, and
# only what came is copied out (a plain Protocol recv()s into a fresh 256 KiB object each time).
RECV_BUFFER: Final = 16 * 1024
# Seconds a session whose data has arrived may wait for a slot in the overload gate before its 451.
_SLOT_WAIT: Final = 1.0


class SmtpConnection(asyncio.BufferedProtocol):
    """One SMTP connection: its transport, timers and admission, around one core session."""

    def __init__(
        self,
        policy: SmtpPolicy,
        config: core.SessionConfig,
        *,
        admitted: Admitted,
        limiter: ConnectionLimiter,
        tls_context: ssl.SSLContext | None,
        idle_timeout: float,
        session_timeout: float,
        stress_idle_timeout: float | None = None,
        min_data_rate: float = 0.0,
    ) -> None:
        self._policy = policy
        self._admitted = admitted
        self._limiter = limiter
        self._tls_context = tls_context
        self._idle_timeout = idle_timeout
        self._session_timeout = session_timeout
        self._stress_idle = stress_idle_timeout  # see _idle_check
        self._min_data_rate = min_data_rate
        self._spooled: list[SpoolFile] = []  # spool files of the message in progress
        self.session: core.ServerSession[Resolution] = core.ServerSession(
            config,
            spool=self._open_spool if policy.spool is not None else None,
            spool_threshold=SPOOL_THRESHOLD,
        )
        self.client = Client(admitted.ip, self.session)
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._recv_view = memoryview(bytearray(RECV_BUFFER))
        self._waiter: asyncio.Future[None] | None = None  # the task waits for input
        self._drained: asyncio.Future[None] | None = None  # the task waits for the client to read
        self._reading_paused = False
        self._writing_paused = False
        self._eof = False
        self._finished = False
        self._in_transaction = False  # counted among the gate's sessions at work (`begin`)
        self._commands = 0  # the core's command count when the idle timer last restarted
        self._receiving_data = False
        self._data_started = 0.0  # loop time DATA's 354 (or the first BDAT) went out
        self._data_bytes = 0  # octets of the data received so far
        self._deadline: asyncio.TimerHandle | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self._idle_timer_at: float | None = None  # when the armed idle timer fires
        self._active_at = 0.0  # loop time of the client's last command or DATA bytes

    # -- the transport -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._deadline = self._loop.call_later(self._session_timeout, self._expire)
        self._touch()
        transport.write(self.session.greeting())
        self._task = self._loop.create_task(self._run())

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._recv_view

    def buffer_updated(self, nbytes: int) -> None:
        session = self.session
        # Copied out at once: the next read reuses the buffer.
        session.receive_data(bytes(self._recv_view[:nbytes]))
        if self._receiving_data:
            # Bytes arriving during DATA (or a BDAT transaction) are activity: a large message
            # on a slow link is not idle; the session deadline and the minimum data rate still
            # bound a trickle.
            self._active_at = self._loop.time()
            self._data_bytes += nbytes
        if session.buffered > READ_LIMIT and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake()
        return None  # the transport closes; connection_lost ends the session

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def _finish(self) -> None:
        """The connection is gone (or going): give back everything it held, once."""
        if self._finished:
            return
        self._finished = True
        self.session.close()
        self._end_transaction()
        self._admitted.release()
        self._policy.ended(self.client)
        for handle in (self._deadline, self._idle_handle):
            if handle is not None:
                handle.cancel()
        _close_all(self._spooled)
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        for future in (self._waiter, self._drained):
            if future is not None and not future.done():
                future.cancel()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _flush(self) -> None:
        transport = self.transport
        if self.session.has_output and transport is not None and not transport.is_closing():
            transport.write(self.session.take_output())

    async def _drain(self) -> None:
        if self._writing_paused and not self._finished:
            self._drained = self._loop.create_future()
            await self._drained

    def _close_with(self, reply: str) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self._flush()
            transport.write(reply.encode() + b"\r\n")
            transport.close()

    # -- the session ---------------------------------------------------------------------------
    async def _run(self) -> None:
        session = self.session
        try:
            while not self._finished:
                event = session.next_event()
                if self._in_transaction and not session.in_transaction:
                    self._end_transaction()  # RSET, HELO/EHLO, STARTTLS or a refused MAIL
                if session.commands != self._commands:
                    self._commands = session.commands
                    self._touch()
                if isinstance(event, core.NeedData):
                    await self._need_data()
                elif isinstance(event, core.Close):
                    self._flush()
                    if self.transport is not None:
                        self.transport.close()
                    return
                else:
                    try:
                        await self._handle(event)
                    except Exception as exc:  # never a Python error on the wire
                        log.exception("event=smtp_exception error=%r", exc)
                        if session.pending is not None:
                            session.refuse(R.INTERNAL_ERROR)
                    if session.pending_output > MAX_WAITING:
                        self._flush()
                        await self._drain()
        except Exception as exc:
            # Our own bug (a core misused): this connection ends, the node goes on.
            log.exception("event=smtp_session_failed error=%r", exc)
            self._finish()
        finally:
            transport = self.transport
            over = self._finished or self.session.closed
            if over and transport is not None and not transport.is_closing():
                transport.close()

    async def _need_data(self) -> None:
        session = self.session
        receiving = session.receiving_data
        if receiving and not self._receiving_data:
            self._data_started = self._loop.time()
            self._data_bytes = 0
        elif not receiving and self._spooled:
            _close_all(self._spooled)  # a refused message's spool file
        self._receiving_data = receiving
        self._flush()
        await self._drain()
        if self._eof:
            self._finish()
            return
        if self._reading_paused and session.buffered <= READ_LIMIT and self.transport:
            self._reading_paused = False
            self.transport.resume_reading()
        self._waiter = self._loop.create_future()
        await self._waiter

    async def _handle(self, event: core.Event) -> None:
        session = self.session
        policy = self._policy
        client = self.client
        if isinstance(event, core.Mail):
            _close_all(self._spooled)  # a failed transaction's, if its end went unseen
            if self._refused_by_gate():
                session.refuse(OVERLOADED_MAIL)
                return
            envelope = await policy.mail(client, event.address, event.params)
            if isinstance(envelope, str):
                session.refuse(envelope)
            else:
                session.mail_accepted(envelope)
        elif isinstance(event, core.Rcpt):
            recipient = await policy.rcpt(client, event.envelope, event.address)
            if isinstance(recipient, str):
                session.refuse(recipient)
            else:
                session.rcpt_accepted(recipient)
        elif isinstance(event, core.Message):
            self._receiving_data = False
            await self._message(event)
        elif isinstance(event, core.AuthStart):
            refusal = policy.auth_refusal(client)
            if refusal is not None:
                session.refuse(refusal)
            else:
                session.auth_proceed()
        elif isinstance(event, core.Login):
            answer = await policy.login(client, event)
            if isinstance(answer, LoggedIn):
                session.login_succeeded(answer.user)
            else:
                session.refuse(answer)
        elif isinstance(event, core.StartTls):
            await self._start_tls()

    def _refused_by_gate(self) -> bool:
        """MAIL begins a transaction: it counts among the node's sessions at work (the gate's
        lag-driven `sessions`) from here to its end, and its connect reservation, which counted
        there until now, is given back. The store slot is taken only when the store work starts,
        after DATA has arrived: time spent waiting for the client (a slow upload, a client that
        went away) must neither hold a slot nor count as the node's latency."""
        self._admitted.arrived()
        gate = self._policy.gate
        if gate is None or self._in_transaction:
            return False
        # Nothing of the message was sent yet: refusing now saves the client the upload.
        reason = REASON_LIMIT if gate.full() else gate.begin(self._admitted.network)
        if reason is not None:
            gate.metrics.refused(self._policy.protocol, reason)
            return True
        self._in_transaction = True
        return False

    def _end_transaction(self) -> None:
        if self._in_transaction:
            self._in_transaction = False
            if self._policy.gate is not None:
                self._policy.gate.end(self._admitted.network)

    async def _message(self, event: core.Message[Resolution]) -> None:
        data = event.data
        # The message's own file (the sink the core wrote it to), never an older one.
        spooled = data.spooled if isinstance(data.spooled, SpoolFile) else None
        try:
            reply = await self._store_work(event.envelope, data.content, spooled)
        finally:
            _close_all(self._spooled)
        self.session.data_answer(reply)
        self._touch()

    async def _store_work(
        self, envelope: Envelope[Resolution], content: bytes, spooled: SpoolFile | None
    ) -> str:
        """The policy's DATA work (building the request, the durable commit) under a slot of
        the overload gate, taken now that the data has arrived and has been checked (SPF,
        DKIM, DMARC: DNS waits for other domains are not the node's latency).

        The sample is this work alone: the node's own latency, with the round trips and the
        upload left out. A session that finds no slot within `_SLOT_WAIT` gets a 451 and keeps
        nothing: the sender retries, as it would after a 4xx at MAIL."""
        policy = self._policy
        client = self.client
        screened = await policy.screen(client, envelope, content, spooled)
        if isinstance(screened, str):
            return screened  # refused or deferred by the checks of incoming mail
        gate = policy.gate
        if gate is None:
            return await policy.data(client, envelope, content, spooled, self._abort, screened)
        token = await gate.acquire(policy.protocol, _SLOT_WAIT, self._admitted.network)
        if token is None:
            return OVERLOADED_MAIL
        try:
            status = await policy.data(client, envelope, content, spooled, self._abort, screened)
        except BaseException:
            gate.forget(token)
            raise
        # A 451 from the store is a loss signal: it backs the limit off.
        gate.release(token, ok=not status.startswith("451"))
        return status

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _open_spool(self) -> DataSink:
        spool = self._policy.spool
        assert spool is not None
        file = spool.open()
        self._spooled.append(file)
        return file

    async def _start_tls(self) -> None:
        """RFC 3207: the 220 goes out in the clear, then the handshake; the session starts over."""
        self._flush()
        transport = self.transport
        assert transport is not None and self._tls_context is not None
        try:
            tls = await self._loop.start_tls(transport, self, self._tls_context, server_side=True)
        except Exception as exc:  # whatever the handshake raised
            # The client sent something other than a TLS handshake: its fault, no traceback.
            log.info("event=starttls_failed error=%r", exc)
            transport.close()
            self._finish()  # asyncio tells a protocol nothing of a handshake that failed
            return
        if tls is None:
            self._finish()
            return
        self.transport = tls
        self._reading_paused = False
        # The old session's login, if it had one, no longer counts among its account's sessions.
        self._policy.ended(self.client)
        self.session.tls_started()
        self._touch()

    # -- time limits ---------------------------------------------------------------------------
    def _touch(self) -> None:
        # One timer per connection, not one per command: note the time, and let the armed timer
        # re-arm itself on firing for whatever is left of the period.
        now = self._loop.time()
        self._active_at = now
        due = now + self._idle_timeout
        if self._stress_idle is not None:
            due = min(due, now + self._stress_idle)  # see _idle_check
        if self._idle_timer_at is None or self._idle_timer_at > due:
            if self._idle_handle is not None:
                self._idle_handle.cancel()
            self._idle_handle = self._loop.call_at(due, self._idle_check)
            self._idle_timer_at = due

    def _idle_check(self) -> None:
        """While the listeners' connection slots are mostly taken, an idle session gets the
        short stress timeout instead of the usual one (Postfix's stress mode), so that idle or
        slow clients cannot keep a full node from taking new mail. Idle sessions go until the
        node is below the stress share again, not all of them. The timer looks again at least
        every stress period: a node that fills up must not wait out the whole idle timeout of
        the sessions it already has."""
        self._idle_timer_at = None
        now = self._loop.time()
        limit, stress, stressed = self._idle_timeout, self._stress_idle, False
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
            self._idle_handle = self._loop.call_at(due, self._idle_check)
            self._idle_timer_at = due
            return
        ip = self._admitted.ip
        if slow:
            log.info("event=data_too_slow client=%s octets=%d", ip, self._data_bytes)
            self._close_with(R.DATA_TOO_SLOW)
            return
        if stressed:
            log.info("event=stress_idle_timeout client=%s", ip)
        if self.transport is not None and not self.transport.is_closing():
            log.info("event=idle_timeout client=%s", ip)
        self._close_with(R.IDLE_TIMEOUT)

    def _expire(self) -> None:
        self._close_with(R.SESSION_TOO_LONG)


def _close_all(files: list[SpoolFile]) -> None:
    for file in files:
        file.close()
    files.clear()


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
    submission = mode is not Mode.MX
    config = core.SessionConfig(
        hostname=hostname,
        max_size=max_message_size,
        tls=implicit_tls,
        starttls=not implicit_tls,
        auth=submission,
        auth_required=submission,
        temporary_reply=policy.with_notice if submission else None,
    )
    tls_context = None if implicit_tls else tls

    def factory(admitted: Admitted) -> asyncio.BaseProtocol:
        return SmtpConnection(
            policy,
            config,
            admitted=admitted,
            limiter=limiter,
            tls_context=tls_context,
            idle_timeout=idle_timeout,
            session_timeout=session_timeout,
            stress_idle_timeout=stress_idle_timeout,
            min_data_rate=min_data_rate,
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
