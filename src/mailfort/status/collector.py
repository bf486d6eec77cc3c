"""Health signals of the whole cluster, read from the store.

Every node writes its trailing metrics window (`NodeMetrics.snapshot()`) into its heartbeat; the
collector adds up the windows of the *live* nodes (a dead node's last numbers describe the past)
and reads the queue's health from one index, giving one :class:`HealthSignals` snapshot:

- what the queue owes: items due, never tried and not in flight, and the oldest of them
  (`MailHealth.queue_health`; retries wait for destinations that failed, which strangers can make);
- live over expected nodes: expected are nodes registered as active (draining or gone nodes left
  on purpose), live are those among them whose heartbeat is fresh (`DEAD_AFTER` intervals);
- logins per protocol (count and p95), admission refusals per minute, store commit p95 and
  ``250``→mailbox p95, from the merged windows;
- remote delivery's reach (`queue/reach.py`): attempts a server answered are successes; silent
  attempts the platform owns are failures, and so are silent attempts to destinations that
  answered lately, but each destination network's count at most `network_share` of all the
  other attempts (`platform_failures`). One network going silent (a provider's outage, or a
  stranger's own server that took a bounce and then stopped answering) cannot move the rate
  below 1 / (1 + share); our own network failing silences many networks at once.

It also sets the cluster gauges of this node's `/metrics` (queue, nodes by state), so that every
node exports them, not only the status leader.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from mailfort.cluster.status import effective_state
from mailfort.metrics import (
    PROTOCOLS,
    REMOTE_OURS,
    REMOTE_REACHED,
    REMOTE_UNREACHABLE,
    NodeMetrics,
    merge_snapshots,
    quantile,
)
from mailfort.status.signals import HealthSignals, LoginSignals, Protocol
from mailfort.store.records import NodeInfo
from mailfort.store.roles import ClusterHealth

NODE_STATES = ("active", "draining", "dead", "gone")


def platform_failures(
    reached: int, ours: int, unreachable: Mapping[str, int], network_share: float
) -> int:
    """Failed remote attempts charged to the platform: all of `ours`, and of each destination
    network's silent attempts (`unreachable`) at most `network_share` of every other attempt."""
    total = reached + ours + sum(unreachable.values())
    charged = float(ours)
    for silent in unreachable.values():
        charged += min(float(silent), network_share * (total - silent))
    return int(charged)


def signals_from(
    nodes: Iterable[NodeInfo],
    *,
    now: float,
    heartbeat_seconds: float,
    window_seconds: float,
    queue_depth: int = 0,
    oldest_due: float | None = None,
    network_share: float = 0.25,
) -> HealthSignals:
    """The snapshot for these nodes and queue numbers (pure: the clock comes in as `now`)."""
    live: list[NodeInfo] = []
    expected = 0
    for node in nodes:
        state = effective_state(node, now, heartbeat_seconds)
        if node.state == "active":
            expected += 1
            if state == "active":
                live.append(node)
    windows = [w for w in (n.load.get("window") for n in live) if isinstance(w, Mapping)]
    merged = merge_snapshots(windows)
    counts: Mapping[str, int] = merged["counts"]
    hists: Mapping[str, list[int]] = merged["hists"]
    logins: dict[Protocol, LoginSignals] = {}
    refusals: dict[Protocol, float] = {}
    # Counts cover the window; a node younger than the window under-reports a little, which errs
    # on the side of calm.
    per_minute = 60.0 / window_seconds if window_seconds > 0 else 0.0
    for name in PROTOCOLS:
        protocol = Protocol(name)
        ok = counts.get(f"login.{name}.ok", 0)
        failed = counts.get(f"login.{name}.fail", 0)
        p95 = quantile(hists.get(f"login.{name}"), 0.95)
        if ok or failed or p95 is not None:
            logins[protocol] = LoginSignals(ok + failed, ok, p95)
        refused = counts.get(f"refused.{name}", 0)
        if refused:
            refusals[protocol] = refused * per_minute
    reached = counts.get(REMOTE_REACHED, 0)
    silent = {
        name.removeprefix(REMOTE_UNREACHABLE): n
        for name, n in counts.items()
        if name.startswith(REMOTE_UNREACHABLE)
    }
    failed = platform_failures(reached, counts.get(REMOTE_OURS, 0), silent, network_share)
    return HealthSignals(
        queue_depth=queue_depth,
        oldest_queue_age=None if oldest_due is None else max(0.0, now - oldest_due),
        accept_to_mailbox_p95=quantile(hists.get("accept_to_mailbox"), 0.95),
        remote_attempts=reached + failed,
        remote_successes=reached,
        logins=logins,
        admission_refusals_per_minute=refusals,
        store_commit_p95=quantile(hists.get("store_commit"), 0.95),
        live_nodes=len(live),
        expected_nodes=expected,
    )


class SignalCollector:
    """Reads the cluster's health signals from the store (two queries) and sets the gauges."""

    def __init__(
        self,
        store: ClusterHealth,
        *,
        heartbeat_seconds: float,
        window_seconds: float,
        metrics: NodeMetrics | None = None,
        network_share: float = 0.25,
    ) -> None:
        self.store = store
        self.heartbeat_seconds = heartbeat_seconds
        self.window_seconds = window_seconds
        self.metrics = metrics
        self.network_share = network_share
        self.nodes: list[NodeInfo] = []  # as read by the last collection

    async def collect(self, now: float) -> HealthSignals:
        depth, oldest = await self.store.queue_health(now)
        nodes = self.nodes = await self.store.list_nodes()
        signals = signals_from(
            nodes,
            now=now,
            heartbeat_seconds=self.heartbeat_seconds,
            window_seconds=self.window_seconds,
            queue_depth=depth,
            oldest_due=oldest,
            network_share=self.network_share,
        )
        if self.metrics is not None:
            self._gauges(signals, nodes, now)
        return signals

    def _gauges(self, signals: HealthSignals, nodes: list[NodeInfo], now: float) -> None:
        m = self.metrics
        assert m is not None
        m.queue_depth.set(signals.queue_depth)
        m.queue_oldest.set(signals.oldest_queue_age or 0.0)
        states: Counter[str] = Counter(
            effective_state(n, now, self.heartbeat_seconds) for n in nodes
        )
        for state in NODE_STATES:
            m.nodes.labels(state).set(states.get(state, 0))
