"""What a node measures: Prometheus metrics for scrapers, and a trailing window for the status.

Every recorder (`login`, `refused`, `store_commit` …) feeds two sinks at once:

- Prometheus metrics in the node's own `CollectorRegistry` (served at `/metrics` on the `http`
  listener), named and labelled by prometheus-client conventions (`_total` counters, `_seconds`
  histograms, base units);
- a `WindowStats` of the last `window` seconds, which the heartbeat writes into the store so that
  the status leader can judge the *cluster's* health from every live node's numbers (counts add
  up, latency histograms merge bucket by bucket, so a cluster-wide p95 is exact to a bucket).

This module is a leaf (prometheus-client and stdlib only) so that any layer may record into it.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

# A `_created` timestamp series beside every counter and histogram doubles what each scrape
# carries and tells an operator nothing the process start time does not.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Upper bounds (seconds) shared by Prometheus histograms and the window histograms; the last
# bucket is +Inf. Wide on purpose: a login takes milliseconds, mail delayed by an outage hours.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0, math.inf,
)  # fmt: skip

PROTOCOLS = ("smtp", "submission", "imap", "pop3", "http")
# Refusals a client earns by its own conduct: too many connections from its address ("ip") or
# network ("network"), more than its network's share of the overload gate ("client"), too many
# failed logins ("throttled"). They are exported, but they are not the platform turning
# customers away, so they stay out of the window the public status signals read: otherwise a
# stranger could publish an outage by knocking too often.
CLIENT_REASONS = frozenset({"ip", "network", "client", "throttled"})

# How a login ended (`NodeMetrics.login`). Only "success" and "error" are the platform's doing
# and reach the window the public status signals read: a wrong password or an unknown user
# ("rejected") is the customer's or a stranger's doing, and so is a login refused unchecked for
# too many failures ("throttled"); counted in the window, any stranger could publish an outage
# by failing to log in. "error" is the platform failing a login: a store error, the password
# checks all busy, the node refusing while overloaded, a real account that logged in correctly
# but could not be served.
LOGIN_SUCCESS = "success"
LOGIN_REJECTED = "rejected"
LOGIN_THROTTLED = "throttled"
LOGIN_ERROR = "error"
LOGIN_RESULTS = (LOGIN_SUCCESS, LOGIN_REJECTED, LOGIN_THROTTLED, LOGIN_ERROR)
# Window names of remote delivery's reach (`queue/reach.py`): attempts a server answered, silent
# attempts that are the platform's own fault, and silent attempts to destinations that answered
# lately, one name per network they answered from (the status collector caps each network).
REMOTE_REACHED = "remote.reached"
REMOTE_OURS = "remote.ours"
REMOTE_UNREACHABLE = "remote.unreachable@"
# Window names of the work a node did, for the live capacity margin (`capacity/margin.py`):
# messages answered 250 and their bytes, and the process's CPU time in milliseconds (counted at
# each heartbeat, so the window holds the CPU spent within it).
ACCEPTED = "accepted"
ACCEPTED_BYTES = "accepted.bytes"
CPU_MS = "process.cpu_ms"


class WindowStats:
    """Counters and latency histograms over a trailing window, kept in `slot`-second buckets.

    Memory is bounded: (window / slot) slots × the names in use. Callers pass the clock.
    """

    def __init__(self, window: float = 300.0, slot: float = 10.0) -> None:
        self.window = window
        self.slot = slot
        self._slots: dict[int, tuple[dict[str, int], dict[str, list[int]]]] = {}

    def _current(self, now: float) -> tuple[dict[str, int], dict[str, list[int]]]:
        index = int(now // self.slot)
        entry = self._slots.get(index)
        if entry is None:
            entry = self._slots[index] = ({}, {})
            oldest = index - int(self.window // self.slot)
            for stale in [i for i in self._slots if i <= oldest]:
                del self._slots[stale]
        return entry

    def count(self, name: str, now: float, n: int = 1) -> None:
        counts = self._current(now)[0]
        counts[name] = counts.get(name, 0) + n

    def observe(self, name: str, value: float, now: float) -> None:
        hists = self._current(now)[1]
        buckets = hists.get(name)
        if buckets is None:
            buckets = hists[name] = [0] * len(LATENCY_BUCKETS)
        buckets[bisect.bisect_left(LATENCY_BUCKETS, value)] += 1

    def snapshot(self, now: float) -> dict[str, Any]:
        """JSON-able totals of the window ending at `now`: {"counts": {}, "hists": {}}."""
        oldest = int(now // self.slot) - int(self.window // self.slot)
        live = [v for i, v in self._slots.items() if i > oldest]
        return merge_snapshots({"counts": counts, "hists": hists} for counts, hists in live)


def merge_snapshots(snapshots: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Add up window snapshots (of several slots or several nodes)."""
    counts: dict[str, int] = {}
    hists: dict[str, list[int]] = {}
    for snap in snapshots:
        for name, n in (snap.get("counts") or {}).items():
            counts[name] = counts.get(name, 0) + int(n)
        for name, buckets in (snap.get("hists") or {}).items():
            into = hists.setdefault(name, [0] * len(LATENCY_BUCKETS))
            for i, n in enumerate(buckets[: len(into)]):
                into[i] += int(n)
    return {"counts": counts, "hists": hists}


def quantile(buckets: list[int] | None, q: float) -> float | None:
    """The upper bound of the bucket holding quantile `q`; None without observations.

    The +Inf bucket reports the largest finite bound: "more than that" is all we know.
    """
    if not buckets:
        return None
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for bound, n in zip(LATENCY_BUCKETS, buckets, strict=False):
        seen += n
        if seen >= rank and n:
            return bound if math.isfinite(bound) else LATENCY_BUCKETS[-2]
    return LATENCY_BUCKETS[-2]


# A node served by several processes (`serve --workers N`) runs prometheus-client's multiprocess
# mode: each process records into files of its own in this directory (set for the workers by
# the supervisor before they start, as prometheus-client reads it at import), and `/metrics`
# reads them all: counters and histograms add up over every worker that ever ran, so totals
# never go back when one is restarted; each gauge says how the live workers' values combine.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# Cluster-wide gauges are set by whichever worker leads the status evaluation: its latest value.
_CLUSTER: Final = "livemostrecent"


def multiprocess_dir() -> str | None:
    """The multiprocess mode's directory when this process is one worker of several."""
    return os.environ.get(MULTIPROCESS_DIR) or None


def _every_process() -> CollectorRegistry:
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


class NodeMetrics:
    """One node's metrics; pass it to whatever records. `registry` is what `/metrics` serves:
    this process's metrics, or every worker's in multiprocess mode."""

    def __init__(self, *, window: float = 300.0, clock: Any = None) -> None:
        import time

        self.clock = clock or time.time
        # At least six slots: with a single 10-s slot, a 10-s window would be emptied at every
        # multiple of 10 s, and a fault counted just before would vanish before it is judged.
        self.window = WindowStats(window=window, slot=min(10.0, max(0.1, window / 6)))
        r = CollectorRegistry(auto_describe=True)
        self.registry = _every_process() if multiprocess_dir() else r
        # process_cpu_seconds_total and the resident memory, for `capacity measure
        # --from-metrics`: CPU per accepted message from two scrapes. One process only: the
        # multiprocess mode cannot add up several processes' CPU (each reports its own).
        ProcessCollector(registry=r)
        self.logins = Counter(
            "mailfort_logins", "Login attempts by protocol and result", ["protocol", "result"],
            registry=r,
        )  # fmt: skip
        self.login_seconds = Histogram(
            "mailfort_login_duration_seconds",
            "Time to answer a login, failure delay excluded (throttled refusals not observed)",
            ["protocol"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.password_checks = Counter(
            "mailfort_password_verifications",
            "Password hashes verified (argon2 runs; remembered successes cost none)", registry=r,
        )  # fmt: skip
        self.refusals = Counter(
            "mailfort_admission_refusals",
            "Temporary refusals of new work (421/451, NO [UNAVAILABLE], -ERR [SYS/TEMP], 503)",
            ["protocol", "reason"], registry=r,
        )  # fmt: skip
        self.commit_seconds = Histogram(
            "mailfort_store_commit_duration_seconds", "Time for a durable store commit",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.loop_lag = Gauge(
            "mailfort_event_loop_lag_seconds", "How late the event loop ran a timer", registry=r,
            multiprocess_mode="livemax",
        )  # fmt: skip
        self.concurrency_limit = Gauge(
            "mailfort_concurrency_limit", "Current adaptive admission limit", ["scope"], registry=r,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.in_flight = Gauge(
            "mailfort_in_flight", "Work admitted and not yet finished", ["scope"], registry=r,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.accepted = Counter(
            "mailfort_messages_accepted", "Messages answered with 250", ["listener"], registry=r
        )
        self.rate_limited = Counter(
            "mailfort_submission_rate_limited",
            "Submissions refused at an account's hourly bound ([submission] messages_per_hour,"
            " recipients_per_hour); the log names the account (a stolen password?)",
            ["limit"], registry=r,
        )  # fmt: skip
        self.remote = Counter(
            "mailfort_remote_deliveries",
            "Remote delivery attempts per recipient by result (delivered, deferred, bounced)",
            ["result"], registry=r,
        )  # fmt: skip
        self.accept_to_delivery = Histogram(
            "mailfort_accept_to_delivery_seconds",
            "Time from 250 to the message in a mailbox or at the next hop",
            ["kind"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.reach = Counter(
            "mailfort_remote_reach",
            "Remote delivery attempts per recipient by whose fault a failure would be: reached"
            " (a server answered), theirs (no such domain; silent and never answered us), ours"
            " (our resolver, our relay), unreachable (silent, though it answered lately, or nothing"
            " answered lately)",
            ["verdict"], registry=r,
        )  # fmt: skip
        self.breakers_open = Gauge(
            "mailfort_delivery_breakers_open", "Destinations whose circuit breaker is open",
            registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.connections = Gauge(
            "mailfort_connections", "Open client connections", ["protocol"], registry=r,
            multiprocess_mode="livesum",
        )  # fmt: skip
        # Cluster-wide gauges, set by the status collector from the store.
        self.queue_depth = Gauge(
            "mailfort_queue_depth",
            "Queue items the platform owes: due, never tried, not in flight (cluster)", registry=r,
            multiprocess_mode=_CLUSTER,
        )  # fmt: skip
        self.queue_oldest = Gauge(
            "mailfort_queue_oldest_due_age_seconds",
            "Age of the oldest queue item the platform owes (cluster)", registry=r,
            multiprocess_mode=_CLUSTER,
        )  # fmt: skip
        self.nodes = Gauge(
            "mailfort_nodes", "Nodes by state (cluster)", ["state"], registry=r,
            multiprocess_mode=_CLUSTER,
        )  # fmt: skip
        self.component_state = Gauge(
            "mailfort_component_status",
            "Published component state: 0 operational, 1 degraded, 2 partial, 3 major outage",
            ["component"], registry=r, multiprocess_mode=_CLUSTER,
        )  # fmt: skip
        self.incidents_open = Gauge(
            "mailfort_incidents_open", "Open incidents (cluster)", registry=r,
            multiprocess_mode=_CLUSTER,
        )  # fmt: skip
        self.spare_nodes = Gauge(
            "mailfort_cluster_spare_nodes",
            "Nodes the cluster can lose at its current load without refusing mail (NaN: no"
            " [capacity] profile; negative: short already)", registry=r,
            multiprocess_mode=_CLUSTER,
        )  # fmt: skip
        self.margin_low = Gauge(
            "mailfort_cluster_margin_low",
            "1 while the spare nodes are fewer than [capacity] spare_nodes (the k of N+k)",
            registry=r, multiprocess_mode=_CLUSTER,
        )  # fmt: skip
        # Unknown until a profile and the heartbeats say otherwise: 0 would read as "no spare".
        self.spare_nodes.set(math.nan)

        self.acme_orders = Counter(
            "mailfort_acme_orders", "ACME certificate orders by result (issued, failed)",
            ["result"], registry=r,
        )  # fmt: skip
        self.certificate_expiry = Gauge(
            "mailfort_certificate_expiry_timestamp_seconds",
            "When the certificate the node serves expires (0: not from ACME yet)", registry=r,
            multiprocess_mode="livemin",
        )  # fmt: skip

    # ---- recorders (cheap; called on hot paths) ------------------------------------------------

    def login(self, protocol: str, result: str, seconds: float) -> None:
        """A login on `protocol` ended with `result` (one of `LOGIN_RESULTS`) after `seconds`
        of the node's work (not the client's time, not the failure delay)."""
        self.logins.labels(protocol, result).inc()
        if result != LOGIN_THROTTLED:
            self.login_seconds.labels(protocol).observe(seconds)
        if result not in (LOGIN_SUCCESS, LOGIN_ERROR):
            return
        # The window's names stay ("fail" now means "error"): the collector reads them as before.
        now = self.clock()
        self.window.count(f"login.{protocol}.{'ok' if result == LOGIN_SUCCESS else 'fail'}", now)
        self.window.observe(f"login.{protocol}", seconds, now)

    def password_verified(self) -> None:
        self.password_checks.inc()

    def refused(self, protocol: str, reason: str, n: int = 1) -> None:
        self.refusals.labels(protocol, reason).inc(n)
        if reason not in CLIENT_REASONS:
            self.window.count(f"refused.{protocol}", self.clock(), n)

    def store_commit(self, seconds: float) -> None:
        self.commit_seconds.observe(seconds)
        self.window.observe("store_commit", seconds, self.clock())

    def message_accepted(self, listener: str, size: int = 0) -> None:
        self.accepted.labels(listener).inc()
        now = self.clock()
        self.window.count(ACCEPTED, now)
        if size > 0:
            self.window.count(ACCEPTED_BYTES, now, size)

    def process_cpu(self, seconds: float) -> None:
        """CPU time the process spent since the last call (the heartbeat calls it)."""
        if seconds > 0:
            self.window.count(CPU_MS, self.clock(), round(seconds * 1000))

    def submission_rate_limited(self, limit: str) -> None:
        """`limit`: messages or recipients (at MAIL/RCPT), hour (taken by racing sessions)."""
        self.rate_limited.labels(limit).inc()

    def remote_attempt(self, result: str, n: int = 1) -> None:
        """`result` is delivered, deferred or bounced; `n` recipients. Exported only: the status
        judges remote delivery by its reach (`remote_reach`), which strangers cannot forge."""
        self.remote.labels(result).inc(n)

    def remote_reach(self, verdict: str, n: int = 1, network: str | None = None) -> None:
        """`n` recipients' attempts judged `verdict` (`queue/reach.py`); for "unreachable", the
        network the destination answered from."""
        self.reach.labels(verdict).inc(n)
        now = self.clock()
        if verdict == "reached":
            self.window.count(REMOTE_REACHED, now, n)
        elif verdict == "ours":
            self.window.count(REMOTE_OURS, now, n)
        elif verdict == "unreachable":
            self.window.count(f"{REMOTE_UNREACHABLE}{network}", now, n)

    def delivered(self, kind: str, seconds: float) -> None:
        """A message reached a mailbox (`kind="local"`) or the next hop (`"remote"`)."""
        self.accept_to_delivery.labels(kind).observe(seconds)
        # Incoming mail is judged by the time to *our* mailboxes; a slow remote MX is the
        # outgoing side's business (judged by queue age and remote success) and must not make
        # Incoming mail look degraded.
        self.window.observe(
            "accept_to_mailbox" if kind == "local" else "accept_to_next_hop", seconds, self.clock()
        )

    def snapshot(self) -> dict[str, Any]:
        """The window for the heartbeat (JSON-able)."""
        return self.window.snapshot(self.clock())
