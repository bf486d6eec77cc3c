"""SMTP policy as an aiosmtpd handler: who may send what to whom, and where accepted mail goes.

One handler class serves all three listeners; `Mode` says which one it is:
- MX (port 25): no AUTH, mail only for local recipients (no open relay);
- SUBMISSION (587, STARTTLS) and SUBMISSIONS (465, implicit TLS): AUTH PLAIN/LOGIN under TLS only,
  the envelope sender must belong to the user, any recipient.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import time
from base64 import b64decode
from collections.abc import Callable
from enum import Enum
from typing import Final

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session, TLSSetupException

from mailfort.auth.login import Logins, Outcome
from mailfort.errors import StoreError, StoreUnavailable
from mailfort.mail.accept import build_request
from mailfort.mail.address import AddressError, normalize
from mailfort.mail.directory import Directory, Resolution
from mailfort.mail.trace import protocol_name
from mailfort.metrics import NodeMetrics
from mailfort.protocol.smtp import replies as R
from mailfort.server.overload import OverloadGate
from mailfort.status.components import Component
from mailfort.status.notices import NoticeBoard
from mailfort.store.api import Store

log = logging.getLogger("mailfort.smtp")

# The overload gate's answers (issue 6): temporary, the sender retries; RFC 3463 4.3.2 is
# "system not accepting network messages", 4.3.0 "other or undefined mail system status".
OVERLOADED_CONNECT: Final = "421 4.3.2 Server busy, try again later"
OVERLOADED_MAIL: Final = "451 4.3.0 Server busy, try again later"


class Mode(Enum):
    MX = "smtp"
    SUBMISSION = "submission"
    SUBMISSIONS = "submissions"


def _peer_ip(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "unknown"


def _is_tls(server: SMTP) -> bool:
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


class SmtpPolicy:
    def __init__(
        self,
        *,
        mode: Mode,
        store: Store,
        directory: Directory,
        hostname: str,
        max_recipients: int,
        auth: Logins,
        clock: Callable[[], float] = time.time,
        metrics: NodeMetrics | None = None,
        gate: OverloadGate | None = None,
        notices: NoticeBoard | None = None,
    ) -> None:
        self.mode = mode
        self.store = store
        self.directory = directory
        self.hostname = hostname
        self.max_recipients = max_recipients
        self.auth = auth
        self.clock = clock
        self.metrics = metrics
        self.gate = gate
        self.notices = notices
        # Metrics label: both submission ports are "submission".
        self.protocol = "smtp" if mode is Mode.MX else "submission"
        self.accepted = 0

    def with_notice(self, reply: str) -> str:
        """A submission 4xx reply names an incident touching Outgoing mail (issue 6): the
        sender's client shows the text, so the customer learns why and where to look."""
        last_line = reply[3:4] != "-"
        if self.mode is Mode.MX or self.notices is None or not (reply[:1] == "4" and last_line):
            return reply
        notice = self.notices.line(Component.OUTGOING)
        return f"{reply} ({notice})" if notice else reply

    # -- EHLO --------------------------------------------------------------------------------
    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        lines = [r for r in responses if not (self.mode is Mode.MX and r.startswith("250-AUTH"))]
        # aiosmtpd answers every command in order, so pipelined commands are safe (RFC 2920).
        lines[-1:-1] = ["250-PIPELINING", "250-ENHANCEDSTATUSCODES"]
        return lines

    # -- AUTH --------------------------------------------------------------------------------
    async def handle_AUTH(
        self, server: SMTP, session: Session, envelope: Envelope, args: list[str]
    ) -> str | None:
        if self.mode is Mode.MX:
            return R.AUTH_NOT_HERE
        ip = _peer_ip(session)
        if self.auth.refuses(self.protocol, ip):
            return R.AUTH_THROTTLED  # before the exchange: a throttled client sends no password
        credentials = await self._read_credentials(server, args)
        if credentials is None:
            return None  # an error reply was already sent
        if isinstance(credentials, str):
            return credentials
        login, password = credentials
        return await self._check_login(session, ip, login, password)

    async def _check_login(self, session: Session, ip: str, login: str, password: str) -> str:
        """One password check through the node's `Logins` (throttled per address, network and
        account). No overload-gate slot: the account read is the only store work, and the
        session's transaction slot is taken at MAIL."""
        attempt = await self.auth.attempt(self.protocol, ip, login, password)
        self.auth.record(attempt)
        if attempt.outcome is Outcome.THROTTLED:
            return R.AUTH_THROTTLED
        if attempt.outcome is Outcome.UNAVAILABLE:
            return R.STORE_UNAVAILABLE
        account = attempt.account
        if account is None:
            # Slows password guessing; after the measurement, which is of the node, not of it.
            await asyncio.sleep(attempt.delay)
            return R.AUTH_FAILED
        session.authenticated = True
        session.auth_data = account.address  # type: ignore[assignment]
        session.login_data = account.address
        log.info("event=auth_ok client=%s user=%s", ip, account.address)
        return R.AUTH_OK

    async def _read_credentials(
        self, server: SMTP, args: list[str]
    ) -> tuple[str, str] | str | None:
        login_bytes: bytes | None
        mechanism = args[0].upper()
        if mechanism == "PLAIN":
            raw = await self._initial_or_challenge(server, args, "")
            if not isinstance(raw, bytes):
                return raw
            parts = raw.split(b"\0")
            if len(parts) != 3:
                return R.AUTH_SYNTAX
            _authz, login_bytes, password_bytes = parts
        elif mechanism == "LOGIN":
            raw = await self._initial_or_challenge(server, args, "Username:")
            if not isinstance(raw, bytes):
                return raw
            login_bytes = raw
            answer = await self._challenge(server, "Password:")
            if not isinstance(answer, bytes):
                return answer
            password_bytes = answer
        else:
            return R.AUTH_MECHANISM
        login = login_bytes.decode("utf-8", "surrogateescape")
        password = password_bytes.decode("utf-8", "surrogateescape")
        return login, password

    async def _initial_or_challenge(
        self, server: SMTP, args: list[str], prompt: str
    ) -> bytes | str | None:
        if len(args) > 1 and args[1] != "=":
            try:
                return b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                return R.AUTH_SYNTAX
        if len(args) > 1:
            return b""  # "=" is an empty initial response (RFC 4954 4)
        return await self._challenge(server, prompt)

    async def _challenge(self, server: SMTP, prompt: str) -> bytes | str | None:
        """The client's answer; a reply to send instead; or None when aiosmtpd already replied."""
        try:
            answer = await server.challenge_auth(prompt)
        except ValueError:
            # aiosmtpd reads the answer with StreamReader.readline, which refuses a line longer
            # than the session's line limit with ValueError.
            return R.AUTH_LINE_TOO_LONG
        if answer is MISSING:
            return None
        assert isinstance(answer, bytes)
        return answer

    # -- MAIL --------------------------------------------------------------------------------
    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if address == "<>":
            sender = ""
        else:
            try:
                sender = normalize(address)
            except AddressError:
                return R.SYNTAX_ADDRESS
        if self.mode is not Mode.MX:
            user = session.auth_data
            if not isinstance(user, str):
                return R.AUTH_REQUIRED
            if not sender:
                return R.NULL_SENDER_SUBMISSION
            try:
                account = await self.store.get_account(user)
                allowed = account is not None and await self.directory.may_send_as(account, sender)
            except StoreError:
                return R.STORE_UNAVAILABLE
            if not allowed:
                log.warning("event=sender_refused user=%s sender=%s", user, sender)
                return R.SENDER_NOT_OWNED
        envelope.mail_from = sender or "<>"
        envelope.mail_options.extend(mail_options)
        envelope.resolved = {}  # type: ignore[attr-defined]
        return R.SENDER_OK

    # -- RCPT --------------------------------------------------------------------------------
    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        resolved: dict[str, Resolution] = getattr(envelope, "resolved", {})
        if len(resolved) >= self.max_recipients:
            return R.TOO_MANY_RECIPIENTS
        try:
            recipient = normalize(address)
        except AddressError:
            return R.SYNTAX_ADDRESS
        try:
            if await self.directory.is_local(recipient):
                resolution = await self.directory.resolve(recipient)
                if resolution is None:
                    log.info("event=rcpt_unknown client=%s rcpt=%s", _peer_ip(session), recipient)
                    return R.UNKNOWN_USER
                if not await self._drop_full_mailboxes(resolution):
                    log.info("event=rcpt_full client=%s rcpt=%s", _peer_ip(session), recipient)
                    return R.MAILBOX_FULL
            elif isinstance(session.auth_data, str) and self.mode is not Mode.MX:
                resolution = Resolution(remote=[recipient])
            else:
                log.info("event=relay_denied client=%s rcpt=%s", _peer_ip(session), recipient)
                return R.RELAY_DENIED
        except StoreError:
            return R.STORE_UNAVAILABLE
        resolved[recipient] = resolution
        envelope.resolved = resolved  # type: ignore[attr-defined]
        envelope.rcpt_tos.append(recipient)
        envelope.rcpt_options.extend(rcpt_options)
        return R.RECIPIENT_OK

    async def _drop_full_mailboxes(self, resolution: Resolution) -> bool:
        """Leave out accounts at or over quota; False when nobody is left to receive.

        A full mailbox is a temporary condition (452 4.2.2): the sender retries, the user cleans
        up. One full member of an alias must not block mail for the others. Only accounts with a
        quota are looked at, and their use is read fresh (it changes with every delivery)."""
        for account_id in resolution.limited & resolution.local.keys():
            account = await self.store.get_account_by_id(account_id)
            if account is not None and 0 < account.quota_bytes <= account.used_bytes:
                del resolution.local[account_id]
        return bool(resolution.local or resolution.remote)

    # -- DATA --------------------------------------------------------------------------------
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        resolved: dict[str, Resolution] = getattr(envelope, "resolved", {})
        data = envelope.original_content
        if not resolved or data is None:
            return R.BAD_SEQUENCE
        sender = "" if envelope.mail_from == "<>" else str(envelope.mail_from)
        protocol = protocol_name(
            esmtp=session.extended_smtp,
            tls=_is_tls(server),
            authenticated=bool(session.authenticated),
            utf8=envelope.smtp_utf8,
        )
        request = build_request(
            sender=sender,
            data=data,
            resolved=resolved,
            helo=session.host_name or "",
            client_ip=_peer_ip(session),
            hostname=self.hostname,
            protocol=protocol,
            authenticated=session.auth_data if isinstance(session.auth_data, str) else None,
            now=self.clock(),
        )
        request_at = self.clock()
        try:
            result = await self.store.accept(request)
        except StoreUnavailable as exc:
            log.error("event=accept_failed client=%s error=%s", _peer_ip(session), exc)
            return R.STORE_UNAVAILABLE
        except StoreError as exc:
            log.error("event=accept_failed client=%s error=%s", _peer_ip(session), exc)
            return R.STORE_UNAVAILABLE
        self.accepted += 1
        if self.metrics is not None:
            self.metrics.message_accepted(self.mode.value)
            # Local copies were delivered in the acceptance transaction: their delay is its time.
            for _ in range(result.delivered):
                self.metrics.delivered("local", self.clock() - request_at)
        log.info(
            "event=accepted id=%s client=%s from=<%s> rcpts=%d delivered=%d queued=%d size=%d",
            result.queue_id,
            _peer_ip(session),
            sender,
            len(resolved),
            result.delivered,
            result.queued,
            len(request.body),
        )
        return R.queued(result.queue_id)

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # The client sent something other than a TLS handshake after STARTTLS: its fault, not
            # ours, so no traceback; aiosmtpd closes the connection without sending this reply.
            log.info("event=starttls_failed error=%r", error.__cause__)
            return R.TLS_FAILED
        # Never put a Python error on the wire; the session stays usable.
        log.exception("event=smtp_exception error=%r", error)
        return R.INTERNAL_ERROR
