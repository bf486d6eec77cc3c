"""The capacity prediction against a real cluster, bounded: three CPU-limited nodes, one killed.

The short version of benchmarks/capacity_validation.py (same harness, tests/capacity_cluster.py):
three nodes on PostgreSQL, each in a cgroup with 0.1 CPU, calibrated for a few seconds, then an
open-loop load at 70 % of what the calibration says three nodes carry, one node SIGKILLed, and
the load kept on. Checked: every message that got a 250 arrived exactly once (INBOX or the remote
MX; a delivery the dead node had in flight may arrive twice), every backlog item was delivered,
and two predictions hold within ±35 %: the survivors' throughput is twice what one overloaded
node accepted in the calibration, and, given the throughput they really had, the senders'
retries account for the refusal share (closed form: attempts grow as (λ − μ)t/d).

Why ±35 % and not the benchmark's ±15 %: the figures here come from 20 s after the kill and one
run, not 90 s and the median of three, the calibration's phases are five seconds, and the
machine is shared. Measured on the 2-core development machine, the survivors carried less than
twice what one overloaded node accepted alone: 83 % of it at 0.2 CPU (error +21 %), 78 % at 0.1
CPU (+28 %); refusals cost CPU, and PostgreSQL and the load generator compete for the same two
cores (benchmarks/README.md). The retry arithmetic on the measured throughput was within 5 % of
the refusals seen. That the comparison can fail, e.g. for a profile whose CPU cost is three
times the truth, is shown in tests/unit/test_capacity_validation_compare.py, not by running the
cluster twice.

Until `mailfort capacity plan` is on main the prediction is the closed form (the survivors'
capacity, 2 × the calibrated saturation rate of one node, and the refusal share with retries);
once it is, its figures for the same profile and workload belong here too (the benchmark already
compares them when the command exists).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests import capacity_cluster as cc
from tests.cluster_support import base_dsn

TOLERANCE = 0.35


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
        *cc.compare(seen.figures(), predicted, TOLERANCE, names=("throughput",)),
        *cc.compare(seen.figures(), retries, TOLERANCE, names=("refused_share",)),
    ]
    report = cc.table(rows, TOLERANCE) + f"\n(calibration and run took {took:.0f} s)"
    assert all(r.ok for r in rows), report
