"""Hysteresis: faults are published fast, recoveries slowly, flapping never."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from mailfort.status import (
    Component,
    ComponentState,
    ComponentTracker,
    HealthSignals,
    Hysteresis,
    StateChange,
    StatusEvaluator,
)

OK = ComponentState.OPERATIONAL
DEG = ComponentState.DEGRADED
PART = ComponentState.PARTIAL_OUTAGE
MAJ = ComponentState.MAJOR_OUTAGE
STATES = [OK, DEG, PART, MAJ]
STEP = 15.0
H = Hysteresis(worsen_after=30.0, recover_after=300.0)


def run(raws: list[ComponentState], step: float = STEP) -> list[StateChange]:
    tracker = ComponentTracker(Component.IMAP, H)
    changes = []
    for i, raw in enumerate(raws):
        change = tracker.observe(i * step, raw)
        if change is not None:
            changes.append(change)
    return changes


def published(changes: list[StateChange]) -> list[tuple[float, ComponentState]]:
    return [(c.at, c.new) for c in changes]


# (raw states every 15 s, expected published changes)
TABLE = [
    ([OK] * 40, []),
    ([MAJ] * 3 + [OK] * 40, [(30.0, MAJ), (30.0 + 15 * 21, OK)]),
    ([MAJ, MAJ] + [OK] * 40, []),  # a 15-s blip is not an incident
    ([OK, MAJ] * 100, []),  # flapping every evaluation never publishes anything
    ([DEG, DEG, DEG, MAJ, MAJ, MAJ], [(30.0, DEG), (75.0, MAJ)]),
    ([PART, DEG, MAJ, PART, DEG, PART], [(30.0, DEG)]),  # at least degraded throughout
    ([MAJ] * 3 + [DEG] * 25, [(30.0, MAJ), (345.0, DEG)]),
    # recovery interrupted by one bad evaluation starts its wait again
    ([MAJ] * 3 + [OK] * 10 + [MAJ] + [OK] * 21, [(30.0, MAJ), (15 * 14 + 300.0, OK)]),
]


def test_table() -> None:
    for raws, expected in TABLE:
        assert published(run(raws)) == expected, raws


def test_zero_hysteresis_follows_raw() -> None:
    tracker = ComponentTracker(Component.POP3, Hysteresis(0.0, 0.0))
    assert tracker.observe(0.0, MAJ) is not None
    assert tracker.state is MAJ
    assert tracker.observe(1.0, OK) is not None
    assert tracker.state is OK


def _check_hysteresis(raws: list[ComponentState], changes: list[StateChange]) -> None:
    seen = [(i * STEP, raw) for i, raw in enumerate(raws)]
    for change in changes:
        hold = H.worsen_after if change.worse else H.recover_after
        held = [r for t, r in seen if change.at - hold <= t <= change.at]
        assert seen[0][0] <= change.at - hold
        if change.worse:
            assert all(r.severity >= change.new.severity for r in held)
        else:
            assert all(r.severity <= change.new.severity for r in held)
    # no flapping: after a worsening, nothing improves for recover_after
    for a, b in itertools.pairwise(changes):
        if a.worse and not b.worse:
            assert b.at - a.at >= H.recover_after


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(STATES), min_size=1, max_size=200))
def test_any_raw_sequence_respects_hysteresis(raws: list[ComponentState]) -> None:
    _check_hysteresis(raws, run(raws))


@settings(max_examples=200, deadline=None)
@given(
    bad=st.sampled_from([DEG, PART, MAJ]),
    period=st.integers(min_value=1, max_value=2),
    phase=st.integers(min_value=0, max_value=3),
    length=st.integers(min_value=10, max_value=400),
)
def test_flapping_signal_never_flaps_state(
    bad: ComponentState, period: int, phase: int, length: int
) -> None:
    """A raw state that never holds for ``worsen_after`` publishes nothing at all."""
    pattern = [OK] * period + [bad] * period
    raws = [pattern[(i + phase) % len(pattern)] for i in range(length)]
    assert run(raws) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(STATES), min_size=2, max_size=40), st.integers(5, 60))
def test_repeated_flapping_changes_state_rarely(
    pattern: list[ComponentState], repeats: int
) -> None:
    """However a signal flaps, the published state changes at most 4 times per recovery period."""
    raws = pattern * repeats
    changes = run(raws)
    _check_hysteresis(raws, changes)
    for i, change in enumerate(changes):
        window = [c for c in changes[i:] if c.at < change.at + H.recover_after]
        assert len(window) <= 4


def test_evaluator_publishes_changes_per_component() -> None:
    evaluator = StatusEvaluator(hysteresis=H, components=[Component.INCOMING, Component.IMAP])
    slow = HealthSignals(accept_to_mailbox_p95=900.0)
    assert evaluator.evaluate(0.0, slow) == []
    assert evaluator.evaluate(15.0, slow) == []
    [change] = evaluator.evaluate(30.0, slow)
    assert (change.component, change.old, change.new) == (Component.INCOMING, OK, PART)
    assert change.findings[0].signal == "accept_to_mailbox_p95"
    assert evaluator.states == {Component.INCOMING: PART, Component.IMAP: OK}
