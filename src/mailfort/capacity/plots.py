"""The plan as one self-contained HTML page: the text summary, plots (matplotlib, inline SVG)
and each scenario's figures, simulated beside the closed form."""

from __future__ import annotations

import html
import io
from typing import Any

from mailfort.capacity.plan import Plan, ScenarioPlan
from mailfort.capacity.report import FORMATS, text_report
from mailfort.capacity.simulate import COMPARED, compared
from mailfort.capacity.units import seconds
from mailfort.capacity.workload import HOUR
from mailfort.errors import MailfortError


class PlotsUnavailable(MailfortError):
    pass


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files, never a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotsUnavailable(
            "the HTML report draws with matplotlib: pip install 'mailfort[capacity]'"
        ) from None
    return plt


def _svg(fig: Any) -> str:
    out = io.StringIO()
    fig.savefig(out, format="svg", bbox_inches="tight")
    text = out.getvalue()
    return text[text.index("<svg") :]


def _hourly_plot(plt: Any, plan: Plan) -> str:
    fig, ax = plt.subplots(figsize=(8, 3.2))
    hours = [int(t // HOUR) for t, _, _ in plan.hourly]
    needed = [n for _, _, n in plan.hourly]
    ax.bar(hours, needed, color="#4c78a8", label="nodes needed (targets)")
    ax.axhline(plan.nodes_for_failures, color="#f58518", linestyle="--", label="N+k")
    ax.axhline(plan.deployed, color="#54a24b", label="deployed")
    ax.set_xlabel("hour of day")
    ax.set_ylabel("nodes")
    ax.set_xticks(range(0, 24, 2))
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title("Nodes needed by hour")
    svg = _svg(fig)
    plt.close(fig)
    return svg


def _scenario_plot(plt: Any, sp: ScenarioPlan, constant: bool) -> str:
    sim = sp.simulated
    scale = 1.0 if constant else 1 / HOUR
    t = [(x.t - (sim.event if constant else 0.0)) * scale for x in sim.series]
    event = 0.0 if constant else sim.event * scale
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    top.plot(t, [x.queue for x in sim.series], color="#4c78a8", label="queue (remote items)")
    top.plot(
        t, [x.waiting_senders for x in sim.series], color="#e45756", label="held by senders (4xx)"
    )
    top.set_ylabel("messages")
    top.legend(loc="upper right", fontsize="small")
    step = sim.step
    middle.plot(t, [x.offered / step for x in sim.series], color="#9d755d", label="offered")
    middle.plot(t, [x.accepted / step for x in sim.series], color="#54a24b", label="accepted")
    middle.plot(t, [x.refused / step for x in sim.series], color="#e45756", label="refused")
    middle.plot(t, [x.retried / step for x in sim.series], color="#b279a2", label="retries")
    middle.set_ylabel("per second")
    middle.legend(loc="upper right", fontsize="small")
    bottom.plot(t, [x.cpu_busy * 100 for x in sim.series], color="#f58518")
    bottom.axhline(sp.closed.utilisation * 100, color="#f58518", linestyle=":", linewidth=1)
    bottom.set_ylabel("CPU busy per node, %")
    bottom.set_xlabel(
        "seconds from the event" if constant else "hour of day (event at the dashed line)"
    )
    for ax in (top, middle, bottom):
        ax.axvline(event, color="grey", linestyle="--", linewidth=1)
    top.set_title(sp.scenario.name)
    svg = _svg(fig)
    plt.close(fig)
    return svg


def _row(label: str, sim: str, closed: str, differs: bool) -> str:
    mark = ' class="differs"' if differs else ""
    return (
        f"<tr{mark}><th>{html.escape(label)}</th><td>{html.escape(sim)}</td>"
        f"<td>{html.escape(closed)}</td></tr>"
    )


def _scenario_table(sp: ScenarioPlan) -> str:
    sim, cf = sp.simulated, sp.closed
    differing = {f for f, _ in sp.disagreements}
    sim_values, cf_values = compared(sim), compared(cf)
    rows = []
    for key in COMPARED:
        label, fmt = FORMATS[key]
        sim_text = fmt(sim_values[key])
        if key.endswith("drain_seconds") and sim_values[key] is None:
            sim_text = f"> {seconds(sp.scenario.horizon_seconds)}"
        rows.append(_row(label, sim_text, fmt(cf_values[key]), key in differing))
    rows.append(
        _row(
            "p99 time to mailbox",
            seconds(sim.p99_time_to_mailbox),
            seconds(cf.p99_time_to_mailbox),
            False,
        )
    )
    why = "".join(
        f"<li><b>{html.escape(FORMATS[f][0])}</b> differs: {html.escape(w)}</li>"
        for f, w in sp.disagreements
    )
    return (
        "<table><tr><th></th><th>simulated</th><th>closed form</th></tr>"
        + "".join(rows)
        + "</table>"
        + (f"<ul>{why}</ul>" if why else "<p>The two agree within 15 %.</p>")
    )


def html_report(plan: Plan) -> str:
    plt = _pyplot()
    constant = plan.workload.per_second is not None
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>mailfort capacity plan</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}",
        "pre{background:#f6f6f6;padding:1rem;overflow-x:auto}",
        "table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.2rem .8rem;",
        "border-bottom:1px solid #ddd;text-align:right}th:first-child{text-align:left}",
        "tr.differs td{background:#fff3cd}svg{max-width:100%;height:auto}",
        "</style></head><body><h1>Capacity plan</h1>",
        f"<pre>{html.escape(text_report(plan))}</pre>",
    ]
    if not constant:
        parts.append("<h2>Nodes by hour</h2>" + _hourly_plot(plt, plan))
    checks = [plan.failure_check] if plan.failure_check else []
    for sp in [*checks, *plan.scenarios]:
        parts.append(f"<h2>{html.escape(sp.scenario.name)}</h2>")
        parts.append(_scenario_table(sp))
        parts.append(_scenario_plot(plt, sp, constant))
    parts.append("</body></html>\n")
    return "".join(parts)
