"""SMTP policy as an aiosmtpd handler: who may send what to whom, and where accepted mail goes.

One handler class serves all three listeners; `Mode` says which one it is:
- MX (port 25): no AUTH, mail only for local recipients (no open relay);
- SUBMISSION (587, STARTTLS) and SUBMISSIONS (465, implicit TLS): AUTH PLAIN/LOGIN under TLS only,
  the envelope sender and the header From:/Sender: must belong to the user, any recipient.

On every port a message must fit each local recipient's remaining quota before a byte of it is
stored: at RCPT by the size declared with MAIL (RFC 1870), at the end of DATA by its real size,
and once more inside the store transaction, which concurrent deliveries cannot both pass.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import time
from base64 import b64decode
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Final

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session, TLSSetupException

from mailfort.auth.login import Logins, Outcome
from mailfort.errors import CommitInDoubt, OverQuota, StoreError, StoreUnavailable
from mailfort.mail.accept import Stamp, new_stamp, stamped_request
from mailfort.mail.address import AddressError, normalize
from mailfort.mail.directory import Directory, Resolution
from mailfort.mail.originator import MAX_HEADER_BLOCK, OriginatorError, Problem, originators
from mailfort.mail.trace import delivery_prefix, protocol_name
from mailfort.metrics import NodeMetrics
from mailfort.network import Networks
from mailfort.protocol.smtp import replies as R
from mailfort.server.account_sessions import AccountSessions, SessionTicket
from mailfort.server.memory_budget import MemoryBudget
from mailfort.server.overload import OverloadGate
from mailfort.server.spool import Spool, SpoolFile
from mailfort.status.components import Component
from mailfort.status.notices import NoticeBoard
from mailfort.store.roles import Intake

log = logging.getLogger("mailfort.smtp")

# The overload gate's answers: temporary, the sender retries; RFC 3463 4.3.2 is
# "system not accepting network messages", 4.3.0 "other or undefined mail system status".
OVERLOADED_CONNECT: Final = "421 4.3.2 Server busy, try again later"
OVERLOADED_MAIL: Final = "451 4.3.0 Server busy, try again later"

_PROBLEM_REPLIES: Final = {
    Problem.HEADER_TOO_LARGE: R.HEADER_TOO_LARGE,
    Problem.MALFORMED_HEADER: R.HEADER_MALFORMED,
    Problem.NO_FROM: R.HEADER_NO_FROM,
    Problem.FROM_TWICE: R.HEADER_FROM_TWICE,
    Problem.SENDER_TWICE: R.HEADER_SENDER_TWICE,
    Problem.BAD_FROM: R.HEADER_BAD_FROM,
    Problem.BAD_SENDER: R.HEADER_BAD_SENDER,
    Problem.NEED_SENDER: R.HEADER_NEED_SENDER,
}


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
        store: Intake,
        directory: Directory,
        hostname: str,
        max_recipients: int,
        auth: Logins,
        clock: Callable[[], float] = time.time,
        metrics: NodeMetrics | None = None,
        gate: OverloadGate | None = None,
        notices: NoticeBoard | None = None,
        spool: Spool | None = None,
        memory: MemoryBudget | None = None,
        sessions: AccountSessions | None = None,
        networks: Networks | None = None,
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
        # DATA past the spool threshold goes to disk as it arrives (None: kept in memory);
        # reading it back for the store write takes from the node's memory budget.
        self.spool = spool
        self.memory = memory or MemoryBudget(64 * 1024 * 1024)
        # Logged-in sessions per account on this node, shared with IMAP and POP3.
        self.sessions = sessions or AccountSessions(50)
        self.networks = networks or Networks()
        # Metrics label: both submission ports are "submission".
        self.protocol = "smtp" if mode is Mode.MX else "submission"
        self.accepted = 0

    def with_notice(self, reply: str) -> str:
        """A submission 4xx reply names an incident touching Outgoing mail: the
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
        account). No overload-gate slot: the account read is the only store work, and a
        transaction's slot is taken for its own store work, after DATA."""
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
        ticket = self.sessions.open(account.id)
        if ticket is None:
            log.warning("event=auth_refused reason=sessions client=%s user=%s", ip, account.address)
            return R.AUTH_TOO_MANY_SESSIONS
        session.ticket = ticket  # type: ignore[attr-defined]  # given back by ended()
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
            authz_bytes, login_bytes, password_bytes = parts
            if authz_bytes and not _same_identity(authz_bytes, login_bytes):
                # RFC 4616 2: a non-empty authzid asks to act as someone else; nobody may here.
                # Refused before the password is looked at, so it tells nothing about it.
                log.warning(
                    "event=authz_refused authzid=%r login=%r", authz_bytes[:100], login_bytes[:100]
                )
                return R.AUTHZ_REFUSED
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
        envelope.declared_size = _declared_size(mail_options)  # type: ignore[attr-defined]
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
            found = await self._recipient(session, address)
            if isinstance(found, str):
                return found
            recipient, resolution = found
            # RFC 1870 6: with SIZE declared, a recipient whose mailbox cannot take that much is
            # refused here, before the client sends the message; without it, a full one.
            declared: int = getattr(envelope, "declared_size", 0)
            refusal = await self._drop_unfit(resolution, declared)
        except StoreError:
            return R.STORE_UNAVAILABLE
        if refusal is not None:
            log.info(
                "event=rcpt_full client=%s rcpt=%s size=%d", _peer_ip(session), recipient, declared
            )
            return refusal
        resolved[recipient] = resolution
        envelope.resolved = resolved  # type: ignore[attr-defined]
        envelope.rcpt_tos.append(recipient)
        envelope.rcpt_options.extend(rcpt_options)
        return R.RECIPIENT_OK

    async def _recipient(self, session: Session, address: str) -> tuple[str, Resolution] | str:
        """The envelope recipient as it will be recorded, and where its mail goes; or a refusal."""
        if address.lower() == "postmaster":
            # RFC 5321 4.5.1: "RCPT TO:<Postmaster>", with no domain, must be accepted.
            target = await self.directory.postmaster()
            resolution = None if target is None else await self.directory.resolve(target)
            if target is None or resolution is None:
                log.warning("event=postmaster_unresolved postmaster=%s", target or "-")
                return R.UNKNOWN_USER
            return target, resolution
        try:
            recipient = normalize(address)
        except AddressError:
            return R.SYNTAX_ADDRESS
        if await self.directory.is_local(recipient):
            resolution = await self.directory.resolve(recipient)
            if resolution is None:
                log.info("event=rcpt_unknown client=%s rcpt=%s", _peer_ip(session), recipient)
                return R.UNKNOWN_USER
            return recipient, resolution
        if isinstance(session.auth_data, str) and self.mode is not Mode.MX:
            return recipient, Resolution(remote=[recipient])
        log.info("event=relay_denied client=%s rcpt=%s", _peer_ip(session), recipient)
        return R.RELAY_DENIED

    async def _drop_unfit(
        self, resolution: Resolution, size: int, extra: Mapping[int, int] | None = None
    ) -> str | None:
        """Leave out accounts whose remaining quota cannot take `size` octets (plus `extra` for
        that account: its own trace lines); the refusal when nobody is left to receive.

        A full mailbox is a temporary condition (452 4.2.2): the sender retries, the user cleans
        up; a message larger than the whole quota can never fit (552 5.2.3). One member of an
        alias that cannot take it must not block the mail for the others, as before. Only
        accounts with a quota are looked at, and their use is read fresh (it changes with every
        delivery). With `size` 0 (not declared), only a mailbox already at its quota is full."""
        dropped = too_big = 0
        for account_id in sorted(resolution.limited & resolution.local.keys()):
            account = await self.store.get_account_by_id(account_id)
            if account is None or account.quota_bytes <= 0:
                continue
            needed = size + (extra or {}).get(account_id, 0)
            if account.used_bytes >= account.quota_bytes or (
                account.used_bytes + needed > account.quota_bytes
            ):
                del resolution.local[account_id]
                dropped += 1
                too_big += needed > account.quota_bytes
        if resolution.local or resolution.remote:
            return None
        return R.MESSAGE_OVER_QUOTA if dropped and too_big == dropped else R.MAILBOX_FULL

    # -- DATA --------------------------------------------------------------------------------
    def ended(self, session: Session) -> None:
        """The connection is gone: its login's place among the account's sessions is free."""
        ticket: SessionTicket | None = getattr(session, "ticket", None)
        if ticket is not None:
            ticket.close()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        resolved: dict[str, Resolution] = getattr(envelope, "resolved", {})
        data = envelope.original_content
        # The message is on disk instead when it was too large to keep in memory as it came.
        spooled: SpoolFile | None = getattr(envelope, "spooled", None)
        if not resolved or data is None:
            return R.BAD_SEQUENCE
        sender = "" if envelope.mail_from == "<>" else str(envelope.mail_from)
        stamp = self._stamp(server, session, envelope, resolved)
        size = len(stamp.received) + (len(data) if spooled is None else spooled.size)
        try:
            if self.mode is not Mode.MX:
                limit = MAX_HEADER_BLOCK + 4
                head = data[:limit] if spooled is None else await spooled.head(limit)
                refusal = await self._check_originators(session, head)
                if refusal is not None:
                    return refusal
            refusal = await self._fit_quota(session, sender, resolved, size)
        except StoreError:
            return R.STORE_UNAVAILABLE
        if refusal is not None:
            return refusal
        request_at = self.clock()
        try:
            # A spooled message is in memory only from here to the end of the store write.
            # One sender (a user, or a client network on the MX) holds a share of the budget.
            user = session.auth_data
            owner = user if isinstance(user, str) else self.networks.of(_peer_ip(session))
            async with self.memory.hold(0 if spooled is None else size, owner=owner):
                if spooled is None:
                    body: bytes | bytearray = stamp.received + data
                else:
                    body = await spooled.read(stamp.received)
                    spooled.close()  # the octets are in memory now: free the disk at once
                request = stamped_request(
                    stamp=stamp,
                    sender=sender,
                    body=body,
                    resolved=resolved,
                    client_ip=_peer_ip(session),
                    authenticated=session.auth_data if isinstance(session.auth_data, str) else None,
                    now=self.clock(),
                )
                result = await self.store.accept(request)
        except OverQuota as exc:
            # A concurrent delivery took the room between the check above and this commit; the
            # store refused the whole transaction, so nothing is stored and the sender retries.
            log.info("event=accept_over_quota client=%s error=%s", _peer_ip(session), exc)
            return R.MAILBOX_NO_ROOM
        except CommitInDoubt as exc:
            # The message may be stored: a 451 would say it is not. No answer at all, as after a
            # crash, tells the client the truth: it retries, and at worst the recipient gets a
            # duplicate (RFC 5321 6.1) rather than a loss.
            log.error("event=accept_in_doubt client=%s error=%s", _peer_ip(session), exc)
            if isinstance(server.transport, asyncio.WriteTransport):
                server.transport.abort()
            return R.STORE_UNAVAILABLE
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
            size,
        )
        return R.queued(result.queue_id)

    def _stamp(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        resolved: dict[str, Resolution],
    ) -> Stamp:
        protocol = protocol_name(
            esmtp=session.extended_smtp,
            tls=_is_tls(server),
            authenticated=bool(session.authenticated),
            utf8=envelope.smtp_utf8,
        )
        return new_stamp(
            recipients=list(resolved),
            helo=session.host_name or "",
            client_ip=_peer_ip(session),
            hostname=self.hostname,
            protocol=protocol,
            now=self.clock(),
        )

    async def _check_originators(self, session: Session, head: bytes) -> str | None:
        """Submission: every address in the header From: and Sender: is the user's (RFC 6409 8
        lets the MSA check them); a refusal otherwise. `head` is the start of the message."""
        user = session.auth_data
        if not isinstance(user, str):
            return R.AUTH_REQUIRED
        try:
            claimed = originators(head)
        except OriginatorError as exc:
            log.info("event=header_refused user=%s problem=%r", user, exc.problem.value)
            return _PROBLEM_REPLIES[exc.problem]
        account = await self.store.get_account(user)
        if account is None:
            return R.AUTH_REQUIRED
        checks = [(a, "From") for a in claimed.authors]
        if claimed.sender is not None:
            checks.append((claimed.sender, "Sender"))
        for address, field_name in checks:
            if not await self.directory.may_send_as(account, address):
                log.warning(
                    "event=header_sender_refused user=%s field=%s address=%s",
                    user,
                    field_name,
                    address,
                )
                return R.header_sender_refused(address, field_name)
        return None

    async def _fit_quota(
        self, session: Session, sender: str, resolved: dict[str, Resolution], size: int
    ) -> str | None:
        """The real size against every local recipient's remaining quota, before the store
        write; a refusal for the whole transaction when any envelope recipient cannot take it.

        One reply to DATA answers for every recipient (RFC 5321 3.3), and a 250 takes
        responsibility for each (4.2.5, 6.1). LMTP could answer per recipient here (RFC 2033
        4.2, as Dovecot's LMTP does for a recipient over quota); SMTP cannot. Storing the copies
        that fit and dropping the rest would lose mail behind a 250; accepting and then bouncing
        the rest (Postfix in front of Dovecot: the LMTP 4xx/5xx becomes a deferral, then a DSN)
        stores the very bytes the quota refuses and sends backscatter to senders that may be
        forged. So nothing is stored, and the sender hears 452 4.2.2 and retries all of them
        (552 5.2.3 when no recipient could ever take it). A client that declares SIZE (every
        MTA does) was told of a mailbox without room at its RCPT already (Dovecot's quota-status
        service for Postfix does the same), so only clients that declare nothing or too little
        meet this. Members of an alias are left out as at RCPT."""
        # Each copy also carries its own Delivered-To/Return-Path lines.
        extra = {
            account_id: len(delivery_prefix(sender, address))
            for resolution in resolved.values()
            for account_id, address in resolution.local.items()
        }
        refusals = []
        for recipient, resolution in resolved.items():
            refusal = await self._drop_unfit(resolution, size, extra)
            if refusal is not None:
                log.info(
                    "event=data_over_quota client=%s rcpt=%s size=%d",
                    _peer_ip(session),
                    recipient,
                    size,
                )
                refusals.append(refusal)
        if not refusals:
            return None
        if len(refusals) == len(resolved) and set(refusals) == {R.MESSAGE_OVER_QUOTA}:
            return R.MESSAGE_OVER_QUOTA
        return R.MAILBOX_NO_ROOM

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # The client sent something other than a TLS handshake after STARTTLS: its fault, not
            # ours, so no traceback; aiosmtpd closes the connection without sending this reply.
            log.info("event=starttls_failed error=%r", error.__cause__)
            return R.TLS_FAILED
        # Never put a Python error on the wire; the session stays usable.
        log.exception("event=smtp_exception error=%r", error)
        return R.INTERNAL_ERROR


def _declared_size(mail_options: list[str]) -> int:
    """The SIZE=n of MAIL (RFC 1870); 0 when not declared. aiosmtpd checked its syntax."""
    for option in mail_options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isascii() and value.isdigit():
            return int(value)
    return 0


def _same_identity(authz: bytes, login: bytes) -> bool:
    """RFC 4616: the authorization identity names the authentication identity itself."""
    a = authz.decode("utf-8", "surrogateescape")
    b = login.decode("utf-8", "surrogateescape")
    try:
        return normalize(a) == normalize(b)
    except AddressError:
        return a == b
