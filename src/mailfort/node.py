"""Wiring: one node from a config — store, listeners, workers — and its orderly shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import signal
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mailfort.auth.known import DAY, KnownNetworks
from mailfort.auth.login import Logins
from mailfort.auth.passwords import Verifier
from mailfort.auth.throttle import AuthThrottle, ThrottleLimits
from mailfort.cluster.clock import StoreClock
from mailfort.cluster.maildrop import StoreMaildropLocks
from mailfort.cluster.membership import Membership
from mailfort.config import Config, OverloadConfig, parse_hostport
from mailfort.errors import StoreError
from mailfort.mail.directory import Directory
from mailfort.metrics import NodeMetrics
from mailfort.network import Networks
from mailfort.ops.hostname import warn_about_helo
from mailfort.overload import BreakerConfig, RetryBudgetConfig
from mailfort.queue.local_worker import LocalWorker
from mailfort.queue.remote_worker import Politeness, RemoteWorker
from mailfort.queue.tls_reports import TlsReports
from mailfort.server.account_sessions import AccountSessions
from mailfort.server.admission import ConnectionLimiter
from mailfort.server.imap.cache import MetaCache
from mailfort.server.imap.connection import Connection as ImapConnection
from mailfort.server.imap.connection import ImapLimits, start_imap
from mailfort.server.imap.session import ImapContext
from mailfort.server.listener import Listener as ServerListener
from mailfort.server.listener import RefusalBudget
from mailfort.server.memory_budget import MemoryBudget
from mailfort.server.offload import CpuPool
from mailfort.server.overload import OverloadGate
from mailfort.server.pop3 import Pop3Context, Pop3Limits, start_pop3
from mailfort.server.pop3_maildrop import SizeCache
from mailfort.server.smtp import start_smtp
from mailfort.server.smtp_policy import Mode, SmtpPolicy
from mailfort.server.spool import Spool
from mailfort.server.submission_limit import SubmissionLimit
from mailfort.server.tls import ensure_self_signed, server_context
from mailfort.status.margin import MarginWatch
from mailfort.status.notices import NoticeBoard
from mailfort.status.repository import StatusRepository
from mailfort.status.service import StatusService
from mailfort.store import open_store
from mailfort.store.api import Store
from mailfort.trust.dkim_check import Offload
from mailfort.trust.incoming import Verifier as IncomingVerifier
from mailfort.trust.outbound import KeyCache, Outbound
from mailfort.trust.srs import Srs
from mailfort.wellknown import autoconfig, autodiscover
from mailfort.wellknown.client_settings import ClientDirectory, client_settings

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from mailfort.status.web.server import HttpListener

log = logging.getLogger("mailfort.node")

# Descriptors beyond the client connections: the store's files and connections, the log, spool
# files, outgoing SMTP connections, DNS.
_SPARE_DESCRIPTORS = 1024

_DESCRIPTIONS = {
    "smtp": "SMTP (MX): mail from other servers for local domains; no AUTH, no relaying",
    "submission": "submission: STARTTLS, then AUTH PLAIN/LOGIN; send to anyone",
    "submissions": "submission with implicit TLS: AUTH PLAIN/LOGIN; send to anyone",
    "imap": "IMAP4rev1/rev2: STARTTLS, then LOGIN or AUTHENTICATE PLAIN",
    "imaps": "IMAP4rev1/rev2 with implicit TLS",
    "pop3": "POP3: STLS, then USER/PASS or AUTH PLAIN",
    "pop3s": "POP3 with implicit TLS",
    "http": "status page, JSON, Atom feed, banner, /metrics (plain HTTP: put TLS in front)",
}


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    host: str
    port: int
    description: str


class Node:
    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self._binding = ""  # the listener being bound, for an error that names it
        self.store = store or open_store(config.store.url, config.data_dir)
        # Leases, locks, heartbeats and the times queued mail is due at are reckoned in the
        # store's time, so that who owns work never depends on the nodes' clocks agreeing.
        self.clock = StoreClock(self.store.clock)
        # What this node measures: /metrics for scrapers, a window in each heartbeat for status.
        self.metrics = NodeMetrics(window=config.status.window_seconds)
        # Status: the leader's evaluation loop, and the notices every login path shows.
        self.store.delay_threshold = config.status.notice_delay
        status_url = status_page_url(config)
        # Refreshed as often as the leader evaluates (at most every 5 s): a new notice shows
        # at the next login, not minutes later.
        self.notices = NoticeBoard(
            StatusRepository(self.store),
            url=status_url,
            refresh_seconds=min(5.0, max(0.1, config.status.evaluate_seconds)),
        )
        self.status_service = StatusService(
            self.store,
            node_name=config.node_name,
            settings=config.status,
            heartbeat_seconds=config.cluster.heartbeat_seconds,
            url=status_url,
            hostname=config.hostname,
            metrics=self.metrics,
            network_share=config.limits.max_network_share,
            clock=self.clock.now,
            margin=MarginWatch.from_config(
                config.capacity,
                window_seconds=config.status.window_seconds,
                heartbeat_seconds=config.cluster.heartbeat_seconds,
                metrics=self.metrics,
            ),
        )
        # The heartbeat's window carries the CPU this process spent (the live margin's measure).
        self._cpu_mark = time.process_time()
        limits = config.limits
        # Every per-client bound counts per address and per network (mailfort.network).
        self.networks = Networks(limits.network_prefix_v4, limits.network_prefix_v6)
        # Admission for store-bound work on every listener, adapting to measured latency.
        self.gate = OverloadGate(
            config.overload,
            self.metrics,
            store=self.store,
            client_share=limits.max_network_share,
        )
        # The CPU all listeners together may spend refusing connections (server/listener.py).
        self.refusal_budget = RefusalBudget(config.overload.refusal_cpu_share)
        # SRS for forwarded mail: its secret comes from the store at start (every node agrees).
        self.srs = Srs(max_age_days=config.srs.max_age_days)
        self.directory = Directory(
            self.store,
            config_domains=config.local_domains,
            delimiter=config.recipient_delimiter,
            postmaster=config.postmaster,
            senders=config.submission.senders,
            bounce_to=self.srs.reverse if config.srs.enabled else None,
        )
        self.limiter = self._limiter(limits.max_connections, limits.max_connections_per_ip)
        # Parsing and searching of message bodies runs here, off the loop every client shares.
        self.cpu = CpuPool(limits.cpu_threads)
        # SPF, DKIM, DMARC and ARC of mail arriving on the MX port; DKIM's hashing on `cpu`.
        self.incoming = incoming_checks(config, self.cpu.run)
        # Every protocol that takes a password logs in through this one object, so a guesser
        # is counted once per address, network and account whichever protocol it tries.
        self.verifier = Verifier(
            concurrency=config.auth.verify_concurrency,
            max_waiting=config.auth.verify_max_waiting,
            max_network_share=limits.max_network_share,
            metrics=self.metrics,
        )
        self.logins = Logins(
            store=self.store,
            verifier=self.verifier,
            throttle=AuthThrottle(
                ThrottleLimits(
                    per_address=limits.auth_failures_per_ip,
                    per_network=limits.auth_failures_per_network,
                    per_account=limits.auth_failures_per_account,
                    window=limits.auth_failure_window,
                    base_delay=limits.auth_failure_delay,
                ),
                networks=self.networks,
            ),
            known=KnownNetworks(self.store, remember_seconds=config.auth.known_network_days * DAY),
            metrics=self.metrics,
        )
        self.imap_limiter = self._limiter(
            limits.imap_max_connections, limits.imap_max_connections_per_ip
        )
        self.pop3_limiter = self._limiter(
            limits.pop3_max_connections, limits.pop3_max_connections_per_ip
        )
        # Message data in flight: on disk past a small threshold, in memory only within a
        # node-wide budget while the store writes it; and a bound on one account's sessions.
        self.spool = Spool(config.data_dir / "spool")
        self.memory = MemoryBudget(limits.max_message_bytes_in_memory)
        self.account_sessions = AccountSessions(limits.max_sessions_per_account)
        self.servers: list[ServerListener] = []
        self.imap_connections: set[ImapConnection] = set()
        self.listeners: list[Listener] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.remote_task: asyncio.Task[None] | None = None
        self.tls_reports: TlsReports | None = None
        self.http: HttpListener | None = None
        self.worker = LocalWorker(
            self.store,
            owner=config.node_name,
            lease_seconds=config.queue.lease_seconds,
            poll_interval=config.queue.poll_interval,
            retry_seconds=config.queue.local_retry_seconds,
            directory=self.directory,
            hostname=config.hostname,
            metrics=self.metrics,
            stressed=self.gate.stressed,
            clock=self.clock.now,
        )
        self.remote_worker = remote_worker(
            config,
            self.store,
            self.directory,
            outbound=outbound(config, self.store, self.directory, self.srs),
            metrics=self.metrics,
            stressed=self.gate.stressed,
            clock=self.clock.now,
        )
        # Set by SIGTERM/SIGINT (serve) or by an operator's drain seen at a heartbeat.
        self.stop_requested = asyncio.Event()
        self.maildrop_locks = StoreMaildropLocks(
            self.store,
            config.node_name,
            lease_seconds=config.cluster.maildrop_lease_seconds,
            clock=self.clock.now,
        )
        self.membership = Membership(
            self.store,
            config.node_name,
            interval=config.cluster.heartbeat_seconds,
            load=self.load,
            on_drain=self.stop_requested.set,
            clock=self.clock.now,
        )

    def _limiter(self, max_total: int, max_per_ip: int) -> ConnectionLimiter:
        return ConnectionLimiter(
            max_total=max_total,
            max_per_ip=max_per_ip,
            networks=self.networks,
            network_share=self.config.limits.max_network_share,
            network_rate=self.config.limits.max_connection_rate_per_network,
        )

    def load(self) -> dict[str, object]:
        """What the heartbeat reports: open connections per protocol, deliveries in flight."""
        cpu = time.process_time()
        self.metrics.process_cpu(cpu - self._cpu_mark)
        self._cpu_mark = cpu
        return {
            "smtp": self.limiter.total,
            "imap": self.imap_limiter.total,
            "pop3": self.pop3_limiter.total,
            "deliveries": self.remote_worker.in_flight if self.remote_worker else 0,
            "window": self.metrics.snapshot(),
        }

    def _raise_file_limit(self) -> None:
        """Every connection is a file descriptor. Below the connection bounds, accept() fails
        (EMFILE) before any bound refuses anyone, and a stranger who fills the descriptors turns
        every client of every listener away; so the soft limit goes up to what the bounds need
        (at most the hard limit), and a limit too low for them is said at start."""
        limits = self.config.limits
        from mailfort.status.web.server import MAX_CONNECTIONS as HTTP_CONNECTIONS

        needed = (
            limits.max_connections
            + limits.imap_max_connections
            + limits.pop3_max_connections
            + HTTP_CONNECTIONS
            + _SPARE_DESCRIPTORS
        )
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < needed:
            target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft != resource.RLIM_INFINITY and soft < needed:
            log.warning(
                "event=file_limit_low limit=%d needed=%d hint=raise the hard limit (ulimit -Hn,"
                " LimitNOFILE=) or lower [limits] max_connections, imap_max_connections,"
                " pop3_max_connections",
                soft,
                needed,
            )

    def _address(self, listener: str) -> tuple[str, int] | None:
        address = parse_hostport(f"listen.{listener}", getattr(self.config.listen, listener))
        if address is not None:
            self._binding = f"[listen] {listener} = {address[0]}:{address[1]}"
        return address

    def _serving(self, listener: str, host: str, server: ServerListener) -> None:
        self.servers.append(server)
        port = server.sockets[0].getsockname()[1]
        self.listeners.append(Listener(listener, host, port, _DESCRIPTIONS[listener]))

    def _tls_paths(self) -> tuple[Path, Path]:
        if self.config.tls.cert:
            return Path(self.config.tls.cert), Path(self.config.tls.key)
        return ensure_self_signed(self.config.data_dir / "tls", self.config.hostname)

    async def start(self) -> list[Listener]:
        self._raise_file_limit()
        self.spool.prepare()
        await self.store.open()
        await self.srs.load_secret(self.store)
        await self.clock.sync()
        self.tasks.append(asyncio.create_task(self.clock.run(), name="store-clock"))
        self.gate.start()
        cert, key = self._tls_paths()
        tls = server_context(cert, key)
        if self.config.tls.acme:
            await self._keep_certificate(tls)
        try:
            await self._start_listeners(tls)
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                raise
            # "Address already in use" alone does not say which of eight listeners it was.
            raise OSError(exc.errno, exc.strerror, self._binding) from None
        self.tasks.append(asyncio.create_task(self.worker.run(), name="local-worker"))
        if self.remote_worker is not None:
            self.remote_task = asyncio.create_task(self.remote_worker.run(), name="remote-worker")
            self.tasks.append(self.remote_task)
            self.tls_reports = tls_reports(self.config, self.store, self.remote_worker, self.clock)
            if self.tls_reports is not None:
                self.tasks.append(asyncio.create_task(self.tls_reports.run(), name="tls-reports"))
        await self.membership.join(
            [{"name": x.name, "host": x.host, "port": x.port} for x in self.listeners]
        )
        self.tasks.append(asyncio.create_task(self.membership.run(), name="heartbeat"))
        if self.config.status.enabled:
            self.tasks.append(asyncio.create_task(self.notices.run(), name="status-notices"))
            self.tasks.append(asyncio.create_task(self.status_service.run(), name="status"))
        await self._check_postmaster()
        return self.listeners

    async def _keep_certificate(self, tls: ssl.SSLContext) -> None:
        """ACME (certs/): the stored certificate replaces the self-signed one before the
        listeners open, and a task keeps it ordered, renewed and reloaded."""
        # Imported here: the ACME client (requests, pyOpenSSL) costs every other node ~0.2 s.
        from mailfort.certs.renewal import CertificateKeeper

        keeper = CertificateKeeper(
            store=self.store,
            context=tls,
            settings=self.config.tls,
            hostname=self.config.hostname,
            owner=self.config.node_name,
            directory=self._acme_files()[0].parent,
            clock=self.clock.now,
            metrics=self.metrics,
        )
        if not self.config.listen.http:
            # HTTP-01 is answered on the http listener: another node's may do, this one cannot.
            log.warning(
                "event=acme_without_http hint=the CA validates on port 80 of every acme name;"
                " set [listen] http on the nodes those names reach"
            )
        with contextlib.suppress(StoreError):  # then the task loads it once the store answers
            await keeper.install_stored()
        self.tasks.append(asyncio.create_task(keeper.run(), name="certificates"))

    async def _check_postmaster(self) -> None:
        """RFC 5321 4.5.1: mail to postmaster must reach somebody. Until it does, RCPT TO:
        <postmaster> gets 550; say so once at start (users can be added while it runs)."""
        postmaster = await self.directory.postmaster()
        if postmaster is None or await self.directory.resolve(postmaster) is None:
            log.warning(
                "event=postmaster_unresolved postmaster=%s hint=%s",
                postmaster or "-",
                "set `postmaster` in the config or add that address as a user or alias",
            )

    async def _start_listeners(self, tls: ssl.SSLContext) -> None:
        limits = self.config.limits
        for mode in Mode:
            address = self._address(mode.value)
            if address is None:
                continue
            policy = SmtpPolicy(
                mode=mode,
                store=self.store,
                directory=self.directory,
                hostname=self.config.hostname,
                max_recipients=limits.max_recipients,
                auth=self.logins,
                metrics=self.metrics,
                gate=self.gate,
                notices=self.notices,
                spool=self.spool,
                memory=self.memory,
                sessions=self.account_sessions,
                networks=self.networks,
                clock=self.clock.now,
                verifier=self.incoming,
                limit=SubmissionLimit(
                    self.store,
                    messages_per_hour=self.config.submission.messages_per_hour,
                    recipients_per_hour=self.config.submission.recipients_per_hour,
                    clock=self.clock.now,
                    metrics=self.metrics,
                )
                if mode is not Mode.MX
                else None,
            )
            server = await start_smtp(
                policy=policy,
                host=address[0],
                port=address[1],
                limiter=self.limiter,
                tls=tls,
                hostname=self.config.hostname,
                max_message_size=limits.max_message_size,
                idle_timeout=limits.smtp_idle_timeout,
                stress_idle_timeout=limits.smtp_stress_idle_timeout,
                session_timeout=limits.smtp_session_timeout,
                min_data_rate=limits.min_data_rate,
                budget=self.refusal_budget,
            )
            self._serving(mode.value, address[0], server)
        if self.config.listen.imap or self.config.listen.imaps:
            await self._start_imap(tls)
        if self.config.listen.pop3 or self.config.listen.pop3s:
            await self._start_pop3(tls)
        await self._start_http()

    async def _start_http(self) -> None:
        """The status web (status/web/): served by every node, so it outlives any one of them."""
        address = self._address("http")
        if address is None:
            return
        from mailfort.status.web import NodeParts, WebContext, create_app
        from mailfort.status.web.server import HttpListener

        parts = NodeParts(
            config=self.config,
            store=self.store,
            metrics=self.metrics,
            logins=self.logins,
            networks=self.networks,
            gate=lambda: self.gate,
            clients=self.client_directory(),
        )
        context = WebContext.from_node(parts)
        self.http = HttpListener(
            create_app(context, self._wellknown_routes()),
            *address,
            networks=context.networks,
            network_share=self.config.limits.max_network_share,
        )
        await self.http.start()
        self.listeners.append(Listener("http", address[0], self.http.port, _DESCRIPTIONS["http"]))

    def _wellknown_routes(self) -> list[BaseRoute]:
        """What the http listener answers for other machines and mail clients (`wellknown/`),
        one line per module."""
        from mailfort.wellknown import acme_http, mta_sts

        async def local_domain(domain: str) -> bool:
            return domain in await self.directory.local_domains()

        routes: list[BaseRoute] = []
        routes += acme_http.routes(self.store, self.clock.now)
        routes += autoconfig.routes(self.client_directory())
        routes += autodiscover.routes(self.client_directory())
        routes += mta_sts.routes(self.config, local_domain)
        return routes

    def client_directory(self) -> ClientDirectory:
        """Where mail clients connect: this node's running listeners, read per request."""
        return ClientDirectory(
            settings=lambda: client_settings(self.config, {x.name: x.port for x in self.listeners}),
            local_domains=self.directory.local_domains,
            # With ACME the files the keeper writes: a profile is signed by what the node
            # serves (unsigned until the first order succeeds), never by the self-signed pair.
            tls_files=self._acme_files() if self.config.tls.acme else self._tls_paths(),
        )

    def _acme_files(self) -> tuple[Path, Path]:
        """Where the certificate keeper writes the stored certificate and key (certs/)."""
        directory = self.config.data_dir / "tls" / "acme"
        return directory / "cert.pem", directory / "key.pem"

    async def _start_imap(self, tls: ssl.SSLContext) -> None:

        limits = self.config.limits
        config = self.config
        imap_context = ImapContext(
            store=self.store,
            auth=self.logins,
            cache=MetaCache(),
            hostname=config.hostname,
            max_message_size=limits.max_message_size,
            allow_plaintext_loopback=config.auth.allow_plaintext_loopback,
            gate=self.gate,
            metrics=self.metrics,
            notices=self.notices,
            networks=self.networks,
            cpu=self.cpu,
            spool=self.spool,
            memory=self.memory,
            sessions=self.account_sessions,
        )
        imap_limits = ImapLimits(
            max_line=limits.imap_max_line,
            max_literal=limits.max_message_size,
            unauth_timeout=limits.imap_unauth_timeout,
            stress_unauth_timeout=limits.imap_stress_unauth_timeout,
            idle_timeout=limits.imap_idle_timeout,
            literal_grace=limits.imap_literal_grace,
            min_literal_rate=limits.min_data_rate,
        )
        for name in ("imap", "imaps"):
            address = self._address(name)
            if address is None:
                continue
            server = await start_imap(
                connections=self.imap_connections,
                ctx=imap_context,
                host=address[0],
                port=address[1],
                limiter=self.imap_limiter,
                tls_context=tls,
                implicit_tls=name == "imaps",
                limits=imap_limits,
                budget=self.refusal_budget,
            )
            self._serving(name, address[0], server)

    async def _start_pop3(self, tls: ssl.SSLContext) -> None:
        limits = self.config.limits
        pop3_context = Pop3Context(
            store=self.store,
            auth=self.logins,
            locks=self.maildrop_locks,
            sizes=SizeCache(),
            hostname=self.config.hostname,
            allow_plaintext_loopback=self.config.auth.allow_plaintext_loopback,
            gate=self.gate,
            metrics=self.metrics,
            notices=self.notices,
            networks=self.networks,
            cpu=self.cpu,
            sessions=self.account_sessions,
        )
        pop3_limits = Pop3Limits(
            unauth_timeout=limits.pop3_unauth_timeout,
            stress_unauth_timeout=limits.pop3_stress_unauth_timeout,
            idle_timeout=limits.pop3_idle_timeout,
        )
        for name in ("pop3", "pop3s"):
            address = self._address(name)
            if address is None:
                continue
            server = await start_pop3(
                ctx=pop3_context,
                host=address[0],
                port=address[1],
                limiter=self.pop3_limiter,
                tls_context=tls,
                implicit_tls=name == "pop3s",
                limits=pop3_limits,
                budget=self.refusal_budget,
            )
            self._serving(name, address[0], server)

    async def stop(self, grace: float | None = None) -> None:
        """Drain: refuse new connections, give open sessions `grace` seconds (default
        `[cluster] drain_seconds`), stop the workers (a remote delivery whose message is sent
        waits for its answer), give back queue leases and maildrop locks, mark the node gone,
        close the store. SIGTERM and `mailfort node drain` both end here."""
        if grace is None:
            grace = self.config.cluster.drain_seconds
        self.limiter.draining = True
        self.imap_limiter.draining = True
        for connection in list(self.imap_connections):
            connection.shutdown()
        self.pop3_limiter.draining = True
        # The listeners stay open while sessions finish: a new client hears why it is turned
        # away (SMTP 421 4.3.2, IMAP BYE [UNAVAILABLE], POP3 -ERR [SYS/TEMP]) and retries
        # elsewhere, instead of a bare connection refusal.
        await self._cluster_step("draining", self.membership.draining_now)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        open_connections = (self.limiter, self.imap_limiter, self.pop3_limiter)
        while sum(x.total for x in open_connections) > 0 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for server in self.servers:
            server.close()
        if self.remote_worker is not None and self.remote_task is not None:
            # A message already sent waits for its answer, which is committed: given back
            # unanswered, another node would send it again. Bounded by the SMTP command timeout.
            self.remote_worker.stop()
            await asyncio.gather(self.remote_task, return_exceptions=True)
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.tls_reports is not None:
            await self.tls_reports.close()
        # The status page stayed up through the drain (customers look at it most then).
        if self.http is not None:
            await self.http.stop()
        await self._cluster_step("release_maildrops", self.maildrop_locks.close)
        await self._cluster_step("release_leases", self._release_leases)
        await self._cluster_step("leave", self.membership.leave)
        await self.gate.stop()
        await self.status_service.stop()
        await self.store.close()
        self.cpu.close()

    async def _release_leases(self) -> None:
        released = await self.store.release_leases(self.config.node_name)
        log.info("event=leases_released node=%s count=%d", self.config.node_name, released)

    async def _cluster_step(self, step: str, fn: Callable[[], Awaitable[None]]) -> None:
        """A step of leaving the cluster; without the store it is skipped (leases expire)."""
        try:
            await fn()
        except StoreError as exc:
            log.warning("event=node_stop_step_failed step=%s error=%s", step, exc)


def status_page_url(config: Config) -> str:
    """Where notices send customers: `[status] public_url`, else this node's http listener."""
    if config.status.public_url:
        return config.status.public_url
    return f"http://{config.listen.http or config.hostname}/"


def incoming_checks(config: Config, offload: Offload | None = None) -> IncomingVerifier | None:
    """The checks of incoming mail from `[verify]`, asking the name servers of `[delivery]`;
    None when they are off."""
    import ipaddress

    from mailfort.delivery.transport import parse_nexthop
    from mailfort.trust.dmarc import Policy
    from mailfort.trust.dns import TrustResolver
    from mailfort.trust.incoming import VerifySettings

    v = config.verify
    if not v.enabled:
        return None
    nameservers = [parse_nexthop(n, default_port=53) for n in config.delivery.dns_nameservers]
    resolver = TrustResolver(
        nameservers=[(n.host, n.port) for n in nameservers], timeout=v.dns_timeout
    )

    def policy(text: str) -> Policy:
        found = Policy.parse(text)  # validated with the config; NONE is falsy, hence no `or`
        return Policy.REJECT if found is None else found

    settings = VerifySettings(
        reject=policy(v.reject),
        caps={d: policy(p) for d, p in v.domains.items()},
        defer_on_temperror=v.temperror == "defer",
        forwarders=tuple(ipaddress.ip_network(n, strict=False) for n in v.forwarders),
        spf_timeout=v.spf_timeout,
        # Enough for two sequential lookups (own and organisational domain) that time out.
        dmarc_timeout=2 * v.dns_timeout + 1,
    )
    return IncomingVerifier(
        resolver, authserv_id=config.hostname, settings=settings, offload=offload
    )


def remote_worker(
    config: Config,
    store: Store,
    directory: Directory,
    *,
    outbound: Outbound | None = None,
    metrics: NodeMetrics | None = None,
    stressed: Callable[[], bool] | None = None,
    clock: Callable[[], float] = time.time,
) -> RemoteWorker | None:
    """The remote delivery worker from `[delivery]`, or None when it is disabled."""
    from mailfort.delivery.mtasts import MtaSts, PolicyFetcher, policy_tls_context
    from mailfort.delivery.mx import MxResolver
    from mailfort.delivery.remote import ClientSettings, RemoteClient
    from mailfort.delivery.tlsrpt import TlsCounter
    from mailfort.delivery.transport import TransportMap, parse_nexthop
    from mailfort.queue.retry import RetryPolicy

    d = config.delivery
    if not d.enabled:
        return None
    nameservers = [parse_nexthop(n, default_port=53) for n in d.dns_nameservers]
    resolver = MxResolver(
        nameservers=[(n.host, n.port) for n in nameservers], timeout=d.dns_timeout
    )
    fetcher = PolicyFetcher(
        resolver,
        port=d.mta_sts_port,
        timeout=d.mta_sts_timeout,
        tls=policy_tls_context(d.tls_ca_file),
    )
    client = RemoteClient(
        ClientSettings(
            helo=d.helo_name or config.hostname,
            port=d.smtp_port,
            tls=d.tls,
            connect_timeout=d.connect_timeout,
            command_timeout=d.command_timeout,
            concurrency=d.destination_concurrency,
            idle_timeout=d.idle_timeout,
            source_address=d.source_address,
            ca_file=d.tls_ca_file,
        ),
        resolver=resolver,
        transports=TransportMap(d.transports),
        mta_sts=MtaSts(resolver, fetcher) if d.mta_sts else None,
        dane=d.dane,
        counter=TlsCounter() if config.tlsrpt.enabled else None,
        unreported_senders=(tlsrpt_sender(config),),
    )
    return RemoteWorker(
        store,
        client,
        directory,
        RetryPolicy(
            lifetime=d.lifetime,
            delay_warning=d.delay_warning,
            base=d.retry_base,
            cap=d.retry_max,
        ),
        owner=config.node_name,
        hostname=config.hostname,
        lease_seconds=config.queue.lease_seconds,
        poll_interval=config.queue.poll_interval,
        max_in_flight=d.max_in_flight,
        max_recipients=d.destination_recipients,
        politeness=politeness(config.overload),
        metrics=metrics,
        stressed=stressed,
        networks=Networks(config.limits.network_prefix_v4, config.limits.network_prefix_v6),
        clock=clock,
        outbound=outbound,
    )


def outbound(config: Config, store: Store, directory: Directory, srs: Srs) -> Outbound:
    """DKIM signing, ARC sealing and SRS for mail leaving this node (`[dkim]`, `[srs]`)."""
    return Outbound(
        KeyCache(store, ttl=config.dkim.key_cache_seconds),
        is_local=directory.is_local,
        authserv_id=config.hostname,
        srs=srs if config.srs.enabled else None,
        srs_domain=config.srs.domain,
        sign=config.dkim.sign,
        arc=config.dkim.arc,
    )


def tlsrpt_sender(config: Config) -> str:
    """Where TLS reports come from: `[tlsrpt] sender`, else noreply-tlsrpt@<hostname>."""
    return config.tlsrpt.sender or f"noreply-tlsrpt@{config.hostname}"


def tls_reports(
    config: Config, store: Store, worker: RemoteWorker, clock: StoreClock
) -> TlsReports | None:
    """The daily TLS reporter (`[tlsrpt]`), counting what `worker`'s client counts."""
    from mailfort.delivery.tlsrpt import Reporter
    from mailfort.queue.tls_reports import ReportSettings

    t = config.tlsrpt
    client = worker.client
    if not t.enabled or client.policies.counter is None:
        return None
    first = config.local_domains[0] if config.local_domains else config.hostname
    reporter = Reporter(
        organization=t.organization or config.hostname,
        contact=t.contact or config.postmaster or f"postmaster@{first}",
        submitter=config.hostname,
        sender=tlsrpt_sender(config),
    )
    return TlsReports(
        store,
        client.policies.counter,
        client.resolver,
        worker.directory,
        ReportSettings(
            reporter=reporter,
            max_reports_per_day=t.max_reports_per_day,
            max_lookups_per_run=t.max_lookups_per_run,
            interval=t.interval,
            flush_seconds=min(30.0, t.interval),
        ),
        node=config.node_name,
        host=config.hostname,
        clock=clock.now,
    )


def politeness(o: OverloadConfig) -> Politeness:
    """Remote delivery's circuit breakers and retry budget from `[overload]`."""
    return Politeness(
        breaker=BreakerConfig(
            failure_threshold=o.breaker_failures,
            base_backoff_seconds=o.breaker_open_seconds,
            max_backoff_seconds=max(o.breaker_open_seconds, o.breaker_max_open_seconds),
        ),
        budget=RetryBudgetConfig(
            ratio=o.retry_budget_ratio,
            window_seconds=o.retry_budget_window,
            reserve=o.retry_budget_reserve,
        ),
        probe_wait=min(10.0, o.breaker_open_seconds),
    )


def describe(node: Node) -> str:
    return describe_listeners(node.config, node.listeners)


def describe_listeners(
    config: Config, listeners: Sequence[Listener], *, workers: Sequence[str] = ()
) -> str:
    """What a started node says on stdout: its listeners and how to use them; `workers` names
    the processes that serve them together (`serve --workers N`)."""
    running = f" as {len(workers)} workers ({', '.join(workers)})" if workers else ""
    lines = [f"mailfort node {config.node_name!r} is running{running} (data in {config.data_dir})"]
    for item in listeners:
        lines.append(f"  {item.name:<12} {item.host}:{item.port:<6} {item.description}")
    http = next((x for x in listeners if x.name == "http"), None)
    if http:
        lines.append(f"Status page: http://{http.host}:{http.port}/ (metrics at /metrics)")
    smtp = next((x for x in listeners if x.name == "smtp"), None)
    sub = next((x for x in listeners if x.name == "submission"), None)
    if smtp:
        lines.append(f"Try it: swaks --server {smtp.host}:{smtp.port} --to demo@example.test")
    if sub:
        lines.append(
            f"Mail client (outgoing): server {sub.host}, port {sub.port}, STARTTLS, password auth,"
            " your full address as user name (the certificate is self-signed)"
        )
    for protocol in ("imap", "pop3"):
        # The plain listener (STARTTLS) and its implicit-TLS twin ("imaps", "pop3s").
        served = sorted(
            (x for x in listeners if x.name in (protocol, protocol + "s")),
            key=lambda x: x.name,
        )
        if served:
            incoming = ", ".join(
                f"port {x.port} ({'STARTTLS' if x.name == protocol else 'SSL/TLS'})" for x in served
            )
            lines.append(
                f"Mail client (incoming): {protocol.upper()} server {served[0].host},"
                f" {incoming}, normal password"
            )
    lines.append("Stop with Ctrl-C (SIGINT) or SIGTERM.")
    return "\n".join(lines)


async def serve(config: Config, announce: Callable[[Node], None] | None = None) -> int:
    """Run a node until SIGTERM, SIGINT or a drain, then stop it. Once it serves, `announce`
    is told (default: its description on stdout)."""
    node = Node(config)
    # Before the "Stop with SIGTERM" line: a supervisor that sends SIGTERM as soon as it reads
    # the line must get a drain, not the default action (death by the signal).
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.stop_requested.set)
    await node.start()
    helo_check = asyncio.create_task(warn_about_helo(config), name="helo-check")
    if announce is None:
        print(describe(node), flush=True)
    else:
        announce(node)
    await node.stop_requested.wait()
    reason = "drain requested" if node.membership.draining else "signal"
    print(f"mailfort: shutting down ({reason})", file=sys.stderr, flush=True)
    helo_check.cancel()
    await node.stop()
    return 0
