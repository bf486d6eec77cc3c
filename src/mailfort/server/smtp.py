"""SMTP listeners: aiosmtpd's protocol with mailfort's admission control and session limits."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import defaultdict
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, syntax

from mailfort.protocol.smtp import replies as R
from mailfort.server.admission import ConnectionLimiter, Refusal
from mailfort.server.smtp_policy import Mode, SmtpPolicy

log = logging.getLogger("mailfort.smtp")

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


class LimitedSMTP(SMTP):
    """aiosmtpd's SMTP plus a connection slot per session and a total session time limit.

    Also mends a few aiosmtpd habits at the edge: replies get enhanced codes and lose control
    characters (`push`), an idle client hears why it is dropped, and bytes arriving during DATA
    count as activity.
    """

    def __init__(
        self,
        handler: SmtpPolicy,
        *,
        limiter: ConnectionLimiter,
        session_timeout: float,
        **kwargs: Any,
    ) -> None:
        # aiosmtpd keeps these on the class and grows MAIL's entry on every EHLO, so one session's
        # EHLOs (or another session's arrival, which clears it) changed every session's limit.
        self.command_size_limits = defaultdict(lambda: SMTP.command_size_limit)
        super().__init__(handler, **kwargs)
        self._receiving_data = False
        self._limiter = limiter
        self._session_timeout = session_timeout
        self._slot_ip: str | None = None
        self._refused = False
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None and self._slot_ip is None and not self._refused
        if first:
            peer = transport.get_extra_info("peername")
            ip = str(peer[0]) if peer else "unknown"
            refusal = self._limiter.admit(ip)
            if refusal is not None:
                self._refused = True
                log.warning("event=connection_refused reason=%s client=%s", refusal.value, ip)
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(_REFUSALS[refusal].encode() + b"\r\n")
                transport.close()
                return
            self._slot_ip = ip
            self._deadline = self.loop.call_later(self._session_timeout, self._expire)
        super().connection_made(transport)

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            await super().push(R.for_wire(status))
        else:
            await super().push(status)

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        self.command_size_limits.clear()
        await super().smtp_EHLO(hostname)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        self._receiving_data = True
        try:
            await super().smtp_DATA(arg)
        finally:
            self._receiving_data = False
            if self.transport is not None:
                self._reset_timeout()

    def data_received(self, data: bytes) -> None:
        # aiosmtpd restarts the idle timer only on commands, so a large message on a slow link
        # would be cut off after one idle period; the session deadline still bounds a trickle.
        if self._receiving_data:
            self._reset_timeout()
        super().data_received(data)

    def _timeout_cb(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            log.info("event=idle_timeout client=%s", self._slot_ip)
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(R.IDLE_TIMEOUT.encode() + b"\r\n")
            transport.close()

    def _expire(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(R.SESSION_TOO_LONG.encode() + b"\r\n")
            transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
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
) -> asyncio.Server:
    mode = policy.mode
    implicit_tls = mode is Mode.SUBMISSIONS

    def factory() -> LimitedSMTP:
        return LimitedSMTP(
            policy,
            limiter=limiter,
            session_timeout=session_timeout,
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

    server = await asyncio.get_running_loop().create_server(
        factory,
        host,
        port,
        ssl=tls if implicit_tls else None,
        reuse_address=True,
    )
    return server
