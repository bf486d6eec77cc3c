"""The live margin: how many nodes a running cluster can lose at its current load.

The status leader reads every live node's heartbeat window (`metrics.WindowStats`: accepted
messages and their bytes, remote delivery attempts, IMAP and POP3 logins, the process's CPU
seconds) and asks this module what that load needs. The work counted is priced with the
profile's measured costs; the CPU the nodes actually spent is the other estimate, and the larger
one is the demand, so that a profile that underestimates (a newer version, bigger messages, a
cost the profile never measured) cannot hide a lost margin. The nodes needed for that demand come
from the planner's closed form (`sizing.nodes_needed_for`), so the live figure and the plan agree.

What a stranger can add: only work the platform really did. Failed and throttled logins are not
in the window's login counts (`NodeMetrics.login`), so a wrong-password flood is priced at the
CPU it really cost (the process CPU), never as sessions served; refusals are not priced at all
(a refused connection costs little, and counting it as a message would let knocking move the
margin). The margin is an operator's signal, never a public one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from mailfort.capacity.demand import Demand, costs, nodes_for_utilisation, planned_node
from mailfort.capacity.profile import Profile
from mailfort.capacity.sizing import nodes_needed_for
from mailfort.capacity.workload import Workload, workload_from_dict


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeLoad:
    """One live node's work over the window (a node: every worker of one machine together)."""

    messages: int = 0
    message_bytes: int = 0
    deliveries: int = 0  # remote delivery attempts, per recipient
    imap_sessions: int = 0  # successful logins
    pop3_sessions: int = 0
    cpu_seconds: float | None = None  # the processes' CPU over the window; None: not reported


@dataclass(frozen=True, slots=True, kw_only=True)
class Margin:
    live: int  # live nodes
    needed: int  # nodes the current load needs under the targets
    spare_nodes: int  # the k of N+k
    profile_cpu: float  # CPU seconds per second, the counted work at the profile's prices
    measured_cpu: float | None  # CPU seconds per second the nodes spent
    node_capacity: float  # CPU seconds per second one node carries at max_utilisation
    bound: str  # what set `needed` (utilisation, or a latency target)

    @property
    def spare(self) -> int:
        """Nodes that may fail now without refusing mail (negative: already short)."""
        return self.live - self.needed

    @property
    def low(self) -> bool:
        return self.spare < self.spare_nodes

    @property
    def cpu(self) -> float:
        return max(self.profile_cpu, self.measured_cpu or 0.0)


def _accept_cost(profile: Profile, mean_bytes: float) -> tuple[float, str]:
    """CPU seconds of one message of `mean_bytes`, interpolated between the measured sizes (the
    cost grows about linearly with size), and the size class it falls in."""
    points = sorted((c.measured_bytes, c.cpu_seconds) for c in profile.accept)
    name = profile.size_class(int(mean_bytes)).name
    if mean_bytes <= points[0][0]:
        return points[0][1], name
    for (b0, c0), (b1, c1) in itertools.pairwise(points):
        if mean_bytes <= b1:
            return c0 + (c1 - c0) * (mean_bytes - b0) / (b1 - b0 or 1), name
    (b0, c0), (b1, c1) = points[-2:] if len(points) > 1 else (points[0], points[0])
    slope = (c1 - c0) / (b1 - b0) if b1 > b0 else 0.0
    return c1 + slope * (mean_bytes - b1), name


def margin(
    profile: Profile,
    loads: Sequence[NodeLoad],
    *,
    window_seconds: float,
    spare_nodes: int,
    max_utilisation: float,
    node_cpus: float | None = None,
) -> Margin:
    """The margin of `len(loads)` live nodes carrying these loads (pure)."""
    if window_seconds <= 0:
        raise ValueError("window_seconds must be > 0")
    messages = sum(x.messages for x in loads)
    size = sum(x.message_bytes for x in loads) / messages if messages else 0.0
    accept, _ = _accept_cost(profile, size)
    # The latency bound takes every message as one of the largest measured class: the window
    # knows only the mean size, and a class read from the mean would let a few small messages
    # added to big ones lower the p99 and show more margin under more load.
    largest = profile.accept[-1]
    shape = workload(profile, largest.name, max_utilisation, node_cpus)
    c = costs(profile, shape)
    per = 1.0 / window_seconds
    rates = Demand(
        messages=messages * per,
        deliveries=sum(x.deliveries for x in loads) * per,
        imap_sessions=sum(x.imap_sessions for x in loads) * per,
        pop3_sessions=sum(x.pop3_sessions for x in loads) * per,
        cpu=0.0,
    )
    profile_cpu = (
        rates.messages * accept
        + rates.deliveries * c.delivery
        + rates.imap_sessions * c.imap_session
        + rates.pop3_sessions * c.pop3_session
    )
    reported = [x.cpu_seconds for x in loads if x.cpu_seconds is not None]
    measured = sum(reported) * per if reported else None
    node = planned_node(profile, shape)
    # Utilisation bounds the nodes by all the CPU spent; the latency targets by the work counted
    # at its measured cost (CPU no job accounts for, timers and the heartbeat among it, would
    # make every job look seconds long and the targets unreachable).
    util_bound = nodes_for_utilisation(max(profile_cpu, measured or 0.0), node, max_utilisation)
    # The latency model sees that CPU as jobs of the costliest kind present: at the same
    # utilisation bigger jobs wait longer, so this errs on the safe side, and it keeps the count
    # monotone (with the planner's mean job, adding cheap work shortens the mean and the wait,
    # and more load would show as more margin).
    present = [
        cost
        for count, cost in (
            (rates.messages, largest.cpu_seconds),
            (rates.deliveries, c.delivery),
            (rates.imap_sessions, c.imap_session),
            (rates.pop3_sessions, c.pop3_session),
        )
        if count > 0
    ]
    heaviest = max(present, default=accept)
    as_jobs = Demand(
        messages=profile_cpu / heaviest,
        deliveries=0.0,
        imap_sessions=0.0,
        pop3_sessions=0.0,
        cpu=profile_cpu,
    )
    sizing = nodes_needed_for(profile, shape, as_jobs)
    if sizing is None:
        needed, bound = util_bound, "utilisation (a latency target no node count meets)"
    elif sizing.nodes > util_bound:
        needed, bound = sizing.nodes, sizing.bound
    else:
        needed, bound = util_bound, "utilisation"
    return Margin(
        live=len(loads),
        needed=needed,
        spare_nodes=spare_nodes,
        profile_cpu=profile_cpu,
        measured_cpu=measured,
        node_capacity=node.cpus * max_utilisation,
        bound=bound,
    )


def workload(
    profile: Profile, size_class: str, max_utilisation: float, node_cpus: float | None
) -> Workload:
    """The workload the sizing needs besides the demand: the size class of the messages seen,
    the targets' defaults, the live nodes' CPUs."""
    cluster: dict[str, object] = {}
    if node_cpus:
        cluster["node_cpus"] = node_cpus
    return workload_from_dict(
        {
            "mailboxes": {"count": 1},
            "messages": {"per_second": 0.0, "sizes": {size_class: 1.0}},
            "cluster": cluster,
            "targets": {"max_utilisation": max_utilisation},
        }
    )


def describe(m: Margin | None, unknown: str = "no [capacity] profile") -> str:
    """The line `mailfort cluster status` and `mailfort status show` print."""
    if m is None:
        return f"margin: unknown ({unknown})"
    nodes = "node" if abs(m.spare) == 1 else "nodes"
    cpu = f"{m.cpu:.2f} CPU s/s"
    if m.measured_cpu is not None and m.measured_cpu > m.profile_cpu:
        cpu += " measured"
    body = (
        f"{m.spare} spare {nodes} at current load (needs {m.needed} of {m.live}; k={m.spare_nodes};"
        f" {cpu}, {m.node_capacity:.2f} per node)"
    )
    if m.low:
        return f"margin: LOW — {body}"
    return f"margin: {body}"


def spare_or_nan(m: Margin | None) -> float:
    return math.nan if m is None else float(m.spare)
