"""The SMTP client that hands queued mail to other servers (aiosmtplib underneath).

One call, `RemoteClient.deliver`, sends one message to several recipients at one destination in a
single SMTP transaction and returns a result per recipient (RCPT answers differ per recipient; the
reply to the final dot applies to every recipient the server accepted).

The way there, as MTAs do it:
- route: a transport override (`transport.py`) or the domain's MX hosts (`mx.py`); each host's
  addresses in turn until one answers with a 220 greeting (a refused connection, a timeout or a
  4xx/5xx greeting moves on to the next); at most `MAX_ADDRESSES` addresses per attempt;
- EHLO (HELO when EHLO is refused); STARTTLS when offered (`tls = "may"`: certificates are not
  verified, and a failed handshake falls back to plaintext, as Postfix's "may" does; "encrypt"
  requires TLS, "verify" requires a certificate valid for the MX name, "none" never uses it);
- the server's extensions: SIZE (a message over its limit fails at once, 5.3.4), 8BITMIME
  (BODY=8BITMIME for 8-bit bodies), SMTPUTF8 (needed for non-ASCII addresses: without it they fail,
  5.6.7, RFC 6531 3.2; asked for when the header section is UTF-8);
- a mail loop (the server greets with our own name) fails permanently, 5.4.6.

Per destination, DANE and MTA-STS raise `tls` (`tls_policy.py` decides per MX host): what they
require and fails is deferred (4.7.5), never sent in plaintext; under an MTA-STS `testing`
policy failures are counted and delivery goes on as `tls` says. Each session under a policy is
counted for TLS reports (`tlsrpt.py`). A transport override is the operator's route and gets
neither; nor does the mail of `unreported_senders` (the TLS reports themselves: RFC 8460 3 wants
them delivered despite TLS failures, and never counted in a report).

Connections are kept for `idle_timeout` after a transaction and reused for the next message to the
same destination; a reused connection the server closed meanwhile is replaced once, transparently.
At most `concurrency` transactions run at once per destination.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import os
import ssl
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import aiosmtplib

from mailfort.delivery import tlsrpt
from mailfort.delivery.dane import TLSA_INVALID
from mailfort.delivery.mtasts import MtaSts
from mailfort.delivery.mx import DnsError, MxResolver
from mailfort.delivery.tls_policy import HostTls, TlsPolicies, Unusable, failure_kind, peer_chain
from mailfort.delivery.transport import Nexthop, TransportMap
from mailfort.protocol.smtp.extensions import parse_ehlo
from mailfort.protocol.smtp.replies import enhanced_status

log = logging.getLogger("mailfort.delivery")

MAX_ADDRESSES = 5  # addresses tried per attempt (Postfix smtp_mx_address_limit)
QUIT_TIMEOUT = 5.0

STATUS_CONNECT = "4.4.1"  # no answer from host
STATUS_LOST = "4.4.2"  # bad connection
STATUS_LOOP = "5.4.6"  # routing loop detected
STATUS_TOO_BIG = "5.3.4"  # message too big for system
STATUS_NEEDS_UTF8 = "5.6.7"  # non-ASCII addresses not permitted (RFC 6531)
STATUS_TLS = "4.7.5"  # cryptographic failure


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"  # temporary: try again later
    FAILED = "failed"  # permanent: bounce


class Reach(enum.Enum):
    """Who answered an attempt: what its outcome says about whether *we* can reach the world.

    A failure is the platform's only when nobody outside could have caused it. A server that
    refuses, or a domain that does not exist, is an answer: the platform worked to get it.
    """

    SERVER = "server"  # an SMTP server answered: delivered, refused, or broke off mid-way
    NO_DOMAIN = "no_domain"  # the domain's DNS says it takes no mail (NXDOMAIN, null MX, no A)
    NOBODY = "nobody"  # no answer: a DNS failure or no connection (theirs or ours: queue/reach)
    LOCAL = "local"  # our own name server answers no lookup at all: ours


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientResult:
    recipient: str
    outcome: Outcome
    status: str  # enhanced status code (RFC 3463)
    text: str  # one line for logs and `queue list`: what happened, where
    remote_mta: str | None = None  # the host that answered, for the DSN's Remote-MTA
    diagnostic: str | None = None  # "smtp; 550 5.1.1 ..." when a server answered (RFC 3464)
    # The server answered for this recipient alone (RCPT TO): a 450 greylisting or a full
    # mailbox says nothing about whether the destination works.
    per_recipient: bool = False
    reach: Reach = Reach.SERVER
    remote_address: str | None = None  # the address of the server that answered, if one did


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a group of recipients goes; connections and limits are shared per `key`."""

    key: str
    domain: str
    nexthop: Nexthop | None  # a transport override; None: the domain's MX
    # The operator's smarthost for all mail (transport "*"): its failures are the platform's.
    relay: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSettings:
    helo: str
    port: int = 25
    tls: str = "may"
    connect_timeout: float = 30.0
    command_timeout: float = 300.0
    concurrency: int = 10
    idle_timeout: float = 5.0
    max_session_age: float = 300.0
    # The local address outgoing connections come from ("": the kernel's choice), on a host
    # with several addresses: the one its PTR and the senders' SPF records name.
    source_address: str = ""
    ca_file: str = ""  # CAs that verify MX certificates; empty: the system's


class _HopFailure(Exception):
    """No usable session to the destination (DNS, connect, greeting, EHLO, TLS)."""

    def __init__(
        self,
        status: str,
        text: str,
        *,
        reach: Reach,
        remote_mta: str | None = None,
        diagnostic: str | None = None,
        address: str | None = None,
    ) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.reach = reach
        self.remote_mta = remote_mta
        self.diagnostic = diagnostic
        self.address = address

    def result(self, recipient: str) -> RecipientResult:
        return RecipientResult(
            recipient=recipient,
            outcome=Outcome.FAILED if self.status.startswith("5") else Outcome.DEFERRED,
            status=self.status,
            text=self.text,
            remote_mta=self.remote_mta,
            diagnostic=self.diagnostic,
            reach=self.reach,
            remote_address=self.address,
        )


def _reach_of(failures: Sequence[_HopFailure]) -> tuple[Reach, str | None]:
    """What a whole attempt reached, and the address that answered: a server that answered
    counts first (a refusal is an answer), then our own failure, then silence."""
    for reach in (Reach.SERVER, Reach.LOCAL, Reach.NOBODY):
        for failure in failures:
            if failure.reach is reach:
                return reach, failure.address
    return Reach.NO_DOMAIN, None


class _Stale(Exception):
    """A reused connection was gone before anything was sent: open a fresh one."""


def _one_line(message: str) -> str:
    return " ".join(message.split())[:900]


def _outcome(code: int) -> Outcome:
    if 200 <= code < 300:
        return Outcome.DELIVERED
    if 500 <= code < 600:
        return Outcome.FAILED
    return Outcome.DEFERRED  # 4xx, and anything out of protocol: try again


@dataclass(slots=True, eq=False)
class _Session:
    smtp: aiosmtplib.SMTP
    host: str
    address: str
    port: int
    tls: bool
    opened: float
    idle_since: float = 0.0
    size_limit: int | None = None  # SIZE with a number > 0
    has_size: bool = False
    eightbit: bool = False
    smtputf8: bool = False
    transactions: int = 0
    # Opened under the destination's MTA-STS/DANE policy: reusable for any mail (a session
    # opened for an unreported sender, without the policy, is reused only for such mail).
    checked: bool = True
    # The server's EHLO extensions (protocol/smtp/extensions.parse_ehlo); none after HELO.
    extensions: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.host}[{self.address}]"

    def learn_extensions(self) -> None:
        ext = self.extensions
        self.has_size = "size" in ext
        limit = ext.get("size", "").strip()
        self.size_limit = int(limit) if limit.isdigit() and int(limit) > 0 else None
        self.eightbit = "8bitmime" in ext
        self.smtputf8 = "smtputf8" in ext

    def reply(self, recipient: str, code: int, message: str, command: str) -> RecipientResult:
        line = _one_line(message)
        return RecipientResult(
            recipient=recipient,
            outcome=_outcome(code),
            status=enhanced_status(code, line),
            text=f"host {self.label} said: {code} {line} (in reply to {command} command)",
            remote_mta=self.host,
            diagnostic=f"smtp; {code} {line}",
            per_recipient=command == "RCPT TO",
            remote_address=self.address,
        )


@dataclass(slots=True)
class _Gate:
    """Per destination: the concurrency limit and the idle connections."""

    limit: asyncio.Semaphore
    idle: list[_Session] = field(default_factory=list)
    users: int = 0
    reaper: asyncio.TimerHandle | None = None


def _tls_context(verify: bool, ca_file: str = "") -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file or None)
    if not verify:
        # Like every MTA's opportunistic TLS: encryption against passive eavesdropping; MX
        # certificates are too often self-signed or for another name to insist on them.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _address_literal(domain: str) -> str | None:
    """`[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 4.1.3) as an address, else None."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    text = domain[1:-1]
    if text.lower().startswith("ipv6:"):
        text = text[5:]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


class RemoteClient:
    def __init__(
        self,
        settings: ClientSettings,
        *,
        resolver: MxResolver,
        transports: TransportMap | None = None,
        mta_sts: MtaSts | None = None,
        dane: bool = False,
        counter: tlsrpt.TlsCounter | None = None,
        unreported_senders: Collection[str] = (),
    ) -> None:
        self.settings = settings
        self.resolver = resolver
        self.transports = transports or TransportMap({})
        self.policies = TlsPolicies(
            default=settings.tls, resolver=resolver, mta_sts=mta_sts, dane=dane, counter=counter
        )
        self.unreported_senders = frozenset(s.lower() for s in unreported_senders)
        self._tls = _tls_context(False)
        self._verify_tls = _tls_context(True, settings.ca_file)
        self._gates: dict[str, _Gate] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.sessions_opened = 0
        self.transactions = 0
        self.reused = 0

    # -- routing -------------------------------------------------------------------------------
    def destination(self, domain: str) -> Destination:
        domain = domain.lower().rstrip(".")
        nexthop = self.transports.route(domain)
        if nexthop is not None:
            relay = nexthop == self.transports.catch_all
            return Destination(key=f"[{nexthop}]", domain=domain, nexthop=nexthop, relay=relay)
        return Destination(key=domain, domain=domain, nexthop=None)

    async def _hops(self, dest: Destination) -> list[tuple[str, int]]:
        if dest.nexthop is not None:
            return [(dest.nexthop.host, dest.nexthop.port)]
        literal = _address_literal(dest.domain)
        if literal is not None:
            return [(literal, self.settings.port)]
        try:
            hosts = await self.resolver.mx_hosts(dest.domain)
        except DnsError as exc:
            raise await self._dns_failure(exc) from None
        return [(h.name, self.settings.port) for h in hosts]

    async def _dns_failure(self, exc: DnsError) -> _HopFailure:
        """A failed lookup as a hop failure: the domain's own answer when permanent; when
        temporary, ours if our name server answers nothing at all, else the domain's DNS."""
        if exc.permanent:
            reach = Reach.NO_DOMAIN
        else:
            reach = Reach.NOBODY if await self.resolver.working() else Reach.LOCAL
        return _HopFailure(exc.status, exc.text, reach=reach)

    # -- delivery -----------------------------------------------------------------------------
    async def deliver(
        self,
        dest: Destination,
        sender: str,
        recipients: Sequence[str],
        body: bytes,
        *,
        on_data: Callable[[], None] | None = None,
    ) -> list[RecipientResult]:
        """Send `body` from `sender` to `recipients` (all at `dest`); a result per recipient.

        `on_data` is called when the message is about to go out (the DATA command): from then on
        the server may have it, so a transaction abandoned before its answer may deliver twice
        (RFC 5321 6.1); before that, giving up costs nothing."""
        gate = self._gates.get(dest.key)
        if gate is None:
            gate = self._gates[dest.key] = _Gate(asyncio.Semaphore(self.settings.concurrency))
        gate.users += 1
        try:
            async with gate.limit:
                return await self._deliver(gate, dest, sender, recipients, body, on_data)
        finally:
            gate.users -= 1
            if gate.users == 0 and not gate.idle:
                if gate.reaper is not None:
                    gate.reaper.cancel()
                self._gates.pop(dest.key, None)

    async def _deliver(
        self,
        gate: _Gate,
        dest: Destination,
        sender: str,
        recipients: Sequence[str],
        body: bytes,
        on_data: Callable[[], None] | None,
    ) -> list[RecipientResult]:
        checked = sender.lower() not in self.unreported_senders
        session = self._take_idle(gate, checked)
        if session is not None:
            try:
                results = await self._transaction(
                    session, sender, recipients, body, reused=True, on_data=on_data
                )
            except _Stale:
                session = None
            else:
                self.reused += 1
                self._release(gate, dest, session)
                return results
        try:
            session = await self._open(dest, checked)
        except _HopFailure as failure:
            log.info("event=remote_unreachable dest=%s error=%s", dest.key, failure.text)
            return [failure.result(r) for r in recipients]
        results = await self._transaction(
            session, sender, recipients, body, reused=False, on_data=on_data
        )
        self._release(gate, dest, session)
        return results

    def _take_idle(self, gate: _Gate, checked: bool) -> _Session | None:
        now = asyncio.get_running_loop().time()
        keep: list[_Session] = []
        found: _Session | None = None
        while gate.idle and found is None:
            session = gate.idle.pop()  # the most recently used one
            fresh = (
                now - session.idle_since < self.settings.idle_timeout
                and now - session.opened < self.settings.max_session_age
            )
            if not (fresh and session.smtp.is_connected):
                self._close_later(session)
            elif checked and not session.checked:
                keep.append(session)
            else:
                found = session
        gate.idle.extend(reversed(keep))
        return found

    def _release(self, gate: _Gate, dest: Destination, session: _Session) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not session.smtp.is_connected or now - session.opened >= self.settings.max_session_age:
            self._close_later(session)
            return
        session.idle_since = now
        gate.idle.append(session)
        if gate.reaper is None:
            gate.reaper = loop.call_later(self.settings.idle_timeout, self._reap, dest.key)

    def _reap(self, key: str) -> None:
        """Close the connections of `key` that were idle for `idle_timeout`."""
        gate = self._gates.get(key)
        if gate is None:
            return
        gate.reaper = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        keep = []
        for session in gate.idle:
            if now - session.idle_since >= self.settings.idle_timeout - 0.01:
                self._close_later(session)
            else:
                keep.append(session)
        gate.idle = keep
        if keep:
            due = min(s.idle_since for s in keep) + self.settings.idle_timeout - now
            gate.reaper = loop.call_later(max(due, 0.01), self._reap, key)
        elif gate.users == 0:
            del self._gates[key]

    def _close_later(self, session: _Session) -> None:
        task = asyncio.get_running_loop().create_task(self._quit(session))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _quit(session: _Session) -> None:
        try:
            if session.smtp.is_connected:
                await session.smtp.quit(timeout=QUIT_TIMEOUT)
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            pass
        finally:
            session.smtp.close()

    async def close(self) -> None:
        """QUIT every idle connection (at shutdown)."""
        for gate in list(self._gates.values()):
            if gate.reaper is not None:
                gate.reaper.cancel()
                gate.reaper = None
            idle, gate.idle = gate.idle, []
            for session in idle:
                self._close_later(session)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self.policies.mta_sts is not None:
            await self.policies.mta_sts.close()

    # -- opening a session ----------------------------------------------------------------------
    async def _open(self, dest: Destination, checked: bool = True) -> _Session:
        hops = await self._hops(dest)
        # The destination's own policies apply to its MX, not to an operator's route.
        secured = checked and dest.nexthop is None and _address_literal(dest.domain) is None
        policy = await self.policies.destination(dest.domain) if secured else None
        failures: list[_HopFailure] = []
        tried = 0
        for host, port in hops:
            rule = HostTls(self.settings.tls)
            if secured:
                try:
                    rule = await self.policies.host(dest.domain, host, port, policy)
                except Unusable as unusable:
                    reach = Reach.NOBODY if unusable.dns else Reach.NO_DOMAIN
                    failures.append(_HopFailure(STATUS_TLS, unusable.text, reach=reach))
                    continue
            try:
                addresses = await self.resolver.addresses(host)
            except DnsError as exc:
                failures.append(await self._dns_failure(exc))
                continue
            for address in addresses:
                if tried >= MAX_ADDRESSES:
                    break
                tried += 1
                try:
                    session = await self._connect(host, address, port, rule, tls_allowed=True)
                    session.checked = checked
                    return session
                except _HopFailure as failure:
                    log.info("event=remote_host_failed dest=%s error=%s", dest.key, failure.text)
                    failures.append(failure)
        if not failures:
            raise _HopFailure(
                STATUS_CONNECT, f"no host to try for {dest.domain}", reach=Reach.NO_DOMAIN
            )
        last = failures[-1]
        if not all(f.status.startswith("5") for f in failures) and last.status.startswith("5"):
            # Some host failed only temporarily: the whole attempt is temporary.
            last = next(f for f in reversed(failures) if not f.status.startswith("5"))
        # One host that answered shows the way there works, whichever failure is reported.
        last.reach, last.address = _reach_of(failures)
        raise last

    async def _connect(
        self, host: str, address: str, port: int, rule: HostTls, *, tls_allowed: bool
    ) -> _Session:
        settings = self.settings
        label = f"{host}[{address}]"
        smtp = aiosmtplib.SMTP(
            hostname=address,
            port=port,
            local_hostname=settings.helo,
            timeout=settings.command_timeout,
            start_tls=False,
            validate_certs=rule.mode == "verify",
            source_address=(settings.source_address, 0) if settings.source_address else None,
        )
        try:
            greeting = await smtp.connect(timeout=settings.connect_timeout)
        except aiosmtplib.SMTPConnectResponseError as exc:
            smtp.close()
            raise self._refused(
                label, host, address, exc.code, exc.message, "initial greeting"
            ) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise _HopFailure(
                STATUS_CONNECT,
                f"connect to {label}:{port}: {_reason(exc)}",
                reach=Reach.NOBODY,
                address=address,
            ) from None
        loop = asyncio.get_running_loop()
        session = _Session(smtp, host, address, port, tls=False, opened=loop.time())
        self.sessions_opened += 1
        try:
            self._check_loop(session, greeting.message)
            await self._hello(session)
            if rule.mode != "none":
                offered = "starttls" in session.extensions
                if not offered and rule.mode != "may":
                    self.policies.session(rule, address, tlsrpt.STARTTLS_NOT_SUPPORTED)
                    if not (rule.testing and settings.tls in ("may", "none")):
                        raise _HopFailure(
                            STATUS_TLS,
                            f"TLS is required, but host {label} does not offer STARTTLS",
                            reach=Reach.SERVER,
                            address=address,
                        )
                if offered and tls_allowed:
                    context = self._verify_tls if rule.mode == "verify" else self._tls
                    try:
                        await smtp.starttls(server_hostname=host, tls_context=context)
                        session.tls = True
                        # A refused handshake can surface only here (TLS 1.3 client certs).
                        await self._hello(session)
                    except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
                        self.policies.session(rule, address, failure_kind(exc))
                        if rule.testing:
                            # MTA-STS testing: counted; delivery goes on as `tls` says.
                            smtp.close()
                            plain = HostTls(settings.tls)
                            return await self._connect(host, address, port, plain, tls_allowed=True)
                        if rule.mode != "may":
                            raise _HopFailure(
                                STATUS_TLS,
                                f"TLS with {label} failed: {_reason(exc)}",
                                reach=Reach.SERVER,
                                address=address,
                            ) from None
                        smtp.close()
                        log.info("event=starttls_failed host=%s error=%s", label, _reason(exc))
                        return await self._connect(host, address, port, rule, tls_allowed=False)
                    dane = rule.dane
                    if dane and dane.authenticated and not dane.matches(_chain(smtp)):
                        self.policies.session(rule, address, TLSA_INVALID)
                        raise _HopFailure(
                            STATUS_TLS,
                            f"the certificate of {label} matches no TLSA record (DANE)",
                            reach=Reach.SERVER,
                            address=address,
                        )
                    self.policies.session(rule, address, "")
        except _HopFailure:
            await self._quit(session)
            raise
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise _HopFailure(
                STATUS_LOST,
                f"lost connection with {label} during the greeting: {_reason(exc)}",
                reach=Reach.SERVER,
                address=address,
            ) from None
        session.learn_extensions()
        log.debug("event=remote_connected host=%s tls=%s", label, session.tls)
        return session

    def _check_loop(self, session: _Session, greeting: str) -> None:
        words = greeting.split()
        if words and words[0].lower().rstrip(".") == self.settings.helo.lower():
            raise _HopFailure(
                STATUS_LOOP,
                f"mail loops back to myself: host {session.label} greets as {words[0]}",
                reach=Reach.SERVER,
                remote_mta=session.host,
                address=session.address,
            )

    async def _hello(self, session: _Session) -> None:
        try:
            reply = await session.smtp.ehlo()
            session.extensions = parse_ehlo(reply.message)
        except aiosmtplib.SMTPHeloError as exc:
            if exc.code == 421:
                raise self._refused(
                    session.label, session.host, session.address, exc.code, exc.message, "EHLO"
                ) from None
            session.extensions = {}
            try:
                reply = await session.smtp.helo()
            except aiosmtplib.SMTPHeloError as again:
                raise self._refused(
                    session.label,
                    session.host,
                    session.address,
                    again.code,
                    again.message,
                    "HELO",
                ) from None
        self._check_loop(session, reply.message)

    @staticmethod
    def _refused(
        label: str, host: str, address: str, code: int, message: str, command: str
    ) -> _HopFailure:
        line = _one_line(message)
        status = enhanced_status(code, line)
        if not status.startswith("5"):
            status = status if status.startswith("4") else STATUS_CONNECT
        return _HopFailure(
            status,
            f"host {label} refused to talk to me: {code} {line} (in reply to {command})",
            reach=Reach.SERVER,
            remote_mta=host,
            diagnostic=f"smtp; {code} {line}",
            address=address,
        )

    # -- one transaction ------------------------------------------------------------------------
    async def _transaction(
        self,
        session: _Session,
        sender: str,
        recipients: Sequence[str],
        body: bytes,
        *,
        reused: bool,
        on_data: Callable[[], None] | None = None,
    ) -> list[RecipientResult]:
        def fail_all(status: str, text: str) -> list[RecipientResult]:
            return [
                RecipientResult(
                    recipient=r,
                    outcome=Outcome.FAILED,
                    status=status,
                    text=text,
                    remote_mta=session.host,
                    remote_address=session.address,
                )
                for r in recipients
            ]

        size = len(body)
        if session.size_limit is not None and size > session.size_limit:
            return fail_all(
                STATUS_TOO_BIG,
                f"message size {size} exceeds size limit {session.size_limit}"
                f" of server {session.label}",
            )
        utf8_addresses = not sender.isascii() or not all(r.isascii() for r in recipients)
        if utf8_addresses and not session.smtputf8:
            return fail_all(
                STATUS_NEEDS_UTF8,
                f"host {session.label} does not offer SMTPUTF8, which non-ASCII addresses need",
            )
        options: list[str] = []
        if session.has_size:
            options.append(f"SIZE={size}")
        eight_bit = not body.isascii()
        if eight_bit and session.eightbit:
            options.append("BODY=8BITMIME")
        if session.smtputf8 and (utf8_addresses or (eight_bit and not _headers(body).isascii())):
            options.append("SMTPUTF8")
        smtp = session.smtp
        results: dict[str, RecipientResult] = {}
        stage = "MAIL FROM"
        self.transactions += 1
        session.transactions += 1
        try:
            # The paths go out as stored (normalized at acceptance), not re-parsed by aiosmtplib's
            # mail()/rcpt(); execute_command still refuses CR/LF in them.
            mail_args = [b"FROM:<" + sender.encode() + b">", *(o.encode() for o in options)]
            reply = await smtp.execute_command(b"MAIL", *mail_args)
            if reply.code == 421 and reused:
                raise _Stale()  # an idle connection the server timed out: not this message's fault
            if reply.code != 250:
                await self._rset(session)
                return [session.reply(r, reply.code, reply.message, stage) for r in recipients]
            accepted: list[str] = []
            stage = "RCPT TO"
            for recipient in recipients:
                reply = await smtp.execute_command(b"RCPT", b"TO:<" + recipient.encode() + b">")
                if reply.code in (250, 251):
                    accepted.append(recipient)
                else:
                    results[recipient] = session.reply(recipient, reply.code, reply.message, stage)
            if not accepted:
                await self._rset(session)
                return [results[r] for r in recipients]
            stage = "DATA"
            if on_data is not None:
                on_data()
            try:
                reply = await smtp.data(body)
                code, message = reply.code, reply.message
            except aiosmtplib.SMTPDataError as exc:
                code, message = exc.code, exc.message
            for recipient in accepted:
                results[recipient] = session.reply(recipient, code, message, "end of DATA")
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            if reused and stage == "MAIL FROM" and not isinstance(exc, asyncio.TimeoutError):
                raise _Stale() from None
            what = "timed out" if isinstance(exc, asyncio.TimeoutError) else "lost connection"
            text = f"{what} with {session.label} while sending {stage}: {_reason(exc)}"
            for recipient in recipients:
                if recipient not in results:
                    results[recipient] = RecipientResult(
                        recipient=recipient,
                        outcome=Outcome.DEFERRED,
                        status=STATUS_LOST,
                        text=text,
                        remote_mta=session.host,
                        remote_address=session.address,
                    )
        return [results[r] for r in recipients]

    @staticmethod
    async def _rset(session: _Session) -> None:
        try:
            await session.smtp.rset()
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            session.smtp.close()


def _chain(smtp: aiosmtplib.SMTP) -> list[bytes]:
    transport = smtp.transport
    return peer_chain(transport.get_extra_info("ssl_object") if transport is not None else None)


def _headers(body: bytes) -> bytes:
    end = body.find(b"\r\n\r\n")
    return body if end < 0 else body[:end]


def _reason(exc: BaseException) -> str:
    """A short cause: "Connection refused", "timed out", "421 4.3.2 shutting down"."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {_one_line(exc.message)}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        # Its errno is OpenSSL's error class (1), which strerror would call "not permitted".
        return f"certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"TLS error: {exc.reason}"
    cause = exc.__cause__ if isinstance(exc, aiosmtplib.SMTPConnectError) else exc
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno)  # asyncio's own strerror repeats the address
    return _one_line(str(exc) or type(exc).__name__)
