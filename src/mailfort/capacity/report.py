"""The plan for people (plain text) and for scripts (JSON)."""

from __future__ import annotations

import json

from mailfort.capacity.plan import Plan, ScenarioPlan
from mailfort.capacity.simulate import COMPARED, compared
from mailfort.capacity.units import count, rate, seconds, share
from mailfort.capacity.workload import HOUR

FORMATS = {
    "accepted_per_second": ("accepted", rate),
    "peak_queue": ("peak queue", count),
    "refused_share": ("refused (4xx)", share),
    "queue_drain_seconds": ("queue drained", seconds),
    "drain_seconds": ("all settled", seconds),
}


def _clock(t: float, constant: bool) -> str:
    if constant:
        return f"t={t:g} s"
    t %= 86400
    return f"{int(t // HOUR):02d}:{int(t % HOUR // 60):02d}"


def scenario_text(sp: ScenarioPlan, constant: bool) -> list[str]:
    s, sim, cf = sp.scenario, sp.simulated, sp.closed
    what = []
    if s.nodes_lost:
        what.append(f"{s.nodes_lost} of {sp.nodes} nodes lost")
    if s.backlog:
        what.append(f"{s.backlog:,} messages queued")
    if s.database_down_seconds:
        what.append(f"database away {seconds(s.database_down_seconds)}")
    if s.remote_down_seconds:
        what.append(
            f"a destination with {s.remote_down_share:.0%} of remote mail down"
            f" {seconds(s.remote_down_seconds)}"
        )
    lines = [
        f"Scenario: {s.name}",
        f"  at {_clock(s.at_seconds, constant)} on {sp.nodes} nodes: {', '.join(what) or 'nothing'}"
        f" (simulated {seconds(s.warmup_seconds)} before and {seconds(s.horizon_seconds)} after)",
        f"  {'':<24}{'simulated':>14}{'closed form':>14}",
    ]
    sim_values, cf_values = compared(sim), compared(cf)
    for key in COMPARED:
        label, fmt = FORMATS[key]
        sim_text = fmt(sim_values[key])
        if key.endswith("drain_seconds") and sim_values[key] is None:
            sim_text = f"> {seconds(s.horizon_seconds)}"
        lines.append(f"  {label:<24}{sim_text:>14}{fmt(cf_values[key]):>14}")
    lines.append(
        f"  {'p99 time to mailbox':<24}{seconds(sim.p99_time_to_mailbox):>14}"
        f"{seconds(cf.p99_time_to_mailbox):>14}"
    )
    lines.append(
        f"  retries {share(sim.retried_share)} of attempts; busiest node"
        f" {sim.max_utilisation:.0%} CPU; limit reached: {'yes' if sim.limit_reached else 'no'};"
        f" senders gave up on {count(sim.gave_up)}"
    )
    for figure, why in sp.disagreements:
        lines.append(f"  {FORMATS[figure][0]} differs: {why}")
    return lines


def text_report(plan: Plan) -> str:
    w, p, lat = plan.workload, plan.profile, plan.sizing.latency
    constant = w.per_second is not None
    peak = plan.peak
    lines = [
        f"Capacity plan — profile: mailfort {p.mailfort_version} on {p.machine.hostname}"
        f" ({p.machine.cpu_model}, {p.engine}, measured {p.measured_at})",
        "",
        f"Load at the peak ({_clock(plan.peak_seconds, constant)}): {peak.messages:,.1f} messages/s"
        f" ({peak.deliveries:,.1f} remote), {peak.imap_sessions:,.1f} IMAP and"
        f" {peak.pop3_sessions:,.1f} POP3 sessions/s = {peak.cpu:,.2f} CPU seconds per second",
        f"Nodes needed at the peak: {plan.sizing.nodes} of {plan.node.cpus:g} CPU"
        f" (set by {plan.sizing.bound.replace('_', ' ')}: utilisation {lat.utilisation:.0%},"
        f" p99 time to 250 {seconds(lat.p99_time_to_250)}, p99 time to mailbox"
        f" {seconds(lat.p99_time_to_mailbox)})",
        f"With N+{w.spare_nodes}: {plan.nodes_for_failures} nodes; deployed: {plan.deployed}",
    ]
    if plan.database_cpu_at_peak is not None:
        lines.append(f"Database CPU at the peak: {plan.database_cpu_at_peak:,.2f} CPUs")
    if plan.failure_check is not None:
        fc = plan.failure_check.simulated
        lines.append(
            f"Check: {plan.failure_check.scenario.name} on {plan.nodes_for_failures} nodes —"
            f" refused {share(fc.refused_share)}, busiest node {fc.max_utilisation:.0%} CPU"
        )
    if not constant:
        lines.append("")
        lines.append(
            "Nodes needed by hour: "
            + " ".join(f"{h:02d}:{n}" for h, (_, _, n) in enumerate(plan.hourly))
        )
    for sp in plan.scenarios:
        lines.append("")
        lines.extend(scenario_text(sp, constant))
    lines.append("")
    if plan.findings:
        lines.append("Targets missed:")
        lines.extend(f"  - {f.text}" for f in plan.findings)
    else:
        lines.append("Every target is met.")
    for note in plan.notes:
        lines.append(f"Note: {note}")
    return "\n".join(lines) + "\n"


def json_report(plan: Plan, series: bool = True) -> str:
    return json.dumps(plan.as_dict(series=series), indent=2) + "\n"
