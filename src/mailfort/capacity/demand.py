"""What a workload asks of the cluster, in CPU seconds per second, priced by a profile.

Every unit of work has a measured CPU cost on the profile's machine; the model assumes a planned
node's CPUs are as fast as the measured ones and scales only their number (`[cluster]
node_cpus`). A node is a group of `servers` CPUs each of `speed` (a node held to 0.4 of a CPU by
a quota is one server of speed 0.4; a node with 8 CPUs, eight of speed 1), the servers of the
queueing model (`queueing.py`) and of the simulator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mailfort.capacity.profile import Profile
from mailfort.capacity.workload import Workload, WorkloadError


@dataclass(frozen=True, slots=True, kw_only=True)
class Costs:
    """CPU seconds of each kind of work on a planned node (at speed 1)."""

    accept: float  # one accepted message, averaged over the workload's size mix
    accept_by_class: tuple[tuple[str, float, float], ...]  # (class, share, cpu seconds)
    accept_p99: float  # the cost of the size class holding the 99th percentile of messages
    delivery: float  # one remote delivery
    imap_session: float  # login with its header FETCH
    pop3_session: float
    db_per_message: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """A planned node: `servers` CPUs of `speed` each (1 = the profile's CPU)."""

    cpus: float

    @property
    def servers(self) -> int:
        return max(1, math.ceil(self.cpus - 1e-9))

    @property
    def speed(self) -> float:
        return self.cpus / self.servers


@dataclass(frozen=True, slots=True, kw_only=True)
class Demand:
    """Work offered to the whole cluster per second at one moment."""

    messages: float
    deliveries: float
    imap_sessions: float
    pop3_sessions: float
    cpu: float  # CPU seconds per second, all of it

    @property
    def jobs(self) -> float:
        return self.messages + self.deliveries + self.imap_sessions + self.pop3_sessions

    @property
    def mean_service(self) -> float:
        """CPU seconds per job, over the mix (the 1/μ of the queueing model)."""
        return self.cpu / self.jobs if self.jobs else 0.0


def costs(profile: Profile, workload: Workload) -> Costs:
    by_class = []
    for name, share in workload.sizes.items():
        found = profile.class_named(name)
        if found is None:
            known = ", ".join(c.name for c in profile.accept)
            raise WorkloadError(f"messages.sizes: the profile has no size class {name!r} ({known})")
        by_class.append((name, share, found.cpu_seconds, found.max_bytes or math.inf))
    by_class.sort(key=lambda c: c[3])
    mean = sum(share * cpu for _, share, cpu, _ in by_class)
    seen = 0.0
    p99 = by_class[-1][2]
    for _, share, cpu, _ in by_class:
        seen += share
        if seen >= 0.99:
            p99 = cpu
            break
    return Costs(
        accept=mean,
        accept_by_class=tuple((n, s, c) for n, s, c, _ in by_class),
        accept_p99=p99,
        delivery=profile.remote_delivery_cpu,
        imap_session=profile.imap_login_cpu
        + profile.header_fetch_seconds(workload.header_fetch_messages),
        pop3_session=profile.pop3_session_cpu,
        db_per_message=profile.db_cpu_per_message,
    )


def planned_node(profile: Profile, workload: Workload) -> Node:
    return Node(cpus=workload.node_cpus or profile.node_cpus)


def demand(workload: Workload, c: Costs, t: float) -> Demand:
    """The cluster's offered work at simulation time `t` (first attempts, no retries)."""
    messages = workload.messages_per_second(t)
    deliveries = messages * workload.remote_share
    imap = workload.logins_per_second("imap", t)
    pop3 = workload.logins_per_second("pop3", t)
    cpu = (
        messages * c.accept
        + deliveries * c.delivery
        + imap * c.imap_session
        + pop3 * c.pop3_session
    )
    return Demand(
        messages=messages, deliveries=deliveries, imap_sessions=imap, pop3_sessions=pop3, cpu=cpu
    )


def nodes_for_utilisation(cpu: float, node: Node, max_utilisation: float) -> int:
    """Fewest nodes that carry `cpu` CPU seconds per second with each at most this busy."""
    return max(1, math.ceil(cpu / (node.cpus * max_utilisation) - 1e-9))
