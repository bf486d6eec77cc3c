"""The cluster's live capacity margin, from the heartbeats: an operator's signal, not a public one.

Every node computes it when it collects the health signals and exports it
(`mailfort_cluster_spare_nodes`, `mailfort_cluster_margin_low`); the status leader alone logs
`event=capacity_margin_low` when the spare nodes fall below `[capacity] spare_nodes` and
`event=capacity_margin_recovered` when they come back, once each. Nothing here reaches the
component states, incidents or the banner: a margin is a planning fact for the operator (add a
node before the next failure), not something customers can act on, and counting any part of it
into a public signal would let a stranger's load publish an outage that never happened.

A node is a machine: the workers of `serve --workers N` are cluster members named
`<node_name>-w<i>` (`cli_serve.worker_name`) and add up to one node of the profile's CPUs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

from mailfort.capacity.margin import Margin, NodeLoad, describe, margin, spare_or_nan
from mailfort.capacity.profile import Profile, ProfileError, load_profile
from mailfort.cluster.status import effective_state
from mailfort.config import CapacityConfig
from mailfort.metrics import (
    ACCEPTED,
    ACCEPTED_BYTES,
    CPU_MS,
    REMOTE_OURS,
    REMOTE_REACHED,
    REMOTE_UNREACHABLE,
    NodeMetrics,
    merge_snapshots,
)
from mailfort.store.records import NodeInfo
from mailfort.store.roles import Cluster

log = logging.getLogger("mailfort.status")

NO_PROFILE = "no [capacity] profile"
_WORKER = re.compile(r"^(?P<node>.+)-w\d+$")


def machine(name: str) -> str:
    """The node a cluster member belongs to: itself, or the node whose worker it is."""
    found = _WORKER.match(name)
    return found.group("node") if found else name


def node_loads(nodes: Iterable[NodeInfo], now: float, heartbeat_seconds: float) -> list[NodeLoad]:
    """The window of every live active node, its workers' windows added up."""
    windows: dict[str, list[Mapping[str, object]]] = {}
    for node in nodes:
        if node.state != "active" or effective_state(node, now, heartbeat_seconds) != "active":
            continue
        window = node.load.get("window")
        windows.setdefault(machine(node.name), []).append(
            window if isinstance(window, Mapping) else {}
        )
    loads = []
    for parts in windows.values():
        counts: Mapping[str, int] = merge_snapshots(parts)["counts"]
        deliveries = counts.get(REMOTE_REACHED, 0) + counts.get(REMOTE_OURS, 0)
        deliveries += sum(n for k, n in counts.items() if k.startswith(REMOTE_UNREACHABLE))
        cpu_ms = counts.get(CPU_MS)
        loads.append(
            NodeLoad(
                messages=counts.get(ACCEPTED, 0),
                message_bytes=counts.get(ACCEPTED_BYTES, 0),
                deliveries=deliveries,
                # Successful logins only: a failed or throttled one is priced at the CPU it
                # really cost (in cpu_ms), never as a session served.
                imap_sessions=counts.get("login.imap.ok", 0),
                pop3_sessions=counts.get("login.pop3.ok", 0),
                cpu_seconds=None if cpu_ms is None else cpu_ms / 1000.0,
            )
        )
    return loads


def live_profile(settings: CapacityConfig) -> tuple[Profile | None, str]:
    """The profile `[capacity]` names, or None and why the margin is unknown."""
    if not settings.profile:
        return None, NO_PROFILE
    try:
        return load_profile(settings.profile, any_version=settings.any_version), ""
    except ProfileError as exc:
        return None, f"profile unusable: {exc}"


def current_margin(
    settings: CapacityConfig,
    profile: Profile | None,
    nodes: Iterable[NodeInfo],
    *,
    now: float,
    window_seconds: float,
    heartbeat_seconds: float,
) -> Margin | None:
    if profile is None:
        return None
    return margin(
        profile,
        node_loads(nodes, now, heartbeat_seconds),
        window_seconds=window_seconds,
        spare_nodes=settings.spare_nodes,
        max_utilisation=settings.max_utilisation,
        node_cpus=settings.node_cpus or None,
    )


async def margin_line(
    settings: CapacityConfig, store: Cluster, *, window_seconds: float, heartbeat_seconds: float
) -> str:
    """The margin line of the operator's commands, from the store's heartbeats now."""
    profile, unknown = live_profile(settings)
    found = current_margin(
        settings,
        profile,
        await store.list_nodes(),
        now=await store.clock(),
        window_seconds=window_seconds,
        heartbeat_seconds=heartbeat_seconds,
    )
    return describe(found, unknown)


class MarginWatch:
    """Computes the margin at each status step, sets the gauges, logs a crossing of k."""

    def __init__(
        self,
        settings: CapacityConfig,
        *,
        window_seconds: float,
        heartbeat_seconds: float,
        metrics: NodeMetrics | None = None,
        profile: Profile | None = None,
        unknown: str = NO_PROFILE,
    ) -> None:
        self.settings = settings
        self.window_seconds = window_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.metrics = metrics
        self.profile = profile
        self.unknown = unknown
        self.last: Margin | None = None
        self._low: bool | None = None  # as last logged; None: nothing logged by this node yet

    @classmethod
    def from_config(
        cls,
        settings: CapacityConfig,
        *,
        window_seconds: float,
        heartbeat_seconds: float,
        metrics: NodeMetrics | None = None,
    ) -> MarginWatch:
        """Read the profile once; a bad one is said in one line and the node runs without a
        margin (a planning file must never keep a mail node from starting)."""
        profile, unknown = live_profile(settings)
        if profile is None and settings.profile:
            log.warning("event=capacity_profile_unusable margin=unknown error=%s", unknown)
        return cls(
            settings,
            window_seconds=window_seconds,
            heartbeat_seconds=heartbeat_seconds,
            metrics=metrics,
            profile=profile,
            unknown=unknown,
        )

    def describe(self) -> str:
        return describe(self.last, self.unknown)

    def update(self, nodes: Iterable[NodeInfo], now: float, *, leading: bool) -> Margin | None:
        found = current_margin(
            self.settings,
            self.profile,
            nodes,
            now=now,
            window_seconds=self.window_seconds,
            heartbeat_seconds=self.heartbeat_seconds,
        )
        self.last = found
        if self.metrics is not None:
            self.metrics.spare_nodes.set(spare_or_nan(found))
            self.metrics.margin_low.set(1 if found is not None and found.low else 0)
        if found is None or not leading:
            return found
        if found.low and self._low is not True:
            log.warning(
                "event=capacity_margin_low spare=%d k=%d needed=%d live=%d cpu=%.3f",
                found.spare,
                found.spare_nodes,
                found.needed,
                found.live,
                found.cpu,
            )
        elif not found.low and self._low is True:
            log.info(
                "event=capacity_margin_recovered spare=%d k=%d needed=%d live=%d",
                found.spare,
                found.spare_nodes,
                found.needed,
                found.live,
            )
        self._low = found.low
        return found
