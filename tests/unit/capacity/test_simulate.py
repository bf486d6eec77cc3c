"""The simulator against queueing theory, against its own bookkeeping, and against the plan's
closed forms where both apply."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailfort.capacity.plan import closed_form, make_plan
from mailfort.capacity.profile import profile_from_dict
from mailfort.capacity.queueing import mmc_wait_mean
from mailfort.capacity.simulate import SimResult, Simulation, simulate
from mailfort.capacity.workload import Scenario, workload_from_dict
from tests import capacity_support as cs


def _mmc(rate: float, cpus: float, cost: float) -> tuple[object, object]:
    """A pure M/M/c: one size class, no logins, no remote mail, no limit, an instant store."""
    profile = profile_from_dict(
        cs.profile(
            node_cpus=cpus,
            accept=[{"name": "small", "max_bytes": 0, "measured_bytes": 5000, "cpu_seconds": cost}],
            saturation_limit=1_000_000,
            commit_p50_seconds=1e-9,
            commit_p99_seconds=1e-9,
        )
    )
    workload = workload_from_dict(
        {
            "mailboxes": {"count": 1},
            "messages": {"per_second": rate, "sizes": {"small": 1.0}},
        }
    )
    return profile, workload


def test_the_mean_wait_matches_erlang_c_on_an_m_m_c_workload() -> None:
    servers, cost, load = 2, 0.01, 0.75
    rate = load * servers / cost
    profile, workload = _mmc(rate, servers, cost)
    scenario = Scenario(name="steady", at_seconds=60.0, warmup_seconds=60.0, horizon_seconds=300.0)
    sim = Simulation(profile, workload, scenario, 1, seed=7, exponential=True)  # type: ignore[arg-type]
    sim.run()
    waits = sim.waits
    assert len(waits) > 30_000
    # Batch means: waits are correlated, batches of thousands are close to independent.
    batches = [statistics.fmean(waits[i::40]) for i in range(40)]
    mean = statistics.fmean(batches)
    half_width = 3 * statistics.stdev(batches) / math.sqrt(len(batches))
    expected = mmc_wait_mean(rate, 1 / cost, servers)
    assert abs(mean - expected) <= half_width, (mean, expected, half_width)


def test_a_deterministic_service_waits_less_than_an_exponential_one() -> None:
    # M/D/c waits about half of M/M/c: a sign that service times are what the profile says.
    profile, workload = _mmc(150.0, 2, 0.01)
    scenario = Scenario(name="steady", at_seconds=30.0, warmup_seconds=30.0, horizon_seconds=120.0)
    fixed = Simulation(profile, workload, scenario, 1, seed=3)  # type: ignore[arg-type]
    fixed.run()
    varied = Simulation(profile, workload, scenario, 1, seed=3, exponential=True)  # type: ignore[arg-type]
    varied.run()
    assert statistics.fmean(fixed.waits) < 0.75 * statistics.fmean(varied.waits)


def _workload(**tables: object) -> object:
    return workload_from_dict(cs.workload(**tables))


CONSTANT = {"per_second": 400.0, "remote_share": 0.3, "sizes": {"small": 1.0}}
# 2.1 CPU seconds per second (1.2 of them accepting): three 1-CPU nodes carry it, one does not.
HEAVY = {**CONSTANT, "per_second": 1500.0}
QUICK_SENDERS = [{"name": "quick", "share": 1.0, "retry_seconds": [20.0, 40.0]}]


OVERLOAD = Scenario(
    name="two of three lost", at_seconds=10.0, nodes_lost=2, warmup_seconds=10.0,
    horizon_seconds=60.0,
)  # fmt: skip


@pytest.fixture(scope="module")
def overload() -> SimResult:
    profile = profile_from_dict(cs.PROFILE)
    w = _workload(messages=HEAVY, logins={}, senders=QUICK_SENDERS)
    return simulate(profile, w, OVERLOAD, 3)  # type: ignore[arg-type]


def test_every_message_is_accounted_for_under_overload(overload: SimResult) -> None:
    """First attempts = accepted + still held by their senders + given up (nothing vanishes)."""
    profile = profile_from_dict(cs.PROFILE)
    result = overload
    assert result.refused_share > 0.05 and result.limit_reached
    first = sum(x.offered - x.retried for x in result.series)
    accepted = sum(x.accepted for x in result.series)
    held = result.series[-1].waiting_senders
    # Messages in progress at the end (admitted, no 250 yet) are at most the limit.
    in_progress = first - accepted - held - result.gave_up
    assert 0 <= in_progress <= profile.saturation_limit * 1, in_progress


def test_refusals_never_fall_below_the_closed_forms_first_attempts(overload: SimResult) -> None:
    profile = profile_from_dict(cs.PROFILE)
    w = _workload(messages=HEAVY, logins={}, senders=QUICK_SENDERS)
    sim = overload
    closed = closed_form(profile, w, OVERLOAD, 3)  # type: ignore[arg-type]
    assert closed.refused_share > 0
    # Retries add load on top of the first attempts the closed form counts.
    assert sim.refused_share >= closed.refused_share - 0.02
    assert sim.retried_share > 0


def test_a_database_failover_refuses_for_its_length_and_then_drains() -> None:
    profile = profile_from_dict(cs.PROFILE)
    w = _workload(messages=CONSTANT, logins={}, senders=QUICK_SENDERS)
    s = Scenario(
        name="failover", at_seconds=30.0, database_down_seconds=15.0, warmup_seconds=30.0,
        horizon_seconds=150.0,
    )  # fmt: skip
    result = simulate(profile, w, s, 2)  # type: ignore[arg-type]
    # 15 s of 150 refused, then their retries come back and are taken.
    assert result.refused_share == pytest.approx(15 / 150, abs=0.03)
    assert result.drain_seconds is not None and 15 <= result.drain_seconds <= 15 + 20 + 30
    assert result.series[-1].waiting_senders == 0


def test_a_backlog_drains_at_the_delivery_slots_rate() -> None:
    profile = profile_from_dict(cs.PROFILE)
    w = _workload(
        messages=CONSTANT,
        logins={},
        cluster={"delivery_concurrency": 50, "remote_delivery_seconds": 0.5, "lease_seconds": 5},
    )
    s = Scenario(
        name="backlog", at_seconds=20.0, backlog=20_000, warmup_seconds=20.0,
        horizon_seconds=200.0,
    )  # fmt: skip
    sim = simulate(profile, w, s, 4)  # type: ignore[arg-type]
    closed = closed_form(profile, w, s, 4)  # type: ignore[arg-type]
    assert sim.drain_seconds is not None
    assert sim.drain_seconds == pytest.approx(closed.drain_seconds, rel=0.15)
    assert sim.peak_queue == pytest.approx(closed.peak_queue, rel=0.15)


@settings(max_examples=40, deadline=None)
@given(
    nodes=st.integers(2, 400),
    more=st.integers(1, 50),
    lost=st.integers(0, 1),
    backlog=st.integers(0, 2_000_000),
    hour=st.integers(0, 23),
)
def test_more_nodes_never_predict_a_longer_drain(
    nodes: int, more: int, lost: int, backlog: int, hour: int
) -> None:
    profile = profile_from_dict(cs.PROFILE)
    w = _workload(mailboxes={"count": 1_000_000})
    s = Scenario(name="x", at_seconds=hour * 3600.0, nodes_lost=lost, backlog=backlog)
    fewer = closed_form(profile, w, s, nodes)  # type: ignore[arg-type]
    bigger = closed_form(profile, w, s, nodes + more)  # type: ignore[arg-type]
    assert bigger.drain_seconds <= fewer.drain_seconds
    assert bigger.refused_share <= fewer.refused_share


def test_more_nodes_never_simulate_a_longer_drain_or_more_refusals() -> None:
    profile = profile_from_dict(cs.PROFILE)
    w = _workload(messages=CONSTANT, logins={}, senders=QUICK_SENDERS)
    s = Scenario(
        name="lost with backlog", at_seconds=10.0, nodes_lost=1, backlog=30_000,
        warmup_seconds=10.0, horizon_seconds=150.0,
    )  # fmt: skip
    results = [simulate(profile, w, s, n) for n in (2, 3, 5)]  # type: ignore[arg-type]
    drains = [r.drain_seconds if r.drain_seconds is not None else math.inf for r in results]
    assert drains == sorted(drains, reverse=True)
    refused = [r.refused_share for r in results]
    assert refused == sorted(refused, reverse=True)


def test_the_plan_sizes_for_the_peak_and_checks_n_plus_k() -> None:
    profile = profile_from_dict(cs.PROFILE)
    w = _workload(mailboxes={"count": 300_000})
    plan = make_plan(profile, w, budget=30_000)  # type: ignore[arg-type]
    data = plan.as_dict()
    assert data["nodes_for_failures"]["nodes"] == data["nodes_needed"] + 1
    assert data["peak"]["utilisation_at_nodes_needed"] <= 0.75
    # One node fewer than needed would pass the utilisation target at the peak.
    assert (
        plan.peak.cpu / ((plan.sizing.nodes - 1) * plan.node.cpus) > 0.75 or plan.sizing.nodes == 1
    )
    check = data["nodes_for_failures"]["checked"]
    assert check["refused_share"] == 0
    assert not plan.findings


def test_too_few_deployed_nodes_are_a_finding_with_the_shortfall() -> None:
    profile = profile_from_dict(cs.PROFILE)
    w = _workload(mailboxes={"count": 300_000})
    plan = make_plan(profile, w, nodes=1, check_failures=False)  # type: ignore[arg-type]
    assert plan.sizing.nodes > 1
    (finding,) = plan.findings
    assert f"{plan.sizing.nodes - 1} short of the {plan.sizing.nodes}" in finding.text
