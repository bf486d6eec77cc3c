"""A typed snapshot of health signals, and the thresholds that judge them.

The snapshot is what a node (or the cluster, aggregated from the store) measured over its recent
window — typically the last one to five minutes. Values that could not be measured (nothing happened
in the window) are ``None`` or a zero count and are *not judged*: no traffic is not an outage.

Thresholds come in two shapes: a :class:`Ceiling` for values where higher is worse (latency, depth,
age, refusals) and a :class:`Floor` for values where lower is worse (success rates, live nodes).
Each has a ``degraded`` and a ``down`` limit and an optional ``major`` limit. Crossing ``degraded``
makes a component *degraded*, crossing ``down`` a *partial outage*,
crossing ``major`` a *major outage*.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from types import MappingProxyType


class Protocol(StrEnum):
    """The listeners whose logins and admission refusals are measured."""

    SMTP = "smtp"
    SUBMISSION = "submission"
    IMAP = "imap"
    POP3 = "pop3"
    HTTP = "http"


class Severity(IntEnum):
    """How bad one signal is, ordered so that ``max()`` gives the worst."""

    NORMAL = 0
    DEGRADED = 1
    DOWN = 2
    MAJOR = 3


@dataclass(frozen=True, slots=True)
class LoginSignals:
    """Logins on one protocol in the window: attempts, successes, p95 latency in seconds."""

    attempts: int = 0
    successes: int = 0
    p95_latency: float | None = None

    def __post_init__(self) -> None:
        if self.attempts < 0 or not 0 <= self.successes <= self.attempts:
            raise ValueError("need 0 <= successes <= attempts")

    @property
    def success_rate(self) -> float | None:
        return None if self.attempts == 0 else self.successes / self.attempts


@dataclass(frozen=True, slots=True)
class HealthSignals:
    """One snapshot of the health signals; durations in seconds, rates per minute.

    Every signal measures the platform, not what strangers send (anyone can make mailfort send
    bounces to dead domains, or knock too often):

    - ``queue_depth`` and ``oldest_queue_age`` count the mail the platform owes: due, never tried,
      and not in flight. A retry waits for a destination that failed (a forged sender's dead
      domain), an item in flight for a remote server: neither is a backlog of ours.
    - ``remote_attempts`` / ``remote_successes`` measure *reach*: attempts a server answered
      (delivered or refused: a refusal is the destination's decision) are successes; silent
      attempts count as failures only where the platform is to blame (`queue/reach.py`).
    - ``admission_refusals_per_minute`` leaves out what a client earned itself (too many
      connections or failed logins of its own: `metrics.CLIENT_REASONS`).

    ``expected_nodes`` is the number of nodes that should be live (registered and not drained).
    """

    queue_depth: int = 0
    oldest_queue_age: float | None = None
    accept_to_mailbox_p95: float | None = None
    remote_attempts: int = 0
    remote_successes: int = 0
    logins: Mapping[Protocol, LoginSignals] = field(default_factory=dict)
    admission_refusals_per_minute: Mapping[Protocol, float] = field(default_factory=dict)
    store_commit_p95: float | None = None
    live_nodes: int = 1
    expected_nodes: int = 1

    def __post_init__(self) -> None:
        if self.remote_attempts < 0 or not 0 <= self.remote_successes <= self.remote_attempts:
            raise ValueError("need 0 <= remote_successes <= remote_attempts")
        if self.live_nodes < 0 or self.expected_nodes < 0 or self.queue_depth < 0:
            raise ValueError("counts must not be negative")
        # Freeze the mappings so a snapshot really is a snapshot.
        object.__setattr__(self, "logins", MappingProxyType(dict(self.logins)))
        object.__setattr__(
            self,
            "admission_refusals_per_minute",
            MappingProxyType(dict(self.admission_refusals_per_minute)),
        )

    @property
    def remote_success_rate(self) -> float | None:
        """Share of judged remote attempts that reached a server, ``None`` without attempts."""
        return None if self.remote_attempts == 0 else self.remote_successes / self.remote_attempts

    @property
    def live_node_fraction(self) -> float | None:
        """Live nodes over expected nodes, ``None`` when no node is expected."""
        if self.expected_nodes == 0:
            return None
        return min(1.0, self.live_nodes / self.expected_nodes)

    def login(self, protocol: Protocol) -> LoginSignals:
        return self.logins.get(protocol, LoginSignals())

    def refusals(self, protocol: Protocol) -> float:
        return self.admission_refusals_per_minute.get(protocol, 0.0)


@dataclass(frozen=True, slots=True)
class Finding:
    """Why a signal is not normal: its name, the value seen and the limit it crossed.

    ``signal`` is a stable key (``"store_commit_p95"``, ``"login_success_rate"`` …) for message
    catalogs; ``protocol`` says which listener for per-protocol signals.
    """

    signal: str
    value: float
    limit: float
    severity: Severity
    protocol: Protocol | None = None


@dataclass(frozen=True, slots=True)
class Ceiling:
    """Limits where higher is worse: above ``degraded``, above ``down``, above ``major``."""

    degraded: float
    down: float
    major: float | None = None

    def __post_init__(self) -> None:
        if not self.degraded <= self.down or (self.major is not None and self.major < self.down):
            raise ValueError("need degraded <= down <= major")

    def judge(self, signal: str, value: float | None, protocol: Protocol | None = None) -> Finding:
        if value is not None:
            if self.major is not None and value > self.major:
                return Finding(signal, value, self.major, Severity.MAJOR, protocol)
            if value > self.down:
                return Finding(signal, value, self.down, Severity.DOWN, protocol)
            if value > self.degraded:
                return Finding(signal, value, self.degraded, Severity.DEGRADED, protocol)
        return Finding(signal, value or 0.0, self.degraded, Severity.NORMAL, protocol)


@dataclass(frozen=True, slots=True)
class Floor:
    """Limits where lower is worse: below ``degraded``, below ``down``, below ``major``."""

    degraded: float
    down: float
    major: float | None = None

    def __post_init__(self) -> None:
        if not self.degraded >= self.down or (self.major is not None and self.major > self.down):
            raise ValueError("need degraded >= down >= major")

    def judge(self, signal: str, value: float | None, protocol: Protocol | None = None) -> Finding:
        if value is not None:
            if self.major is not None and value < self.major:
                return Finding(signal, value, self.major, Severity.MAJOR, protocol)
            if value < self.down:
                return Finding(signal, value, self.down, Severity.DOWN, protocol)
            if value < self.degraded:
                return Finding(signal, value, self.degraded, Severity.DEGRADED, protocol)
        return Finding(
            signal, 0.0 if value is None else value, self.degraded, Severity.NORMAL, protocol
        )


@dataclass(frozen=True, slots=True)
class LoginThresholds:
    """Login health for one protocol.

    - ``success_rate`` — degraded below 80 %, partial outage below 50 %, major outage below 10 %.
    - ``p95_latency`` — degraded above 2 s, partial outage above 10 s (clients start timing out),
      major outage above 30 s (most clients have given up).
    - ``min_attempts`` — 20: fewer attempts in the window are too few to judge a rate or a p95.

    Attempts are what the platform did: successes and server-side failures (store errors,
    timeouts, password checks all busy, refused while overloaded), never a wrong password, an
    unknown user or a login refused for too many failures (`metrics.LOGIN_RESULTS`), so no
    stranger can move these signals by failing to log in.
    """

    success_rate: Floor = Floor(degraded=0.80, down=0.50, major=0.10)
    p95_latency: Ceiling = Ceiling(degraded=2.0, down=10.0, major=30.0)
    min_attempts: int = 20


@dataclass(frozen=True, slots=True)
class StatusThresholds:
    """All thresholds, one config object with documented defaults (seconds unless named otherwise).

    - ``accept_to_mailbox_p95`` — p95 time from ``250`` to the message in the mailbox: degraded
      above 60 s, partial outage above 10 min, major outage above 1 h.
      Healthy is well under a second.
    - ``queue_depth`` — items owed (due, never tried, not in flight): degraded above 10 000,
      partial outage above 100 000; no major limit (depth alone says nothing about whether mail
      moves). Scale with the installation.
    - ``oldest_queue_age`` — age of the oldest item owed: degraded above 15 min, partial outage
      above 1 h, major outage above 4 h (nothing goes out).
    - ``remote_success_rate`` — share of judged remote attempts that reached a server: degraded
      below 70 %, partial outage below 40 %, major outage below 5 %. One destination network
      alone cannot take it below 80 % (`status/collector.py`).
      ``remote_min_attempts`` — 20 judged attempts in the window before the rate is judged.
    - ``imap_login``, ``pop3_login``, ``http_login``, ``submission_login`` — see
      :class:`LoginThresholds`.
    - ``admission_refusals_per_minute`` — temporary refusals per listener: degraded above 30/min,
      partial outage above 300/min (customers are being turned away in numbers); no major limit.
    - ``store_commit_p95`` — degraded above 250 ms, partial outage above 2 s, major outage above
      10 s (every ``250``/``OK`` waits on a commit, so this touches every component).
    - ``live_node_fraction`` — live over expected nodes: degraded below 75 %, partial outage below
      50 %, major outage below 1 % (no node is left).
    """

    accept_to_mailbox_p95: Ceiling = Ceiling(degraded=60.0, down=600.0, major=3600.0)
    queue_depth: Ceiling = Ceiling(degraded=10_000, down=100_000)
    oldest_queue_age: Ceiling = Ceiling(degraded=900.0, down=3600.0, major=4 * 3600.0)
    remote_success_rate: Floor = Floor(degraded=0.70, down=0.40, major=0.05)
    remote_min_attempts: int = 20
    imap_login: LoginThresholds = LoginThresholds()
    pop3_login: LoginThresholds = LoginThresholds()
    http_login: LoginThresholds = LoginThresholds()
    submission_login: LoginThresholds = LoginThresholds()
    admission_refusals_per_minute: Ceiling = Ceiling(degraded=30.0, down=300.0)
    store_commit_p95: Ceiling = Ceiling(degraded=0.25, down=2.0, major=10.0)
    live_node_fraction: Floor = Floor(degraded=0.75, down=0.50, major=0.01)

    def login(self, protocol: Protocol) -> LoginThresholds:
        return {
            Protocol.IMAP: self.imap_login,
            Protocol.POP3: self.pop3_login,
            Protocol.HTTP: self.http_login,
        }.get(protocol, self.submission_login)
