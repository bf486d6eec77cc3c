"""Typed settings from one TOML file. Every key has a default, so a node runs with no file at all.

`load()` raises `ConfigError` naming the dotted key and the problem; the CLI turns that into one
line on stderr and exit status 2.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import socket
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailfort.delivery.transport import parse_nexthop
from mailfort.errors import ConfigError
from mailfort.mail.address import AddressError, normalize, normalize_domain

DEFAULT_PATH = Path("mailfort.toml")
MAX_WORKERS = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenConfig:
    """`host:port` per listener; an empty string disables it."""

    smtp: str = "127.0.0.1:2525"
    submission: str = "127.0.0.1:2587"
    submissions: str = "127.0.0.1:2465"
    imap: str = "127.0.0.1:2143"
    imaps: str = "127.0.0.1:2993"
    pop3: str = "127.0.0.1:2110"
    pop3s: str = "127.0.0.1:2995"
    http: str = "127.0.0.1:8080"


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsConfig:
    cert: str = ""
    key: str = ""
    # Certificates from an ACME CA (RFC 8555, certs/): ordered by one node at a time, kept in the
    # store, served by every node, renewed without a restart. Until the first one is issued the
    # node serves its self-signed certificate.
    acme: bool = False
    acme_directory: str = "https://acme-v02.api.letsencrypt.org/directory"
    acme_email: str = ""
    # The names the certificate covers; empty: `hostname`. Every name must resolve to a node
    # whose http listener port 80 reaches (HTTP-01): one that does not fails the whole order.
    acme_names: tuple[str, ...] = ()
    # A CA bundle to trust for the directory's HTTPS instead of the system's (a test CA).
    acme_ca_file: str = ""
    acme_renew_before_days: float = 30.0
    # How often a node considers renewing (with 10% jitter), how often it looks in the store for
    # a certificate another node ordered, and the first wait after a failed order (doubling up
    # to acme_check_seconds).
    acme_check_seconds: float = 43200.0
    acme_reload_seconds: float = 60.0
    acme_retry_seconds: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsConfig:
    max_message_size: int = 25 * 1024 * 1024
    max_recipients: int = 100
    max_connections: int = 1000
    max_connections_per_ip: int = 20
    smtp_idle_timeout: float = 300.0
    # While most SMTP connection slots are taken, an idle session is closed after this instead
    # (Postfix's stress mode: 300 s -> 10 s), so idle or slow clients cannot hold the node full.
    smtp_stress_idle_timeout: float = 10.0
    smtp_session_timeout: float = 1800.0
    # Postfix's smtpd_min_data_rate: a message upload (SMTP DATA after the idle time, an IMAP
    # literal after imap_literal_grace) may take a second more per this many octets received, so
    # a client that trickles a message cannot hold a connection for the session time. 0: off.
    min_data_rate: float = 500.0
    # Failed logins within auth_failure_window (auth/throttle.py), counted before the password
    # is checked; past a limit further attempts are refused unchecked. Each failure is answered
    # after auth_failure_delay × the address's failures (at most 5 s).
    auth_failures_per_ip: int = 10
    auth_failure_window: float = 900.0
    auth_failure_delay: float = 1.0
    # One machine can own a whole /24 or /64: its addresses share this count. Higher than per
    # address, since a NAT (a university, a mobile carrier) puts many customers behind one /24.
    auth_failures_per_network: int = 30
    # Failures from networks the account has never logged in from (see [auth]
    # known_network_days): a guesser spread over many networks is stopped, while the owner, from
    # a network they logged in from before, is never refused for it.
    auth_failures_per_account: int = 20
    imap_max_connections: int = 5000
    imap_max_connections_per_ip: int = 50
    imap_unauth_timeout: float = 60.0
    imap_stress_unauth_timeout: float = 10.0  # ... while 80 % of imap_max_connections are taken
    imap_idle_timeout: float = 1800.0
    imap_max_line: int = 65536
    imap_literal_grace: float = 60.0  # seconds an IMAP literal has before min_data_rate applies
    pop3_max_connections: int = 5000
    pop3_max_connections_per_ip: int = 20
    pop3_unauth_timeout: float = 60.0
    pop3_stress_unauth_timeout: float = 10.0  # ... while 80 % of pop3_max_connections are taken
    pop3_idle_timeout: float = 600.0  # RFC 1939 §3: the autologout timer is at least 10 minutes
    # Per-client bounds count per address and per network (`mailfort.network`): one machine may
    # own a whole IPv4 /24 or IPv6 /64.
    network_prefix_v4: int = 24
    network_prefix_v6: int = 64
    # The share of a listener's connection slots, of the overload gate's slots and of its
    # connect reservations that one client network may hold, so that no stranger can take all.
    max_network_share: float = 0.25
    # New connections a second one client network may open to each listener (MX and submission
    # together), as Postfix's anvil bounds a client's connection rate; 0: unbounded.
    max_connection_rate_per_network: float = 100.0
    # Threads that parse and search message bodies (FETCH of structure and sections, SEARCH of
    # text, POP3 TOP) off the event loop, which every client shares. More than the cores buys
    # nothing (the interpreter lock); each more lets one more such command run while others do.
    cpu_threads: int = 2
    # A request body on the http listener must arrive within http_body_timeout of its head and
    # at no less than http_min_body_rate bytes a second (after a 2-s grace; Postfix's
    # smtpd_min_data_rate), so clients that trickle bodies cannot hold connections. It is read
    # before the request takes a slot in the overload gate, so the gate never waits for it.
    # 0 turns the rate off (the timeout still holds).
    http_body_timeout: float = 10.0
    http_min_body_rate: int = 1024
    # Message data past 64 KiB is spooled to <data_dir>/spool as it arrives; a store write
    # reads it back into memory. This many octets of such messages may be in memory at once on
    # the node (a write past it waits up to 10 s, then 451 4.3.0 / NO [UNAVAILABLE]), so N
    # concurrent 25 MB messages cannot take N x 25 MB. At least max_message_size.
    max_message_bytes_in_memory: int = 64 * 1024 * 1024
    # Logged-in IMAP, POP3 and submission sessions of one account on this node: past it a login
    # gets NO [LIMIT] / -ERR [IN-USE] / 454 4.7.0. Generous for several devices with several
    # connections each; one stolen account cannot hold the node's connections.
    max_sessions_per_account: int = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    url: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfig:
    lease_seconds: float = 30.0
    poll_interval: float = 1.0
    local_retry_seconds: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """Membership in the store, draining, and the POP3 maildrop lock across nodes."""

    heartbeat_seconds: float = 5.0  # a node silent for 3 heartbeats is shown as dead
    drain_seconds: float = 30.0  # drain or SIGTERM: open sessions get this long to finish
    maildrop_lease_seconds: float = 60.0  # POP3 lock lease, renewed at a third of it


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryConfig:
    """Remote delivery: the SMTP client, its retry schedule, DSNs, routing overrides."""

    enabled: bool = True
    helo_name: str = ""  # default: `hostname`
    lifetime: float = 5 * 86400.0  # then a bounce (DSN) to the sender
    delay_warning: float = 4 * 3600.0  # one "still trying" DSN after this long; 0: never
    retry_base: float = 300.0  # backoff: full jitter around retry_base * 2^attempts
    retry_max: float = 4000.0  # ... at most this long between attempts
    max_in_flight: int = 100  # recipients this node holds leases on at once
    destination_concurrency: int = 10  # SMTP connections per destination at once
    destination_recipients: int = 50  # recipients per SMTP transaction
    connect_timeout: float = 30.0
    command_timeout: float = 300.0  # per SMTP command, incl. the reply to the final dot
    idle_timeout: float = 5.0  # an unused connection stays open this long for the next message
    tls: str = "may"  # none | may (opportunistic, unverified) | encrypt | verify
    smtp_port: int = 25  # port of MX hosts (a transport names its own)
    dns_nameservers: tuple[str, ...] = ()  # "ip" or "ip:port"; empty: /etc/resolv.conf
    dns_timeout: float = 10.0
    # The address outgoing SMTP connections come from ("": the kernel's choice): on a host with
    # several, the one whose PTR is `hostname` and that the SPF records list.
    source_address: str = ""
    # Routing overrides, like Postfix transport_maps/relayhost: "domain" (exact), ".domain"
    # (subdomains) or "*" -> "host:port" delivered to instead of the domain's MX.
    transports: dict[str, str] = field(default_factory=dict)
    # RFC 8461 MTA-STS and RFC 7672 DANE raise `tls` per destination (README, "Delivery
    # security"). DANE trusts TLSA answers only when the name server sets the AD flag: run a
    # validating resolver (unbound) on loopback and name it in `dns_nameservers`.
    mta_sts: bool = True
    mta_sts_port: int = 443  # HTTPS port of mta-sts.<domain> (tests: a loopback server)
    mta_sts_timeout: float = 20.0  # the whole policy fetch, connect to last byte
    dane: bool = True
    tls_ca_file: str = ""  # CAs for MX and policy certificates; empty: the system's


@dataclass(frozen=True, slots=True, kw_only=True)
class MtaStsConfig:
    """The MTA-STS policy served for our local domains (RFC 8461, `wellknown/mta_sts.py`)."""

    mode: str = "testing"  # testing | enforce | none
    mx: tuple[str, ...] = ()  # MX patterns ("mx.example.org", "*.example.org"); default hostname
    max_age: int = 604800  # seconds senders cache it (at most 31557600)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsRptConfig:
    """Daily TLS reports (RFC 8460) to the destinations that ask for them (`queue/tls_reports`)."""

    enabled: bool = True
    max_reports_per_day: int = 100  # per sending host (`hostname`), however many domains ask
    max_lookups_per_run: int = 500  # `_smtp._tls` lookups per reporting run
    interval: float = 3600.0  # seconds between reporting runs (each reports finished days)
    sender: str = ""  # default: noreply-tlsrpt@<hostname>
    contact: str = ""  # default: postmaster of the first local domain
    organization: str = ""  # default: hostname


@dataclass(frozen=True, slots=True, kw_only=True)
class OverloadConfig:
    """Admission that adapts to what the node can do now (`server/overload.py`).

    The concurrency limit for store-bound work (an SMTP transaction's store work, from the end of
    DATA to the 250; IMAP/POP3 commands that hit the store, HTTP requests that read the store)
    moves between `min_limit` and `max_limit`, driven by the measured time of that work, the store
    commit latency and event-loop lag. Past it a node answers with a temporary refusal and keeps
    serving what it has. Time spent waiting for a client is never part of it.
    """

    enabled: bool = True
    initial_limit: int = 64
    min_limit: int = 4
    max_limit: int = 512
    max_pending_commits: int = 256  # store commits waiting at once before 451 4.3.0
    # SMTP transactions in progress at once (MAIL to their end) with the connections about to
    # start one: a limit that moves with the event loop's lag (overload/lag_limit.py) between
    # these, since a transaction mostly waits for its client and only the lag measures the node.
    initial_sessions: int = 256
    min_sessions: int = 16
    max_sessions: int = 8192
    target_commit_latency: float = 0.05  # seconds; above it the limit shrinks
    max_loop_lag: float = 0.2  # seconds of event-loop lag that count as full stress
    retry_after: int = 5  # seconds, HTTP 503 Retry-After
    # Remote delivery politeness
    breaker_failures: int = 5  # consecutive connection-level failures that open a destination
    breaker_open_seconds: float = 60.0  # first pause before a probe; doubles up to the max
    breaker_max_open_seconds: float = 1800.0
    retry_budget_ratio: float = 0.1  # retries at most this share of delivery attempts
    retry_budget_window: float = 60.0
    # Retries allowed per window whatever the ratio: a node whose queue holds only retries (after
    # an outage) must still retry some. 0 makes the ratio strict.
    retry_budget_reserve: int = 10
    lag_interval: float = 0.1  # seconds between event-loop lag samples
    # At most this share of the node's CPU goes to refusing connections; past it the listeners
    # stop accepting for a moment and new connections wait in the kernel's queue, so that no
    # offered load (a flood is 10x load from one sender) turns the node into a refusal machine.
    refusal_cpu_share: float = 0.1


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusConfig:
    """Health signals, component states, incidents and the status page (`status/`)."""

    enabled: bool = True
    public_url: str = ""  # shown in notices; default: http://<listen.http>/
    # The promise is an incident within 60 s of a fault. Worst case for a rate signal: the fault
    # must fill ~30 % of the window (18 s), then one heartbeat (5 s), one evaluation (10 s) and
    # `worsen_after` (20 s) pass: 53 s. A longer window smooths more but publishes later.
    evaluate_seconds: float = 10.0  # how often the leader node evaluates the signals
    window_seconds: float = 60.0  # signals are measured over this trailing window
    worsen_after: float = 20.0  # a worse state must hold this long before it is published
    recover_after: float = 300.0  # a better state must hold this long
    notice_delay: float = 900.0  # a message held longer than this counts as delayed
    history_days: int = 90
    # The web serves an in-memory snapshot of the status, read from the store at most this often.
    page_refresh_seconds: float = 5.0
    webhook_timeout: float = 5.0
    # Webhooks to loopback/private addresses (an internal chat bridge, tests). Off by default:
    # subscriptions are public, and the node must not become a way into the provider's network.
    webhook_allow_private: bool = False
    # Public subscriptions (POST /api/v2/webhooks): stored ones are capped in all and per client
    # network, and attempts (each costs a verification request) are limited per client address
    # and network per hour, so that strangers can neither fill the list nor drown out the real
    # subscribers, nor use the node to send requests for them.
    webhook_max_subscriptions: int = 1000
    webhook_max_per_network: int = 10
    webhook_subscribe_per_ip: int = 5  # attempts per hour
    webhook_subscribe_per_network: int = 20  # attempts per hour
    provider_name: str = "mailfort"
    # Threshold overrides: "signal" -> [degraded, down] or [degraded, down, major]; keys are
    # those of status.signals.StatusThresholds (e.g. "store_commit_p95", "remote_success_rate").
    thresholds: dict[str, list[float]] = field(default_factory=dict)
    remote_min_attempts: int = 20
    login_min_attempts: int = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthConfig:
    # Plaintext logins (no TLS) are refused except, when this is true, from loopback clients.
    allow_plaintext_loopback: bool = False
    # A network (/24, /64) an account logged in from with its password stays exempt from the
    # account's failed-login limit for this many days after its last such login: an attack on
    # the account does not lock its owner out where the owner usually logs in.
    known_network_days: float = 30.0
    # Password checks (argon2id: ~64 MiB and tens of ms of CPU each) running at once per node,
    # and at most waiting; past that a login is answered "try again later". One client network
    # holds at most [limits] max_network_share of the waiting places.
    verify_concurrency: int = 2
    verify_max_waiting: int = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmissionConfig:
    """What an authenticated user may send as, beyond what they own: their address, the aliases
    that deliver to them, and `+detail` forms of either (`Directory.may_send_as`). The rule holds
    for the envelope sender and for the header `From:` and `Sender:` alike."""

    # "user@domain" (one user) or "@domain" (every user of that domain) -> extra addresses they
    # may send as: "address" or "@domain" (any address at that domain). For shared role
    # addresses that are not aliases, or an application account that sends for a whole domain.
    senders: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # What one authenticated user may send in an hour (the previous hour's count weighs in as
    # the window slides), counted in the store so every node of a cluster shares the count; past
    # either, 451 4.7.1 until the hour has room again. Bounds a stolen password's spam. 0: off.
    messages_per_hour: int = 500
    recipients_per_hour: int = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicPortsConfig:
    """The port mail clients use for each listener when it differs from the one the node binds
    (a firewall or load balancer that forwards 587 to 2587); 0: the listener's own port. The MX
    is always port 25 to the world (RFC 5321 4.5.4), so it has none."""

    submission: int = 0
    submissions: int = 0
    imap: int = 0
    imaps: int = 0
    pop3: int = 0
    pop3s: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsConfig:
    """What `mailfort dns records` tells the operator to publish and `dns check` expects."""

    # The addresses the world reaches this node at (each needs a PTR to `hostname`); empty: the
    # listeners' addresses that are neither loopback nor unspecified.
    public_addresses: tuple[str, ...] = ()
    # MX hosts of the local domains; empty: `hostname`. A cluster names every node's host here
    # (or one name with an A record per node).
    mx_hosts: tuple[str, ...] = ()
    # A provider's own SPF record (e.g. "_spf.provider.example") that customer domains include,
    # so a new node changes one record rather than every customer's; empty: "v=spf1 mx -all".
    spf_include: str = ""
    dmarc_policy: str = "none"  # RFC 7489 6.3 p=; "none" until reports show all mail aligned
    dmarc_rua: str = ""  # where aggregate reports go; default: postmaster@<domain>
    tlsrpt_rua: str = ""  # where TLS reports (RFC 8460) go; default: postmaster@<domain>
    ttl: int = 3600
    public_ports: PublicPortsConfig = field(default_factory=PublicPortsConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class DkimConfig:
    """[dkim]: signing outgoing mail (`trust/outbound.py`) and rotating its keys (`mailfort dkim`).

    Keys live in the store, so every node signs with the same ones."""

    sign: bool = True  # DKIM-sign submitted and forwarded mail with the domain's active keys
    arc: bool = True  # ARC-seal forwarded mail (needs the MX's Authentication-Results)
    # Keys made per domain by `mailfort dkim create`, `init` and each rotation (RFC 8463: both,
    # so receivers that know Ed25519 check it and the others the RSA one).
    algorithms: tuple[str, ...] = ("rsa-sha256", "ed25519-sha256")
    selector_prefix: str = "mf"  # selectors are <prefix><YYYYMM><r|e>: mf202612r
    # Rotation: a new key is published this long before it signs (resolvers cache the old
    # answer up to the record's TTL; 48 h covers the common 1-day TTL twice over) ...
    publish_wait: float = 48 * 3600.0
    # ... and the old one stays in DNS this long after it stopped signing, for mail in transit
    # and verified late (M3AAWG advises days to weeks).
    retire_wait: float = 7 * 86400.0
    key_cache_seconds: float = 10.0  # how stale a node's copy of the keys may be
    # New local domains get active keys at `mailfort init` (a provider signs from message one).
    keys_at_init: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class SrsConfig:
    """[srs]: the envelope sender of mail our aliases forward (`trust/srs.py`)."""

    enabled: bool = True
    domain: str = ""  # SRS addresses at this domain (one of ours); default: the alias's domain
    max_age_days: int = 21  # bounces to older SRS addresses are refused


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyConfig:
    """Checks of mail arriving on the MX port: SPF, DKIM, DMARC and ARC, summed up in an
    Authentication-Results header; what a DMARC failure leads to. Submission is not checked."""

    enabled: bool = True
    # What a DMARC p=reject failure does: reject (550 5.7.1) | quarantine (to Junk) | none.
    reject: str = "reject"
    # Per local domain, the same setting in its place; "none" delivers everything to the INBOX.
    domains: dict[str, str] = field(default_factory=dict)
    # When a DNS failure may have changed the DMARC verdict: defer (451 4.7.0) | accept.
    temperror: str = "defer"
    # IP networks of forwarders whose passing ARC chain stands in for a failed DMARC check.
    forwarders: tuple[str, ...] = ()
    dns_timeout: float = 5.0  # one DNS query, retries included
    spf_timeout: float = 20.0  # a whole SPF evaluation (RFC 7208 4.6.4: at least 20 s)


@dataclass(frozen=True, slots=True, kw_only=True)
class CapacityConfig:
    """[capacity]: the live margin (`status/margin.py`). Without a profile it is unknown."""

    profile: str = ""  # a profile JSON (`mailfort capacity measure`); relative: beside this file
    spare_nodes: int = 1  # the k of N+k: fewer spare nodes than this is a warning
    max_utilisation: float = 0.75  # the CPU share a node may run at (the planner's target)
    node_cpus: float = 0.0  # CPUs of a live node; 0: the profile's
    # A profile measured by another mailfort version is refused (costs change) unless this is
    # set; the measured CPU still bounds the demand from below.
    any_version: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    hostname: str = field(default_factory=lambda: socket.getfqdn() or "localhost")
    data_dir: Path = Path("var")
    local_domains: tuple[str, ...] = ()
    recipient_delimiter: str = "+"
    # Where `RCPT TO:<postmaster>` (no domain, RFC 5321 4.5.1) goes, and postmaster@ any local
    # domain that has no account or alias of that name; resolved like any address (aliases,
    # forwarding). Default: postmaster@ the first local domain (`Directory.postmaster`).
    postmaster: str = ""
    node_name: str = field(default_factory=socket.gethostname)
    # Node processes `serve` runs, sharing the listening ports (SO_REUSEPORT), each a member of
    # the cluster named `<node_name>-w<i>`. 0: one per CPU this process may run on with
    # PostgreSQL, 1 with SQLite (one writer per file: more processes would queue on its lock).
    workers: int = 0
    listen: ListenConfig = field(default_factory=ListenConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    overload: OverloadConfig = field(default_factory=OverloadConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    submission: SubmissionConfig = field(default_factory=SubmissionConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    dkim: DkimConfig = field(default_factory=DkimConfig)
    srs: SrsConfig = field(default_factory=SrsConfig)
    mta_sts: MtaStsConfig = field(default_factory=MtaStsConfig)
    tlsrpt: TlsRptConfig = field(default_factory=TlsRptConfig)
    capacity: CapacityConfig = field(default_factory=CapacityConfig)
    source: Path | None = None


def parse_hostport(key: str, value: str) -> tuple[str, int] | None:
    if value == "":
        return None
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(key, f'expected "host:port" or "", got {value!r}')
    return host, int(port)


def _convert(key: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(key, "expected a table")
        return _build(hint, value, key + ".")  # type: ignore[arg-type]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        if value < 0:
            raise ConfigError(key, "must not be negative")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"expected a number, got {value!r}")
        # TOML has inf and nan; neither is a usable timeout or interval (nan < 0 is False).
        if not math.isfinite(value):
            raise ConfigError(key, f"expected a finite number, got {value!r}")
        if value < 0:
            raise ConfigError(key, "must not be negative")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(key, f"expected a path, got {value!r}")
        return Path(value)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, "expected a list of strings")
        return tuple(v.lower() for v in value)
    if origin is dict and typing.get_origin(typing.get_args(hint)[1]) is tuple:
        ok = isinstance(value, dict) and all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in value.values()
        )
        if not ok:
            raise ConfigError(key, "expected a table of lists of strings")
        return {k.lower(): tuple(x.lower() for x in v) for k, v in value.items()}
    if origin is dict and typing.get_args(hint)[1] is not str:
        ok = isinstance(value, dict) and all(
            isinstance(v, list)
            and 2 <= len(v) <= 3
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
            for v in value.values()
        )
        if not ok:
            expected = "expected a table of [degraded, down] or [degraded, down, major]"
            raise ConfigError(key, expected)
        return {k: [float(x) for x in v] for k, v in value.items()}
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(key, "expected a table of strings")
        return {k.lower(): v for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        return value
    raise ConfigError(key, "unsupported setting")


def _build(cls: type, table: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - {"source"}
    for key in table:
        if key not in names:
            raise ConfigError(prefix + key, "unknown key")
    values = {k: _convert(prefix + k, hints[k], v) for k, v in table.items()}
    return cls(**values)


def validate(config: Config) -> None:
    for f in dataclasses.fields(ListenConfig):
        parse_hostport(f"listen.{f.name}", getattr(config.listen, f.name))
    if bool(config.tls.cert) != bool(config.tls.key):
        raise ConfigError(
            "tls.cert" if not config.tls.cert else "tls.key", "cert and key must be given together"
        )
    for key in ("cert", "key"):
        path = getattr(config.tls, key)
        if path and not Path(path).is_file():
            raise ConfigError(f"tls.{key}", f"no such file {path!r}")
    if config.tls.acme and config.tls.cert:
        raise ConfigError("tls.acme", "serve either certificate files (cert, key) or ACME's")
    if config.tls.acme_ca_file and not Path(config.tls.acme_ca_file).is_file():
        raise ConfigError("tls.acme_ca_file", f"no such file {config.tls.acme_ca_file!r}")
    for key in ("acme_reload_seconds", "acme_check_seconds", "acme_retry_seconds"):
        if config.tls.acme and getattr(config.tls, key) <= 0:
            raise ConfigError(f"tls.{key}", "must be more than 0")
    if len(config.recipient_delimiter) > 1:
        raise ConfigError("recipient_delimiter", "must be one character or empty")
    if config.limits.max_recipients < 1:
        raise ConfigError("limits.max_recipients", "must be at least 1")
    if config.limits.max_message_size < 1024:
        raise ConfigError("limits.max_message_size", "must be at least 1024")
    # Above smtp_idle_timeout it simply never applies.
    _at_least(
        config.limits,
        "limits",
        0.5,
        "imap_literal_grace",
        "smtp_stress_idle_timeout",
        "imap_stress_unauth_timeout",
        "pop3_stress_unauth_timeout",
    )
    if not 8 <= config.limits.network_prefix_v4 <= 32:
        raise ConfigError("limits.network_prefix_v4", "expected a prefix length from 8 to 32")
    if not 16 <= config.limits.network_prefix_v6 <= 128:
        raise ConfigError("limits.network_prefix_v6", "expected a prefix length from 16 to 128")
    if not 0 < config.limits.max_network_share <= 1:
        raise ConfigError("limits.max_network_share", "expected a share above 0 and at most 1")
    if config.workers > MAX_WORKERS:
        raise ConfigError("workers", f"expected 0 (one per CPU) to {MAX_WORKERS}")
    if not 1 <= config.limits.cpu_threads <= 64:
        raise ConfigError("limits.cpu_threads", "expected 1 to 64 threads")
    _at_least(config.limits, "limits", 0.5, "http_body_timeout")
    if config.limits.max_message_bytes_in_memory < config.limits.max_message_size:
        raise ConfigError(
            "limits.max_message_bytes_in_memory", "must be at least limits.max_message_size"
        )
    if config.limits.max_sessions_per_account < 1:
        raise ConfigError("limits.max_sessions_per_account", "must be at least 1")
    _at_least(
        config.limits,
        "limits",
        1,
        "auth_failures_per_ip",
        "auth_failures_per_network",
        "auth_failures_per_account",
    )
    # Shorter would make every login a store write (a network is re-recorded daily at most).
    _at_least(config.auth, "auth", 1, "known_network_days", "verify_concurrency")
    _at_least(config.auth, "auth", 1, "verify_max_waiting")
    if not config.hostname:
        raise ConfigError("hostname", "must not be empty")
    # It is written into every Received header; a space or line break there would forge headers.
    if any(ch.isspace() or not ch.isprintable() for ch in config.hostname):
        raise ConfigError("hostname", f"not a host name: {config.hostname!r}")
    for domain in config.local_domains:
        if normalize_domain(domain) is None:
            raise ConfigError("local_domains", f"not a domain: {domain!r}")
    if config.postmaster and not _is_address(config.postmaster):
        raise ConfigError("postmaster", f"not an address: {config.postmaster!r}")
    for owner, patterns in config.submission.senders.items():
        key = f"submission.senders.{owner}"
        if not _is_address_or_domain(owner):
            raise ConfigError(key, 'expected "user@domain" or "@domain" as the key')
        for pattern in patterns:
            if not _is_address_or_domain(pattern):
                raise ConfigError(key, f'expected "address" or "@domain", got {pattern!r}')
    _validate_delivery(config.delivery)
    _validate_verify(config.verify)
    _validate_dkim(config.dkim, config.srs)
    for key in ("heartbeat_seconds", "maildrop_lease_seconds"):
        if getattr(config.cluster, key) < 0.1:
            raise ConfigError(f"cluster.{key}", "must be at least 0.1")
    _validate_overload(config.overload)
    _validate_status(config.status)
    _validate_dns(config.dns)
    if not 0 < config.capacity.max_utilisation <= 1:
        raise ConfigError("capacity.max_utilisation", "expected a share above 0 and at most 1")
    if config.mta_sts.mode not in ("testing", "enforce", "none"):
        raise ConfigError("mta_sts.mode", "expected testing, enforce or none")
    if config.mta_sts.max_age > 31557600:  # RFC 8461 3.2
        raise ConfigError("mta_sts.max_age", "at most 31557600 (one year)")


def _is_address(text: str) -> bool:
    try:
        normalize(text)
    except AddressError:
        return False
    return True


def _is_address_or_domain(text: str) -> bool:
    if text.startswith("@"):
        return normalize_domain(text[1:]) is not None
    return _is_address(text)


def _at_least(section: object, prefix: str, minimum: float, *keys: str) -> None:
    for key in keys:
        if getattr(section, key) < minimum:
            raise ConfigError(f"{prefix}.{key}", f"must be at least {minimum:g}")


def _validate_overload(o: OverloadConfig) -> None:
    _at_least(o, "overload", 1, "min_limit", "max_pending_commits", "breaker_failures")
    _at_least(o, "overload", 0.01, "lag_interval", "max_loop_lag", "retry_budget_window")
    _at_least(o, "overload", 0.001, "target_commit_latency")
    _at_least(o, "overload", 0.1, "breaker_open_seconds")
    if not o.min_limit <= o.initial_limit <= o.max_limit:
        raise ConfigError("overload.initial_limit", "need min_limit <= initial_limit <= max_limit")
    _at_least(o, "overload", 1, "min_sessions")
    if not o.min_sessions <= o.initial_sessions <= o.max_sessions:
        raise ConfigError(
            "overload.initial_sessions", "need min_sessions <= initial_sessions <= max_sessions"
        )
    if o.breaker_max_open_seconds < o.breaker_open_seconds:
        raise ConfigError("overload.breaker_max_open_seconds", "must be >= breaker_open_seconds")
    if not 0 < o.refusal_cpu_share <= 1:
        raise ConfigError("overload.refusal_cpu_share", "expected a share above 0 and at most 1")
    if not 0 <= o.retry_budget_ratio < 1:
        raise ConfigError("overload.retry_budget_ratio", "must be at least 0 and below 1")


def _validate_status(st: StatusConfig) -> None:
    _at_least(st, "status", 0.1, "evaluate_seconds", "notice_delay")
    # The heartbeat's window is kept in 10-second slots; a shorter one would hold nothing.
    _at_least(st, "status", 10.0, "window_seconds")
    _at_least(st, "status", 1, "history_days")
    if st.public_url and not st.public_url.startswith(("http://", "https://")):
        raise ConfigError("status.public_url", "expected an http:// or https:// URL")
    _at_least(st, "status", 0.1, "webhook_timeout")
    _at_least(
        st,
        "status",
        1,
        "webhook_max_subscriptions",
        "webhook_max_per_network",
        "webhook_subscribe_per_ip",
        "webhook_subscribe_per_network",
    )
    if st.webhook_subscribe_per_network < st.webhook_subscribe_per_ip:
        raise ConfigError(
            "status.webhook_subscribe_per_network", "must be at least webhook_subscribe_per_ip"
        )


def _validate_verify(verify: VerifyConfig) -> None:
    policies = ("reject", "quarantine", "none")
    if verify.reject not in policies:
        raise ConfigError("verify.reject", f"expected one of {', '.join(policies)}")
    for domain, policy in verify.domains.items():
        if policy.lower() not in policies:
            raise ConfigError(f"verify.domains.{domain}", f"expected one of {', '.join(policies)}")
    if verify.temperror not in ("defer", "accept"):
        raise ConfigError("verify.temperror", 'expected "defer" or "accept"')
    for network in verify.forwarders:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError("verify.forwarders", f"not an IP network: {network!r}") from None
    if verify.dns_timeout <= 0 or verify.spf_timeout <= 0:
        raise ConfigError("verify", "timeouts must be positive")


def _validate_dns(dns: DnsConfig) -> None:
    for address in dns.public_addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError("dns.public_addresses", f"not an IP address: {address!r}") from None
    for key, names in (("mx_hosts", dns.mx_hosts), ("spf_include", (dns.spf_include,))):
        for name in names:
            if name and (normalize_domain(name) is None or "." not in name):
                raise ConfigError(f"dns.{key}", f"not a host name: {name!r}")
    if dns.dmarc_policy not in ("none", "quarantine", "reject"):
        raise ConfigError("dns.dmarc_policy", "expected none, quarantine or reject")
    for key in ("dmarc_rua", "tlsrpt_rua"):
        value = getattr(dns, key)
        if value and not _is_address(value):
            raise ConfigError(f"dns.{key}", f"not an address: {value!r}")
    _at_least(dns, "dns", 60, "ttl")
    for f in dataclasses.fields(PublicPortsConfig):
        if getattr(dns.public_ports, f.name) > 65535:
            raise ConfigError(f"dns.public_ports.{f.name}", "expected a port number (1-65535)")


def _validate_dkim(dkim: DkimConfig, srs: SrsConfig) -> None:
    for algorithm in dkim.algorithms:
        if algorithm not in ("rsa-sha256", "ed25519-sha256"):
            raise ConfigError(
                "dkim.algorithms", f"expected rsa-sha256 or ed25519-sha256, not {algorithm!r}"
            )
    if not dkim.algorithms:
        raise ConfigError("dkim.algorithms", "name at least one")
    if not dkim.selector_prefix.isalnum() or not dkim.selector_prefix.isascii():
        raise ConfigError("dkim.selector_prefix", "letters and digits only (it starts a DNS label)")
    _at_least(dkim, "dkim", 0, "publish_wait", "retire_wait", "key_cache_seconds")
    if srs.domain and normalize_domain(srs.domain) is None:
        raise ConfigError("srs.domain", f"not a domain: {srs.domain!r}")
    _at_least(srs, "srs", 1, "max_age_days")
    if srs.max_age_days > 1000:
        raise ConfigError("srs.max_age_days", "at most 1000 (time stamps wrap after 1024 days)")


def _validate_delivery(delivery: DeliveryConfig) -> None:
    if delivery.tls not in ("none", "may", "encrypt", "verify"):
        raise ConfigError("delivery.tls", "expected none, may, encrypt or verify")
    if not 0 < delivery.mta_sts_port <= 65535:
        raise ConfigError("delivery.mta_sts_port", "expected a port from 1 to 65535")
    if delivery.tls_ca_file and not Path(delivery.tls_ca_file).is_file():
        raise ConfigError("delivery.tls_ca_file", f"no such file {delivery.tls_ca_file!r}")
    for key in ("max_in_flight", "destination_concurrency", "destination_recipients"):
        if getattr(delivery, key) < 1:
            raise ConfigError(f"delivery.{key}", "must be at least 1")
    if any(ch.isspace() or not ch.isprintable() for ch in delivery.helo_name):
        raise ConfigError("delivery.helo_name", f"not a host name: {delivery.helo_name!r}")
    if not 0 < delivery.smtp_port <= 65535:
        raise ConfigError("delivery.smtp_port", "expected a port number (1-65535)")
    if delivery.source_address:
        try:
            ipaddress.ip_address(delivery.source_address)
        except ValueError:
            raise ConfigError(
                "delivery.source_address",
                f"expected an IP address, got {delivery.source_address!r}",
            ) from None
    for server in delivery.dns_nameservers:
        try:
            ipaddress.ip_address(parse_nexthop(server, default_port=53).host)
        except ValueError:
            raise ConfigError(
                "delivery.dns_nameservers", f'expected "address" or "address:port", got {server!r}'
            ) from None
    for domain, target in delivery.transports.items():
        try:
            parse_nexthop(target, default_port=25)
        except ValueError as exc:
            raise ConfigError(f"delivery.transports.{domain}", str(exc)) from None


def load(path: Path | None) -> Config:
    """Read `path` (or ./mailfort.toml if it exists); defaults when there is no file."""
    if path is None:
        path = DEFAULT_PATH if DEFAULT_PATH.is_file() else None
    table: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                table = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(str(path), "no such file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), f"not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            # tomllib decodes before it parses, so this is not a TOMLDecodeError.
            raise ConfigError(str(path), f"not valid TOML: not UTF-8 at byte {exc.start}") from None
        except OSError as exc:
            raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
    config: Config = _build(Config, table)
    # Compared with the domain of normalized addresses, so "Example.TEST." must become theirs.
    domains = tuple(normalize_domain(d) or d for d in config.local_domains)
    config = dataclasses.replace(config, local_domains=domains)
    if _is_address(config.postmaster):
        config = dataclasses.replace(config, postmaster=normalize(config.postmaster))
    if path is not None:
        config = dataclasses.replace(config, source=path)
        if not config.data_dir.is_absolute():
            config = dataclasses.replace(config, data_dir=path.parent / config.data_dir)
        # Like data_dir: a relative path means beside the file, whatever the working directory.
        tls = config.tls
        beside = path.parent

        def resolved(value: str) -> str:
            return str(beside / value) if value and not Path(value).is_absolute() else value

        tls = dataclasses.replace(
            tls,
            cert=resolved(tls.cert),
            key=resolved(tls.key),
            acme_ca_file=resolved(tls.acme_ca_file),
        )
        config = dataclasses.replace(config, tls=tls)
        capacity = config.capacity
        if capacity.profile and not Path(capacity.profile).is_absolute():
            capacity = dataclasses.replace(capacity, profile=resolved(capacity.profile))
            config = dataclasses.replace(config, capacity=capacity)
        ca_file = config.delivery.tls_ca_file
        if ca_file and not Path(ca_file).is_absolute():
            delivery = dataclasses.replace(config.delivery, tls_ca_file=str(path.parent / ca_file))
            config = dataclasses.replace(config, delivery=delivery)
    validate(config)
    return config
