"""The plan: nodes for the targets, N+k, and each scenario by closed form and by simulation.

`make_plan` answers what `mailfort capacity plan` prints: the nodes the peak needs (closed form,
`sizing.py`), the nodes that survive losing k of them at the peak (N+k, checked by simulating
exactly that), the nodes needed hour by hour, the database's CPU at the peak, and for every
scenario of the workload the simulator's figures beside the closed form's, with the reasons
where they differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mailfort.capacity.demand import Costs, Demand, Node, costs, demand, planned_node
from mailfort.capacity.profile import Profile
from mailfort.capacity.queueing import drain_seconds, little_in_system
from mailfort.capacity.simulate import COMPARED, EVENT_BUDGET, SimResult, compared, simulate
from mailfort.capacity.sizing import Sizing, latency, nodes_needed_for
from mailfort.capacity.units import seconds
from mailfort.capacity.workload import HOUR, Scenario, Workload

# Closed form and simulation "agree" within this (relative; shares within 2 points).
AGREEMENT = 0.15


class PlanError(Exception):
    """A target no number of nodes can meet; the message says which and by how much."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClosedForm:
    accepted_per_second: float
    peak_queue: float
    refused_share: float
    drain_seconds: float  # inf: never drains at this load
    queue_drain_seconds: float  # the queue's part: the backlog and what piled up
    p99_time_to_mailbox: float | None  # None: no closed form (retries decide it)
    utilisation: float  # of the survivors' CPUs at the event

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted_per_second": round(self.accepted_per_second, 2),
            "peak_queue": round(self.peak_queue),
            "refused_share": round(self.refused_share, 4),
            "drain_seconds": _finite(self.drain_seconds),
            "queue_drain_seconds": _finite(self.queue_drain_seconds),
            "p99_time_to_mailbox_seconds": _finite(self.p99_time_to_mailbox),
            "utilisation": round(self.utilisation, 3),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioPlan:
    scenario: Scenario
    nodes: int
    simulated: SimResult
    closed: ClosedForm
    disagreements: tuple[tuple[str, str], ...]  # (figure, why)

    def as_dict(self, series: bool = True) -> dict[str, Any]:
        s, sim = self.scenario, self.simulated.as_dict()
        out: dict[str, Any] = {
            "name": s.name,
            "nodes": self.nodes,
            "nodes_lost": s.nodes_lost,
            "at_seconds": s.at_seconds,
            "backlog": s.backlog,
            "database_down_seconds": s.database_down_seconds,
            "remote_down_seconds": s.remote_down_seconds,
            "remote_down_share": s.remote_down_share,
            "warmup_seconds": s.warmup_seconds,
            "horizon_seconds": s.horizon_seconds,
            **sim,
            "closed_form": self.closed.as_dict(),
            "disagreements": [{"figure": f, "why": why} for f, why in self.disagreements],
        }
        if series:
            out["series"] = [
                {
                    "t": round(x.t, 1),
                    "offered": round(x.offered, 1),
                    "accepted": round(x.accepted, 1),
                    "refused": round(x.refused, 1),
                    "retried": round(x.retried, 1),
                    "delivered": round(x.delivered, 1),
                    "queue": round(x.queue, 1),
                    "waiting_senders": round(x.waiting_senders, 1),
                    "cpu_busy": round(x.cpu_busy, 4),
                }
                for x in self.simulated.series
            ]
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """A target the deployed cluster misses, by how much."""

    target: str
    limit: float
    value: float
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    profile: Profile
    workload: Workload
    costs: Costs
    node: Node
    peak: Demand
    peak_seconds: float
    sizing: Sizing
    nodes_for_failures: int
    deployed: int
    hourly: tuple[tuple[float, Demand, int], ...]  # (hour start, demand, nodes needed)
    failure_check: ScenarioPlan | None  # k nodes lost at the peak on N+k nodes
    scenarios: tuple[ScenarioPlan, ...]
    findings: tuple[Finding, ...]
    database_cpu_at_peak: float | None
    notes: tuple[str, ...] = field(default=())

    def as_dict(self, series: bool = True) -> dict[str, Any]:
        w, p = self.workload, self.profile
        lat = self.sizing.latency
        return {
            "nodes_needed": self.sizing.nodes,
            "nodes_needed_bound": self.sizing.bound,
            "nodes_for_failures": {
                "k": w.spare_nodes,
                "nodes": self.nodes_for_failures,
                "checked": None
                if self.failure_check is None
                else self.failure_check.as_dict(series=False),
            },
            "deployed_nodes": self.deployed,
            "peak": {
                "hour": int(self.peak_seconds // HOUR),
                "messages_per_second": round(self.peak.messages, 2),
                "deliveries_per_second": round(self.peak.deliveries, 2),
                "imap_sessions_per_second": round(self.peak.imap_sessions, 2),
                "pop3_sessions_per_second": round(self.peak.pop3_sessions, 2),
                "cpu_seconds_per_second": round(self.peak.cpu, 3),
                "utilisation_at_nodes_needed": round(lat.utilisation, 3),
                "p99_time_to_250_seconds": round(lat.p99_time_to_250, 4),
                "p99_time_to_mailbox_seconds": round(lat.p99_time_to_mailbox, 3),
                "database_cpu_seconds_per_second": _finite(self.database_cpu_at_peak),
            },
            "targets": {
                "p99_time_to_250_seconds": w.p99_time_to_250,
                "p99_time_to_mailbox_seconds": w.p99_time_to_mailbox,
                "max_utilisation": w.max_utilisation,
                "spare_nodes": w.spare_nodes,
            },
            "node": {"cpus": self.node.cpus, "servers": self.node.servers},
            "hourly": [
                {
                    "hour": int(t // HOUR),
                    "messages_per_second": round(d.messages, 2),
                    "cpu_seconds_per_second": round(d.cpu, 3),
                    "nodes_needed": n,
                }
                for t, d, n in self.hourly
            ],
            "findings": [
                {"target": f.target, "limit": f.limit, "value": _finite(f.value), "text": f.text}
                for f in self.findings
            ],
            "profile": {
                "mailfort_version": p.mailfort_version,
                "measured_at": p.measured_at,
                "machine": p.machine.hostname,
                "cpu_model": p.machine.cpu_model,
                "cpus": p.machine.cpus,
                "engine": p.engine,
            },
            "notes": list(self.notes),
            "scenarios": [s.as_dict(series) for s in self.scenarios],
        }


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, 3)


# --- the closed forms of a scenario -----------------------------------------------------------


def closed_form(profile: Profile, workload: Workload, scenario: Scenario, nodes: int) -> ClosedForm:
    """Steady state at the event's load: what survives, what is refused, how long a drain takes.

    First attempts only (no retries), the rate fixed at the event's hour, every node's CPUs fully
    usable, the backlog drained by the CPU and the delivery slots left over.
    """
    c = costs(profile, workload)
    node = planned_node(profile, workload)
    survivors = nodes - scenario.nodes_lost
    d = demand(workload, c, scenario.at_seconds)
    capacity = survivors * node.cpus
    # Offered and refused first attempts, averaged over the horizon (the fluid limit). The
    # admission gate guards the foreground (messages being accepted, sessions): it is refused
    # only past the survivors' CPUs; remote deliveries run on what the foreground leaves.
    per_delivery = c.delivery / node.speed + workload.remote_delivery_seconds
    slots = survivors * workload.delivery_concurrency / per_delivery
    offered_sum = refused_sum = starved_sum = 0.0
    points = 240
    dt_seconds = scenario.horizon_seconds / points
    for i in range(points):
        t = scenario.at_seconds + (i + 0.5) * dt_seconds
        dt = demand(workload, c, t)
        front = dt.cpu - dt.deliveries * c.delivery
        over = max(0.0, 1 - capacity / front) if front > 0 else 0.0
        if t - scenario.at_seconds < scenario.database_down_seconds:
            over = 1.0
        offered_sum += dt.messages
        refused_sum += dt.messages * over
        left = max(0.0, capacity - front * (1 - over))
        delivered = min(dt.deliveries * (1 - over), left / c.delivery, slots)
        starved_sum += (dt.deliveries * (1 - over) - delivered) * dt_seconds
    refused = refused_sum / offered_sum if offered_sum else 0.0
    accepted = (offered_sum - refused_sum) / points
    front_now = d.cpu - d.deliveries * c.delivery
    refused_now = max(0.0, 1 - capacity / front_now) if front_now > 0 else 0.0
    starving = d.cpu > capacity
    # Deliveries: network-bound at `concurrency` per node, or CPU-bound on what is left over.
    spare_cpu = max(0.0, capacity - d.cpu)
    by_cpu = d.deliveries + spare_cpu / c.delivery
    delivery_capacity = min(slots, by_cpu)
    baseline = little_in_system(d.deliveries, per_delivery)
    backlog = float(scenario.backlog)
    held = baseline * scenario.nodes_lost / nodes  # deliveries the lost nodes had in flight
    backlog += held
    drain = drain_seconds(backlog, delivery_capacity, d.deliveries * (1 - refused_now))
    if held >= 0.5:
        # ... come back only when their leases expire, and then take a delivery's time.
        drain = max(drain, workload.lease_seconds + per_delivery)
    peak = baseline + backlog + starved_sum
    if scenario.remote_down_seconds:
        piled = d.deliveries * scenario.remote_down_share * scenario.remote_down_seconds
        peak += piled
        drain = scenario.remote_down_seconds + drain_seconds(
            backlog + piled, delivery_capacity, d.deliveries
        )
    if refused_now > 0 or starving:
        drain = math.inf  # the overload goes on while the load stays: no closed form ends it
    queue_drain = drain
    # Messages refused, or cut off on a lost node before their 250, come back when their
    # senders retry: the last after the longest first delay.
    first_retry = max(sender.retry_seconds[0] for sender in workload.senders)
    if scenario.database_down_seconds:
        drain = max(drain, scenario.database_down_seconds + first_retry)
    # Little's law: the messages the lost nodes held between DATA and 250 at that instant.
    cut_off = (
        scenario.nodes_lost
        * d.messages
        / nodes
        * (c.accept / node.speed + profile.commit_p50_seconds)
    )
    if cut_off >= 0.5:
        drain = max(drain, first_retry)
    p99: float | None
    if refused_now > 0 or starving or (refused > 0.01 and not scenario.database_down_seconds):
        p99 = None  # retries decide it: only the simulation knows
    else:
        p99 = latency(profile, workload, c, d, node, survivors).p99_time_to_mailbox
        if refused > 0.01:  # more than 1 % wait for their sender's first retry
            p99 = max(p99, max(sender.retry_seconds[0] for sender in workload.senders))
        if workload.remote_share and backlog and math.isfinite(queue_drain):
            # Remote mail offered at u into a FIFO drain waits about (drain − u): the share
            # waiting longer than w is remote_share·(drain − w)/horizon; set it to 1 %.
            behind = queue_drain - 0.01 * scenario.horizon_seconds / workload.remote_share
            p99 = max(p99, behind)
    return ClosedForm(
        accepted_per_second=accepted,
        peak_queue=peak,
        refused_share=refused,
        drain_seconds=drain,
        queue_drain_seconds=queue_drain,
        p99_time_to_mailbox=p99,
        utilisation=d.cpu / capacity if capacity else math.inf,
    )


def _differs(name: str, sim: float | None, closed: float | None) -> bool:
    if sim is None or closed is None:
        return (sim is None) != (closed is None)
    if not math.isfinite(closed):
        return True
    if name == "refused_share":
        return abs(sim - closed) > 0.02
    top = max(abs(sim), abs(closed))
    return top > 0 and abs(sim - closed) / top > AGREEMENT


def disagreements(
    workload: Workload, scenario: Scenario, sim: SimResult, closed: ClosedForm
) -> tuple[tuple[str, str], ...]:
    """Each figure where the two differ by more than `AGREEMENT`, with the reasons that apply."""
    sim_values, closed_values = compared(sim), compared(closed)
    reasons = []
    if sim.retried_share > 0.005:
        reasons.append(
            f"refused messages come back on their senders' schedules ({sim.retried_share:.1%}"
            " of attempts were retries); the closed form counts first attempts only"
        )
    if workload.per_second is None and scenario.horizon_seconds > HOUR:
        reasons.append(
            "the load changes with the hour during the run; the closed form takes the rate at"
            " the event's hour"
        )
    if sim.limit_reached and closed.refused_share == 0:
        reasons.append(
            "bursts reach a node's admission limit before its CPUs are fully busy; the closed"
            " form refuses only above 100 % CPU"
        )
    if sim.max_utilisation >= 0.98:
        reasons.append(
            "with every CPU busy, remote deliveries wait for a CPU behind the messages being"
            " accepted, and the queue grows; the closed form serves them first"
        )
    elif sim.max_utilisation >= 0.8:
        reasons.append(
            f"at {sim.max_utilisation:.0%} CPU deliveries also wait for a CPU; the closed form"
            " gives the backlog all the spare CPU at once"
        )
    if scenario.nodes_lost and workload.lease_seconds:
        reasons.append(
            f"a lost node's deliveries wait {workload.lease_seconds:g} s for their leases to expire"
        )
    if scenario.remote_down_seconds:
        reasons.append(
            "deliveries to the destination that was down wait for their next retry (up to"
            f" {workload.retry_max_seconds:g} s) after it is back"
        )
    if sim.cohort > 1:
        reasons.append(f"the simulation ran in cohorts of {sim.cohort} messages")
    found = []
    for name in COMPARED:
        if _differs(name, sim_values[name], closed_values[name]):
            found.append((name, "; ".join(reasons)))
    return tuple(found)


def plan_scenario(
    profile: Profile,
    workload: Workload,
    scenario: Scenario,
    nodes: int,
    *,
    seed: int = 1,
    budget: int = EVENT_BUDGET,
) -> ScenarioPlan:
    sim = simulate(profile, workload, scenario, nodes, seed=seed, budget=budget)
    closed = closed_form(profile, workload, scenario, nodes)
    return ScenarioPlan(
        scenario=scenario,
        nodes=nodes,
        simulated=sim,
        closed=closed,
        disagreements=disagreements(workload, scenario, sim, closed),
    )


# --- the plan ---------------------------------------------------------------------------------


def _impossible(profile: Profile, workload: Workload, c: Costs, d: Demand, node: Node) -> str:
    """Which target no node count meets, and by how much (an idle cluster's own times)."""
    idle = latency(profile, workload, c, d, node, 1_000_000)
    parts = []
    if idle.p99_time_to_250 > workload.p99_time_to_250:
        parts.append(
            f"p99 time to 250 target {workload.p99_time_to_250:g} s cannot be met: an idle node"
            f" takes {idle.p99_time_to_250:.3f} s"
            f" ({idle.p99_time_to_250 / workload.p99_time_to_250:.1f} × the target: the largest"
            " messages' CPU time and the store's p99 commit)"
        )
    if idle.p99_time_to_mailbox > workload.p99_time_to_mailbox:
        parts.append(
            f"p99 time to mailbox target {workload.p99_time_to_mailbox:g} s cannot be met: an"
            f" idle node takes {idle.p99_time_to_mailbox:.3f} s"
            f" ({idle.p99_time_to_mailbox / workload.p99_time_to_mailbox:.1f} × the target)"
        )
    return "; ".join(parts) or "no node count meets the targets"


def make_plan(
    profile: Profile,
    workload: Workload,
    *,
    nodes: int | None = None,
    seed: int = 1,
    check_failures: bool = True,
    budget: int = EVENT_BUDGET,
) -> Plan:
    """The whole plan; `nodes` overrides the workload's deployed count. Raises PlanError when
    no number of nodes meets a target."""
    c = costs(profile, workload)
    node = planned_node(profile, workload)
    peak_t = workload.peak_seconds
    peak = demand(workload, c, peak_t)
    sizing = nodes_needed_for(profile, workload, peak)
    if sizing is None:
        raise PlanError(_impossible(profile, workload, c, peak, node))
    k = workload.spare_nodes
    for_failures = sizing.nodes + k
    deployed = nodes or workload.nodes or for_failures
    hourly = []
    hours = [0.0] if workload.per_second is not None else [h * HOUR for h in range(24)]
    for t in hours:
        d = demand(workload, c, t)
        at_hour = nodes_needed_for(profile, workload, d)
        hourly.append((t, d, at_hour.nodes if at_hour else -1))
    findings = []
    if deployed < sizing.nodes:
        lat = latency(profile, workload, c, peak, node, deployed)
        findings.append(
            Finding(
                target="nodes_needed",
                limit=sizing.nodes,
                value=deployed,
                text=(
                    f"{deployed} nodes are {sizing.nodes - deployed} short of the {sizing.nodes}"
                    f" the peak needs: utilisation {lat.utilisation:.0%} (target"
                    f" {workload.max_utilisation:.0%}), p99 time to 250"
                    f" {seconds(lat.p99_time_to_250)} (target {workload.p99_time_to_250:g} s)"
                ),
            )
        )
    elif deployed < for_failures:
        findings.append(
            Finding(
                target="spare_nodes",
                limit=k,
                value=deployed - sizing.nodes,
                text=(
                    f"{deployed} nodes leave {deployed - sizing.nodes} spare at the peak;"
                    f" the target is {k} (N+k = {for_failures})"
                ),
            )
        )
    db_cpu = None if c.db_per_message is None else peak.messages * c.db_per_message
    db_cpus = workload.database_cpus
    if db_cpu is not None and db_cpus is not None and db_cpu > db_cpus * workload.max_utilisation:
        findings.append(
            Finding(
                target="database_cpus",
                limit=db_cpus,
                value=db_cpu,
                text=(
                    f"the database needs {db_cpu:.1f} CPUs at the peak, more than"
                    f" {workload.max_utilisation:.0%} of its {workload.database_cpus:g}:"
                    " shard accounts over more databases (DESIGN.md)"
                ),
            )
        )
    failure_check = None
    if check_failures and k > 0:
        check = Scenario(
            name=f"{k} node{'s' if k > 1 else ''} lost at the peak hour (N+k check)",
            at_seconds=peak_t,
            nodes_lost=k,
            warmup_seconds=1800.0 if workload.per_second is None else 60.0,
            horizon_seconds=2 * HOUR if workload.per_second is None else 300.0,
        )
        failure_check = plan_scenario(
            profile, workload, check, for_failures, seed=seed, budget=budget
        )
        if failure_check.simulated.refused_share > 0.001:
            findings.append(
                Finding(
                    target="nodes_for_failures",
                    limit=0.0,
                    value=failure_check.simulated.refused_share,
                    text=(
                        f"with {for_failures} nodes and {k} lost at the peak the simulation"
                        f" still refuses {failure_check.simulated.refused_share:.2%} of attempts"
                        " (bursts above the survivors' limit)"
                    ),
                )
            )
    scenarios = []
    for s in workload.scenarios:
        sp = plan_scenario(profile, workload, s, deployed, seed=seed, budget=budget)
        scenarios.append(sp)
        p99 = sp.simulated.p99_time_to_mailbox
        if p99 is not None and p99 > workload.p99_time_to_mailbox:
            findings.append(
                Finding(
                    target=f"scenario:{s.name}",
                    limit=workload.p99_time_to_mailbox,
                    value=p99,
                    text=(
                        f"{s.name}: p99 time to mailbox {seconds(p99)}, target"
                        f" {workload.p99_time_to_mailbox:g} s"
                        f" ({p99 / workload.p99_time_to_mailbox:.1f} ×)"
                    ),
                )
            )
    notes = []
    if workload.node_cpus and workload.node_cpus != profile.node_cpus:
        notes.append(
            f"nodes of {workload.node_cpus:g} CPUs planned from a profile measured on"
            f" {profile.node_cpus:g}: assumes CPUs as fast as {profile.machine.cpu_model}"
        )
    if any(sp.simulated.cohort > 1 for sp in scenarios):
        notes.append(
            "large loads were simulated in cohorts (each simulated message stands for several);"
            " their p99 times to 250 are the closed form's"
        )
    return Plan(
        profile=profile,
        workload=workload,
        costs=c,
        node=node,
        peak=peak,
        peak_seconds=peak_t,
        sizing=sizing,
        nodes_for_failures=for_failures,
        deployed=deployed,
        hourly=tuple(hourly),
        failure_check=failure_check,
        scenarios=tuple(scenarios),
        findings=tuple(findings),
        database_cpu_at_peak=db_cpu,
        notes=tuple(notes),
    )
