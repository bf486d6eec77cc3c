"""The comparison of the capacity validation (tests/capacity_cluster.py): the figures taken from a
run's records, the closed form, the simulator's JSON, and the verdict within a tolerance — which
must reject a prediction made with a wrong profile."""

from __future__ import annotations

import pytest

from tests import capacity_cluster as cc

# Figures of the order a quick run measures (three 0.2-CPU nodes, one killed, 2.5 ms per message).
MEASURED = {"throughput": 150.0, "peak_queue": 120.0, "refused_share": 0.2, "drain_seconds": 14.0}


def plan(**scenario: object) -> dict[str, object]:
    """`mailfort capacity plan --json` as its contract says, one scenario."""
    figures = {
        "name": "one node killed",
        "peak_queue": 110.0,
        "drain_seconds": 15.0,
        "refused_share": 0.21,
        "p99_time_to_mailbox_seconds": 3.0,
        "accepted_per_second": 155.0,
        "closed_form": {},
        "series": [],
    }
    figures.update(scenario)
    return {"nodes_needed": 3, "nodes_for_failures": 3, "scenarios": [figures]}


def test_a_prediction_near_the_measurement_passes() -> None:
    predicted = cc.predicted_from_plan(plan(), "one node killed")
    rows = cc.compare(MEASURED, predicted, 0.15, horizon=60.0)
    assert all(r.ok for r in rows), cc.table(rows, 0.15)
    assert [r.name for r in rows] == list(cc.METRICS)


def test_a_prediction_from_a_profile_with_three_times_the_cpu_fails() -> None:
    """The closed form with the calibrated cost agrees with what the cost implies; the same with
    the cost tripled predicts a third of the throughput and far more refusals."""
    args = {"rate": 200.0, "survivors": 2, "node_cpus": 0.2, "retry_delay": 5.0, "horizon": 60.0}
    right = cc.closed_form(cpu_per_message=0.0025, **args)
    wrong = cc.closed_form(cpu_per_message=0.0075, **args)
    assert right["throughput"] == pytest.approx(160.0)
    measured = {**MEASURED, "throughput": 158.0, "refused_share": right["refused_share"]}
    ok = {r.name: r.ok for r in cc.compare(measured, right, 0.3)}
    assert ok["throughput"] and ok["refused_share"]
    bad = {r.name: r for r in cc.compare(measured, wrong, 0.3)}
    assert not bad["throughput"].ok and bad["throughput"].error == pytest.approx(-0.66, abs=0.01)
    assert not bad["refused_share"].ok


def test_below_capacity_everything_is_accepted() -> None:
    figures = cc.closed_form(
        rate=100.0, survivors=2, node_cpus=0.2, cpu_per_message=0.0025, retry_delay=5.0,
        horizon=60.0,
    )  # fmt: skip
    assert figures["throughput"] == 100.0 and figures["refused_share"] == 0.0


def test_the_closed_form_refusal_share_grows_with_the_retries() -> None:
    """λ = 200, μ = 160, d = 5, H = 60: attempts 200 + 40·60/10 = 440 a second on average."""
    figures = cc.closed_form(
        rate=200.0, survivors=2, node_cpus=0.2, cpu_per_message=0.0025, retry_delay=5.0,
        horizon=60.0,
    )  # fmt: skip
    assert figures["refused_share"] == pytest.approx(1 - 160 / 440)


def test_small_figures_are_judged_against_a_floor() -> None:
    """A refusal share of 0.001 against 0.004 is no 300 % error: both are "none"."""
    rows = {r.name: r for r in cc.compare({"refused_share": 0.001}, {"refused_share": 0.004}, 0.15)}
    assert rows["refused_share"].ok


def test_a_missing_figure_fails() -> None:
    rows = {r.name: r for r in cc.compare(MEASURED, {"throughput": 150.0}, 0.15)}
    assert rows["throughput"].ok and not rows["peak_queue"].ok


def test_a_drain_that_never_ends_is_judged_at_the_horizon() -> None:
    never = {**MEASURED, "drain_seconds": None}
    both = {r.name: r for r in cc.compare(never, never, 0.15, horizon=60.0)}
    assert both["drain_seconds"].ok
    one = {r.name: r for r in cc.compare(never, MEASURED, 0.15, horizon=60.0)}
    assert not one["drain_seconds"].ok  # 14 s predicted, not back within 60 s measured


def test_drain_time_is_when_the_queue_is_back_for_good() -> None:
    # Level 10 before the event at t=10; up to 40; back to 10 at t=16, a blip to 20 at t=18,
    # back for good at t=19.
    series = [(float(t), 10.0) for t in range(10)]
    series += [(10.0, 40.0), (12.0, 30.0), (16.0, 10.0), (18.0, 20.0), (19.0, 11.0), (25.0, 9.0)]
    drain, level = cc.drain_time(series, 10.0, 25.0, 0.0)
    assert level == 10.0 and drain == 9.0
    undrained, _ = cc.drain_time([*series[:-1], (25.0, 30.0)], 10.0, 25.0, 0.0)
    assert undrained is None


def test_observe_counts_from_the_event_to_the_end() -> None:
    load = cc.LoadResult(
        attempts=[
            (1.0, 1.1, 0, 250, 1),  # before the event: not counted
            (10.0, 10.1, 1, 250, 2),
            (10.2, 10.3, 1, 451, 3),
            (11.0, 11.0, 0, cc.NO_ANSWER, 4),  # the dead node refused the connection
            (11.0, 11.2, 2, 421, 4),
            (12.0, 12.5, 2, 250, 4),
        ]
    )
    samples = [cc.Sample(float(t), q, 0, []) for t, q in enumerate([2, 2, 2, 2, 2, 2, 2, 2, 2, 2])]
    samples += [cc.Sample(10.0 + t, q, 0, []) for t, q in enumerate([9, 5, 2, 2])]
    seen = cc.observe(load, samples, 10.0, 14.0, 0.0)
    assert seen.throughput == pytest.approx(2 / 4)
    assert seen.refused_share == pytest.approx(2 / 4)
    assert seen.no_answer == 1 and seen.peak_queue == 9
    assert seen.drain_seconds == 2.0 and seen.before_level == 2.0
