"""How many nodes a load needs: the closed-form answer (steady state, M/M/c per node).

A node is `Node.servers` CPUs of `Node.speed`; the jobs (accepted messages, remote deliveries,
IMAP and POP3 sessions) share them, so each node is an M/M/c queue fed by its share of the
cluster's jobs with the mix's mean CPU time. Three things bound the count at a moment:
- utilisation: no node busier than `targets.max_utilisation` (the headroom that keeps the
  adaptive limit from refusing at ordinary peaks);
- p99 time to `250`: the wait for a CPU (Erlang C's tail) + the p99 size class's own CPU time +
  the store's p99 commit;
- p99 time to mailbox: time to `250` for local mail; for remote mail also the network time of a
  delivery and its own wait for a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mailfort.capacity.demand import Costs, Demand, Node, costs, demand, planned_node
from mailfort.capacity.profile import Profile
from mailfort.capacity.queueing import mmc_wait_quantile
from mailfort.capacity.workload import Workload

# Past this many nodes the search gives up: the plan is impossible, not merely large.
MAX_NODES = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Latency:
    """The closed form's answer for `nodes` nodes at one moment."""

    nodes: int
    utilisation: float  # of each node's CPUs
    p99_time_to_250: float  # inf when a node cannot keep up
    p99_time_to_mailbox: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizing:
    """Fewest nodes for the targets at one moment, and which bound set the number."""

    nodes: int
    bound: str  # utilisation | p99_time_to_250 | p99_time_to_mailbox
    latency: Latency


def latency(
    profile: Profile, workload: Workload, c: Costs, d: Demand, node: Node, nodes: int
) -> Latency:
    """p99 times and utilisation with the load `d` spread evenly over `nodes` nodes."""
    utilisation = d.cpu / (nodes * node.cpus) if nodes else math.inf
    if d.jobs <= 0:
        base = c.accept_p99 / node.speed + profile.commit_p99_seconds
        return Latency(nodes=nodes, utilisation=0.0, p99_time_to_250=base, p99_time_to_mailbox=base)
    arrivals = d.jobs / nodes
    rate = node.speed / d.mean_service  # jobs one CPU finishes per second
    wait = mmc_wait_quantile(arrivals, rate, node.servers, 0.99)
    to_250 = wait + c.accept_p99 / node.speed + profile.commit_p99_seconds
    to_mailbox = to_250
    if workload.remote_share > 0:
        to_mailbox = to_250 + wait + c.delivery / node.speed + workload.remote_delivery_seconds
    return Latency(
        nodes=nodes,
        utilisation=utilisation,
        p99_time_to_250=to_250,
        p99_time_to_mailbox=to_mailbox,
    )


def nodes_needed_for(profile: Profile, workload: Workload, d: Demand) -> Sizing | None:
    """Fewest nodes for load `d` under every target; None when no count meets them (a target
    below what one idle node achieves)."""
    c = costs(profile, workload)
    node = planned_node(profile, workload)
    util_bound = max(1, math.ceil(d.cpu / (node.cpus * workload.max_utilisation) - 1e-9))

    def meets(n: int) -> Latency | None:
        lat = latency(profile, workload, c, d, node, n)
        ok = (
            lat.p99_time_to_250 <= workload.p99_time_to_250
            and lat.p99_time_to_mailbox <= workload.p99_time_to_mailbox
        )
        return lat if ok else None

    # Latency falls as nodes are added: grow until the targets hold, then bisect back.
    bad, n = util_bound - 1, util_bound
    while meets(n) is None:
        if n >= MAX_NODES or latency(profile, workload, c, d, node, n).utilisation < 0.001:
            return None  # more nodes no longer help: a target below an idle node's time
        bad, n = n, min(MAX_NODES, n * 2)
    while n - bad > 1:
        mid = (n + bad) // 2
        if meets(mid) is None:
            bad = mid
        else:
            n = mid
    lat = meets(n)
    assert lat is not None
    if n == util_bound:
        bound = "utilisation"
    elif latency(profile, workload, c, d, node, n - 1).p99_time_to_250 > workload.p99_time_to_250:
        bound = "p99_time_to_250"
    else:
        bound = "p99_time_to_mailbox"
    return Sizing(nodes=n, bound=bound, latency=lat)


def nodes_needed_at(profile: Profile, workload: Workload, t: float) -> Sizing | None:
    """Fewest nodes for the workload's load at simulation time `t` (seconds since midnight)."""
    return nodes_needed_for(profile, workload, demand(workload, costs(profile, workload), t))
