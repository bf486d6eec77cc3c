"""The capacity prediction against a real cluster, bounded: three CPU-limited nodes, one killed.

The short version of benchmarks/capacity_validation.py (same harness, tests/capacity_cluster.py):
three nodes on PostgreSQL, each in a cgroup with 0.1 CPU, calibrated for a few seconds, then an
open-loop load at 70 % of what the calibration says three nodes carry, one node SIGKILLed, and
the load kept on. Checked: every message that got a 250 arrived exactly once (INBOX or the remote
MX; a delivery the dead node had in flight may arrive twice), every backlog item was delivered,
and the predictions hold: the refusal share, given the throughput the survivors really had, is
what the senders' retries make of it (closed form: attempts grow as (λ − μ)t/d) within ±35 %;
the simulator's peak queue (the backlog on top of the warmup's level) and the survivors'
throughput within ±35 %; and the closed form's throughput (twice what one overloaded node
accepted in the calibration) no more than 35 % too low and no more than 100 % too high.

Why these bounds and not the benchmark's ±15 %: the figures here come from 20 s after the kill
and one run, the calibration's phases are five seconds, and the machine (2 cores) is shared.
Measured on it: refusals by the retry arithmetic −9 %, +7 % and within 5 %; peak queue −5 %;
the closed form's throughput +7 %, +21 % and +57 % above the truth. It is one-sided on purpose:
the closed form takes a refused attempt as free, and here every refusal (a 421 at connect) costs
a survivor about 0.3 ms of CPU, so the more retries pile up the less the survivors accept
(benchmarks/README.md); the simulator charges each refusal the profile's `refusal_cpu`.
That the comparison can fail, e.g. for a profile whose CPU cost is three times the truth, is
shown in tests/unit/test_capacity_validation_compare.py, not by running the cluster twice.

The predictions: the closed form (the survivors' capacity, 2 × the calibrated saturation rate of
one node, and the refusal share with retries), and `mailfort capacity plan` on the profile and
workload this run wrote (throughput and peak queue; its refusal share and drain time are compared
by the benchmark, over 90 s and three runs, where they mean more).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests import capacity_cluster as cc
from tests.cluster_support import base_dsn

TOLERANCE = 0.35
OVER = 1.0  # how far above the measured throughput a prediction may be (see the docstring)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_the_prediction_holds_when_one_node_of_three_dies(tmp_path: Path) -> None:
    dsn = base_dsn()
    setup = cc.Setup(lease_seconds=5.0)
    try:
        cluster = cc.Cluster(setup, tmp_path, dsn)
    except cc.CgroupUnavailable as exc:
        pytest.skip(str(exc))
    started = time.monotonic()
    try:
        cal = cc.calibrate(cluster, phase_seconds=5.0, log=lambda *_: None)
        capacity = cal.saturation_rate  # one node, messages per second
        scenario = cc.Scenario(rate=0.7 * 3 * capacity, warmup=15.0, after=20.0, backlog=40)
        cc.write_profile(tmp_path / "profile.json", setup, cal, cc.node_rss(cluster.pids[1]))
        (tmp_path / "workload.toml").write_text(cc.workload_text(setup, scenario.rate, scenario))
        measured = cc.run_scenario(cluster, scenario, log=lambda *_: None)
    finally:
        cluster.close()
    took = time.monotonic() - started
    assert measured.arrivals == "", measured.arrivals
    seen = measured.observed
    predicted = cc.closed_form(
        rate=scenario.rate,
        survivors=2,
        node_cpus=setup.node_cpus,
        cpu_per_message=setup.node_cpus / capacity,
        retry_delay=setup.sender_retry,
        horizon=scenario.after,
    )
    # The refusals follow from the throughput and the senders' retries: given what the survivors
    # really carried, the retry arithmetic must account for the refusals seen.
    retries = cc.closed_form(
        rate=scenario.rate,
        survivors=2,
        node_cpus=setup.node_cpus,
        cpu_per_message=2 * setup.node_cpus / max(1e-9, seen.throughput),
        retry_delay=setup.sender_retry,
        horizon=scenario.after,
    )
    rows = [
        *cc.compare(seen.figures(), predicted, OVER, names=("throughput",)),
        *cc.compare(seen.figures(), retries, TOLERANCE, names=("refused_share",)),
    ]
    # The simulator, on the profile and workload of this very run: the survivors' throughput and
    # the peak queue (the backlog on top of the warmup's level).
    plan = cc.simulate(tmp_path / "profile.json", tmp_path / "workload.toml")
    simulated = cc.predicted_from_plan(plan, cc.SCENARIO)
    rows += cc.compare(seen.figures(), simulated, TOLERANCE, names=("throughput", "peak_queue"))
    report = cc.table(rows, TOLERANCE) + f"\n(calibration and run took {took:.0f} s)"
    # The closed form's throughput may be above the truth by up to OVER (refusals are free in it
    # and are not here), never below it by more than TOLERANCE; the simulator's, which charges
    # each refusal its measured CPU, within ±TOLERANCE.
    assert all(r.ok and (r.error or 0.0) >= -TOLERANCE for r in rows), report
