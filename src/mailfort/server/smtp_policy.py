"""SMTP policy: who may send what to whom, and where accepted mail goes.

A plain interface the SMTP server (`server/smtp.py`) calls for the events of its sans-IO session
(`protocol/smtp/session.py`): `auth_refusal` and `login` (AUTH), `mail`, `rcpt`, `data`, and
`ended` when a connection (or its session, at STARTTLS) ends. Each returns what the session
should do next: an envelope, a recipient, or the reply that refuses.

One policy class serves all three listeners; `Mode` says which one it is:
- MX (port 25): no AUTH, mail only for local recipients (no open relay);
- SUBMISSION (587, STARTTLS) and SUBMISSIONS (465, implicit TLS): AUTH PLAIN/LOGIN under TLS only,
  the envelope sender and the header From:/Sender: must belong to the user, any recipient.

On the MX port, when a `Verifier` is given, each message is checked (SPF, DKIM, DMARC, ARC:
`trust/incoming.py`) after DATA: it gets an Authentication-Results field, forged ones in our name
are cut out, and by the sender domain's DMARC policy it is refused, deferred, or its copies are
filed to Junk.

On every port a message must fit each local recipient's remaining quota before a byte of it is
stored: at RCPT by the size declared with MAIL (RFC 1870), at the end of DATA by its real size,
and once more inside the store transaction, which concurrent deliveries cannot both pass.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final

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
from mailfort.protocol.smtp.envelope import Envelope, MailParams, Recipient
from mailfort.protocol.smtp.session import Login, ServerSession
from mailfort.server.account_sessions import AccountSessions, SessionTicket
from mailfort.server.memory_budget import MemoryBudget
from mailfort.server.overload import OverloadGate
from mailfort.server.spool import Spool, SpoolFile
from mailfort.server.submission_limit import SubmissionLimit, Taken, Usage
from mailfort.status.components import Component
from mailfort.status.notices import NoticeBoard
from mailfort.store.roles import Intake
from mailfort.trust.incoming import Action, Verifier, cut

log = logging.getLogger("mailfort.smtp")

# The overload gate's answers: temporary, the sender retries; RFC 3463 4.3.2 is
# "system not accepting network messages", 4.3.0 "other or undefined mail system status".
OVERLOADED_CONNECT: Final = "421 4.3.2 Server busy, try again later"
OVERLOADED_MAIL: Final = "451 4.3.0 Server busy, try again later"
_DOMAIN_TEXT: Final = re.compile(r"[^A-Za-z0-9.-]")

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


class Client:
    """One connection as the policy sees it: the client's address, its session (what it said
    in HELO/EHLO, whether it is on TLS, who it logged in as) and its login's place among the
    account's sessions."""

    __slots__ = ("ip", "session", "ticket", "usage")

    def __init__(self, ip: str, session: ServerSession[Resolution]) -> None:
        self.ip = ip
        self.session = session
        self.ticket: SessionTicket | None = None  # given back by `SmtpPolicy.ended`
        self.usage: Usage | None = None  # the user's sending in the last hour, read at MAIL


@dataclass(frozen=True, slots=True)
class Screened:
    """What the checks of incoming mail add to a message before it is stored."""

    header: bytes = b""  # the Authentication-Results field
    strip: tuple[tuple[int, int], ...] = ()  # forged fields to cut (offsets in the message)
    junk: frozenset[str] = frozenset()  # envelope recipients whose copies go to Junk


UNSCREENED: Final = Screened()


@dataclass(frozen=True, slots=True)
class LoggedIn:
    user: str  # the account's address


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
        verifier: Verifier | None = None,
        limit: SubmissionLimit | None = None,
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
        # Checks of incoming mail: MX only (submission is authenticated mail of our own users).
        self.verifier = verifier if mode is Mode.MX else None
        # Submission only: each user's messages and recipients per hour, on every node.
        self.limit = limit if limit is not None and limit.enabled else None
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

    # -- AUTH --------------------------------------------------------------------------------
    def auth_refusal(self, client: Client) -> str | None:
        """Before the exchange: a throttled client sends no password."""
        if self.auth.refuses(self.protocol, client.ip):
            return R.AUTH_THROTTLED
        return None

    async def login(self, client: Client, login: Login) -> LoggedIn | str:
        if login.authzid and not _same_identity(login.authzid, login.login):
            # RFC 4616 2: a non-empty authzid asks to act as someone else; nobody may here.
            # Refused before the password is looked at, so it tells nothing about it.
            log.warning(
                "event=authz_refused authzid=%r login=%r", login.authzid[:100], login.login[:100]
            )
            return R.AUTHZ_REFUSED
        return await self._check_login(client, login.login, login.password)

    async def _check_login(self, client: Client, login: str, password: str) -> LoggedIn | str:
        """One password check through the node's `Logins` (throttled per address, network and
        account). No overload-gate slot: the account read is the only store work, and a
        transaction's slot is taken for its own store work, after DATA."""
        ip = client.ip
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
        client.ticket = ticket
        log.info("event=auth_ok client=%s user=%s", ip, account.address)
        return LoggedIn(account.address)

    # -- MAIL --------------------------------------------------------------------------------
    async def mail(
        self, client: Client, address: str, params: MailParams
    ) -> Envelope[Resolution] | str:
        if address == "<>":
            sender = ""
        else:
            try:
                sender = normalize(address)
            except AddressError:
                return R.SYNTAX_ADDRESS
        if self.mode is not Mode.MX:
            user = client.session.user
            if user is None:
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
            if self.limit is not None:
                try:
                    client.usage = await self.limit.usage(user)
                except StoreError:
                    return R.STORE_UNAVAILABLE
                refusal = self.limit.refusal(user, client.usage, 0, client.ip)
                if refusal is not None:
                    return refusal
        return Envelope(sender=sender, params=params)

    # -- RCPT --------------------------------------------------------------------------------
    async def rcpt(
        self, client: Client, envelope: Envelope[Resolution], address: str
    ) -> Recipient[Resolution] | str:
        given = len({r.address for r in envelope.recipients})
        if given >= self.max_recipients:
            return R.TOO_MANY_RECIPIENTS
        user = client.session.user
        if self.limit is not None and client.usage is not None and user is not None:
            refusal = self.limit.refusal(user, client.usage, given + 1, client.ip)
            if refusal is not None:
                return refusal
        try:
            found = await self._recipient(client, address)
            if isinstance(found, str):
                return found
            recipient, resolution = found
            # RFC 1870 6: with SIZE declared, a recipient whose mailbox cannot take that much is
            # refused here, before the client sends the message; without it, a full one.
            declared = envelope.params.size
            refusal = await self._drop_unfit(resolution, declared)
        except StoreError:
            return R.STORE_UNAVAILABLE
        if refusal is not None:
            log.info("event=rcpt_full client=%s rcpt=%s size=%d", client.ip, recipient, declared)
            return refusal
        return Recipient(recipient, resolution)

    async def _recipient(self, client: Client, address: str) -> tuple[str, Resolution] | str:
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
                log.info("event=rcpt_unknown client=%s rcpt=%s", client.ip, recipient)
                return R.UNKNOWN_USER
            return recipient, resolution
        if client.session.user is not None and self.mode is not Mode.MX:
            return recipient, Resolution(remote=[recipient])
        log.info("event=relay_denied client=%s rcpt=%s", client.ip, recipient)
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
    def ended(self, client: Client) -> None:
        """The connection (or, at STARTTLS, its session) is over: its login's place among the
        account's sessions is free."""
        ticket, client.ticket = client.ticket, None
        if ticket is not None:
            ticket.close()

    async def data(
        self,
        client: Client,
        envelope: Envelope[Resolution],
        data: bytes,
        spooled: SpoolFile | None,
        abort: Callable[[], None],
        screened: Screened | None = None,
    ) -> str:
        """Store the message: `data`, or when it was too large to keep in memory as it came,
        `spooled`. `abort` drops the connection without a reply (see CommitInDoubt).
        `screened`: what `screen` said of it, when the caller asked already."""
        # A recipient given twice is one recipient: the last RCPT's route counts.
        resolved = {r.address: r.route for r in envelope.recipients}
        if not resolved:
            return R.BAD_SEQUENCE
        sender = envelope.sender
        session = client.session
        if screened is None:
            checked = await self.screen(client, envelope, data, spooled)
            if isinstance(checked, str):
                return checked
            screened = checked
        header, strip, junk = screened.header, screened.strip, screened.junk
        stamp = self._stamp(client, envelope, resolved)
        prefix = stamp.received + header
        size = len(prefix) + (len(data) if spooled is None else spooled.size)
        size -= sum(end - start for start, end in strip)
        try:
            if self.mode is not Mode.MX:
                limit = MAX_HEADER_BLOCK + 4
                head = data[:limit] if spooled is None else await spooled.head(limit)
                refusal = await self._check_originators(client, head)
                if refusal is not None:
                    return refusal
            refusal = await self._fit_quota(client, sender, resolved, size)
        except StoreError:
            return R.STORE_UNAVAILABLE
        if refusal is not None:
            return refusal
        taken = await self._count_sending(client, len(resolved))
        if isinstance(taken, str):
            return taken
        request_at = self.clock()
        try:
            # A spooled message is in memory only from here to the end of the store write.
            # One sender (a user, or a client network on the MX) holds a share of the budget.
            user = session.user
            owner = user if user is not None else self.networks.of(client.ip)
            async with self.memory.hold(0 if spooled is None else size, owner=owner):
                if spooled is None:
                    body: bytes | bytearray = prefix + cut(data, strip)
                else:
                    body = await spooled.read(prefix)
                    spooled.close()  # the octets are in memory now: free the disk at once
                    for start, end in sorted(strip, reverse=True):
                        del body[len(prefix) + start : len(prefix) + end]  # in place, no copy
                request = stamped_request(
                    stamp=stamp,
                    sender=sender,
                    body=body,
                    resolved=resolved,
                    client_ip=client.ip,
                    authenticated=user,
                    now=self.clock(),
                    junk=junk,
                )
                result = await self.store.accept(request)
        except OverQuota as exc:
            # A concurrent delivery took the room between the check above and this commit; the
            # store refused the whole transaction, so nothing is stored and the sender retries.
            log.info("event=accept_over_quota client=%s error=%s", client.ip, exc)
            await self._uncount(taken)
            return R.MAILBOX_NO_ROOM
        except CommitInDoubt as exc:
            # The message may be stored: a 451 would say it is not. No answer at all, as after a
            # crash, tells the client the truth: it retries, and at worst the recipient gets a
            # duplicate (RFC 5321 6.1) rather than a loss.
            log.error("event=accept_in_doubt client=%s error=%s", client.ip, exc)
            abort()
            return R.STORE_UNAVAILABLE
        except StoreUnavailable as exc:
            log.error("event=accept_failed client=%s error=%s", client.ip, exc)
            await self._uncount(taken)
            return R.STORE_UNAVAILABLE
        except StoreError as exc:
            log.error("event=accept_failed client=%s error=%s", client.ip, exc)
            await self._uncount(taken)
            return R.STORE_UNAVAILABLE
        self.accepted += 1
        if self.metrics is not None:
            self.metrics.message_accepted(self.mode.value, size)
            # Local copies were delivered in the acceptance transaction: their delay is its time.
            for _ in range(result.delivered):
                self.metrics.delivered("local", self.clock() - request_at)
        log.info(
            "event=accepted id=%s client=%s from=<%s> rcpts=%d delivered=%d queued=%d size=%d",
            result.queue_id,
            client.ip,
            sender,
            len(resolved),
            result.delivered,
            result.queued,
            size,
        )
        return R.queued(result.queue_id)

    async def screen(
        self,
        client: Client,
        envelope: Envelope[Resolution],
        data: bytes,
        spooled: SpoolFile | None,
    ) -> Screened | str:
        """The checks of incoming mail (nothing to add or cut without a verifier), or the
        reply that refuses or defers the message. The connection calls this before it takes
        a store slot of the overload gate: time spent waiting on other domains' DNS is not
        the store's latency and must not hold a slot."""
        verifier = self.verifier
        recipients = {r.address for r in envelope.recipients}
        if verifier is None or not recipients:
            return UNSCREENED  # (no recipient: `data` answers the bad sequence)
        helo = client.session.helo or ""
        try:
            if spooled is None:
                verdict = await verifier.check(
                    ip=client.ip, helo=helo, sender=envelope.sender, message=data
                )
            else:
                # DKIM hashes the whole message: a spooled one is read for it, within the
                # sender's share of the memory budget, and dropped before the store read.
                owner = self.networks.of(client.ip)
                async with self.memory.hold(spooled.size, owner=owner):
                    message = await spooled.head(spooled.size)
                    verdict = await verifier.check(
                        ip=client.ip, helo=helo, sender=envelope.sender, message=message
                    )
                    del message
        except StoreError:
            return R.STORE_UNAVAILABLE
        settings = verifier.settings
        actions = {rcpt: verdict.action(rcpt.rpartition("@")[2], settings) for rcpt in recipients}
        author = _DOMAIN_TEXT.sub("", verdict.dmarc.from_domain)[:100] or "the author's domain"
        if Action.DEFER in actions.values():
            log.info("event=verify_deferred client=%s from_domain=%s", client.ip, author)
            return R.dmarc_deferred(author)
        if all(a is Action.REFUSE for a in actions.values()):
            log.info("event=dmarc_rejected client=%s from_domain=%s", client.ip, author)
            return R.dmarc_refused(author)
        junk = frozenset(r for r, a in actions.items() if a in (Action.JUNK, Action.REFUSE))
        return Screened(verdict.header, verdict.strip, junk)

    async def _count_sending(self, client: Client, recipients: int) -> Taken | str | None:
        """Count the message against its user's hourly bound before it is stored (None: no
        bound here), or the refusal. A commit in doubt keeps its count: the message may be
        stored."""
        user = client.session.user
        if self.limit is None or client.usage is None or user is None:
            return None
        try:
            return await self.limit.take(user, client.usage, recipients, client.ip)
        except StoreError:
            return R.STORE_UNAVAILABLE

    async def _uncount(self, taken: Taken | str | None) -> None:
        if self.limit is not None and isinstance(taken, Taken):
            await self.limit.give_back(taken)

    def _stamp(
        self, client: Client, envelope: Envelope[Resolution], resolved: dict[str, Resolution]
    ) -> Stamp:
        session = client.session
        protocol = protocol_name(
            esmtp=session.esmtp,
            tls=session.tls,
            authenticated=session.user is not None,
            utf8=envelope.params.smtputf8,
        )
        return new_stamp(
            recipients=list(resolved),
            helo=session.helo or "",
            client_ip=client.ip,
            hostname=self.hostname,
            protocol=protocol,
            now=self.clock(),
        )

    async def _check_originators(self, client: Client, head: bytes) -> str | None:
        """Submission: every address in the header From: and Sender: is the user's (RFC 6409 8
        lets the MSA check them); a refusal otherwise. `head` is the start of the message."""
        user = client.session.user
        if user is None:
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
        self, client: Client, sender: str, resolved: dict[str, Resolution], size: int
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
                    client.ip,
                    recipient,
                    size,
                )
                refusals.append(refusal)
        if not refusals:
            return None
        if len(refusals) == len(resolved) and set(refusals) == {R.MESSAGE_OVER_QUOTA}:
            return R.MESSAGE_OVER_QUOTA
        return R.MAILBOX_NO_ROOM


def _same_identity(a: str, b: str) -> bool:
    """RFC 4616: the authorization identity names the authentication identity itself."""
    try:
        return normalize(a) == normalize(b)
    except AddressError:
        return a == b
