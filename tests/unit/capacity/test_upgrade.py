"""The rolling-upgrade schedule: never below N+k while nodes are out, finishes, replaces all."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mailfort.capacity.profile import profile_from_dict
from mailfort.capacity.sizing import nodes_needed_at
from mailfort.capacity.upgrade import (
    HOUR,
    Schedule,
    UpgradeError,
    announcements,
    hour_of_day,
    needed_by_hour,
    schedule,
)
from mailfort.capacity.workload import OFFICE_DAY, Workload, workload_from_dict
from tests.capacity_support import profile, workload

PROFILE = profile_from_dict(profile())
START = datetime(2026, 12, 10, 22, tzinfo=UTC).timestamp()


def day(mailboxes: int, weights: list[float] | None = None, k: int = 1) -> Workload:
    messages = {"per_mailbox_per_day": 20, "remote_share": 0.3, "sizes": {"small": 1.0}}
    if weights is not None:
        messages["diurnal"] = weights
    else:
        messages["peak_factor"] = 2.5
    targets = {"p99_time_to_250_seconds": 1.0, "spare_nodes": k}
    return workload_from_dict(
        workload(mailboxes={"count": mailboxes}, messages=messages, targets=targets)
    )


def check(s: Schedule, w: Workload) -> None:
    """Every hour every batch overlaps keeps needed + k serving; every node is accounted for."""
    for b in s.batches:
        t = b.start
        while t < b.end:
            needed = nodes_needed_at(PROFILE, w, hour_of_day(t) * HOUR)
            assert needed is not None
            if b.drained:
                assert b.live >= needed.nodes + s.spare_nodes, (b, needed.nodes)
            t = (t // HOUR + 1) * HOUR
    for a, b in zip(s.batches, s.batches[1:], strict=False):
        assert b.start >= a.end
    replaced = sum(b.count for b in s.batches if b.action == "replace")
    removed = sum(b.count for b in s.batches if b.action == "remove")
    added = sum(b.count for b in s.batches if b.action == "add")
    assert replaced == (min(s.nodes, s.target) if s.replace else 0)
    assert s.nodes + added - removed == s.target
    numbers = [n for b in s.batches if b.action == "replace" for n in range(b.first, b.last + 1)]
    assert numbers == list(range(1, len(numbers) + 1))  # each old node once, in order


W = day(2_000_000)  # the office day: quiet nights, a 2.5x peak


def test_replace_every_node_keeps_n_plus_k() -> None:
    w = day(50_000_000, list(OFFICE_DAY))  # about 190 nodes at the peak
    needed = needed_by_hour(PROFILE, w)
    nodes = max(needed) + 5
    morning = START + 10 * HOUR  # 08:00
    s = schedule(
        PROFILE, w, nodes=nodes, target=nodes, replace=True, batch_seconds=1800, start=morning
    )
    check(s, w)
    assert s.min_margin == 1
    # Each batch drains what its hour leaves over: many at 08:00, few at the 10:00 peak.
    drained = {hour_of_day(b.start): b.drained for b in s.batches}
    assert drained[8] == nodes - needed[8] - 1 and drained[10] == nodes - needed[10] - 1
    assert drained[8] > drained[10]


def test_hours_with_nothing_over_are_skipped() -> None:
    w = day(50_000_000, list(OFFICE_DAY))
    needed = needed_by_hour(PROFILE, w)
    peak = max(needed)
    at_peak = START + (2 + needed.index(peak)) * HOUR  # START is 22:00
    s = schedule(
        PROFILE, w, nodes=peak + 1, target=peak + 1, replace=True, batch_seconds=1800,
        start=at_peak,
    )  # fmt: skip
    check(s, w)
    assert s.skipped_hours > 0 and s.batches[0].start > at_peak


def test_max_batch_bounds_every_batch() -> None:
    nodes = max(needed_by_hour(PROFILE, W)) + 5
    s = schedule(
        PROFILE, W, nodes=nodes, target=nodes, replace=True, batch_seconds=1800, start=START,
        max_batch=2,
    )  # fmt: skip
    check(s, W)
    assert max(b.drained for b in s.batches) == 2 and len(s.batches) == (nodes + 1) // 2


def test_growth_joins_first_and_makes_bigger_batches() -> None:
    needed = needed_by_hour(PROFILE, W)
    nodes = max(needed) + 1
    grown = schedule(
        PROFILE, W, nodes=nodes, target=nodes + 20, replace=True, batch_seconds=1800, start=START
    )
    same = schedule(
        PROFILE, W, nodes=nodes, target=nodes, replace=True, batch_seconds=1800, start=START
    )
    assert grown.batches[0].action == "add" and grown.batches[0].count == 20
    check(grown, W)
    assert grown.batches[1].drained > same.batches[0].drained


def test_shrinking_takes_nodes_out_for_good() -> None:
    needed = needed_by_hour(PROFILE, W)
    s = schedule(
        PROFILE, W, nodes=max(needed) + 30, target=max(needed) + 1, replace=False,
        batch_seconds=1800, start=START,
    )  # fmt: skip
    check(s, W)
    assert {b.action for b in s.batches} == {"remove"}


def test_a_target_below_the_peak_says_by_how_much() -> None:
    needed = needed_by_hour(PROFILE, W)
    peak = max(needed)
    with pytest.raises(UpgradeError) as err:
        schedule(
            PROFILE, W, nodes=peak + 3, target=peak - 2, replace=False, batch_seconds=1800,
            start=START,
        )  # fmt: skip
    assert str(err.value).startswith(f"--to {peak - 2}: the peak hour (")
    assert str(err.value).endswith(f"= {peak + 1}; 3 short")


def test_a_flat_day_at_exactly_n_plus_k_cannot_drain() -> None:
    flat = day(2_000_000, [1.0] * 24)
    n = max(needed_by_hour(PROFILE, flat)) + 1
    with pytest.raises(UpgradeError, match="no hour leaves a node to drain"):
        schedule(PROFILE, flat, nodes=n, target=n, replace=True, batch_seconds=1800, start=START)


@pytest.mark.parametrize(
    ("nodes", "target", "minutes", "match"),
    [
        (0, 5, 30, "at least 1"),
        (5, 5, 30, "give --replace"),
        (5, 5, 0, "more than 0"),
    ],
)
def test_bad_input(nodes: int, target: int, minutes: float, match: str) -> None:
    with pytest.raises(UpgradeError, match=match):
        schedule(
            PROFILE, W, nodes=nodes, target=target, replace=minutes == 0,
            batch_seconds=minutes * 60, start=START,
        )  # fmt: skip


def test_announcements_group_a_night() -> None:
    needed = needed_by_hour(PROFILE, W)
    nodes = max(needed) + 5
    s = schedule(
        PROFILE, W, nodes=nodes, target=nodes, replace=True, batch_seconds=1800, start=START
    )
    windows = announcements(s)
    assert windows[0].start == START
    assert windows[0].title.startswith("Rolling upgrade: nodes 1–")
    assert "no outage expected" in windows[0].text
    assert sum(1 for b in s.batches) >= len(windows)
    assert windows[-1].end == s.end


@settings(max_examples=40, deadline=None)
@given(
    weights=st.lists(st.floats(0.05, 5.0), min_size=24, max_size=24),
    mailboxes=st.integers(10_000, 3_000_000),
    over=st.integers(0, 30),
    change=st.integers(-20, 40),
    replace=st.booleans(),
    k=st.integers(0, 3),
    minutes=st.sampled_from([10, 30, 45, 90, 240]),
    start_hour=st.integers(0, 23),
)
def test_schedules_never_drop_below_n_plus_k(
    weights: list[float],
    mailboxes: int,
    over: int,
    change: int,
    replace: bool,
    k: int,
    minutes: int,
    start_hour: int,
) -> None:
    w = day(mailboxes, weights, k=k)
    peak = max(needed_by_hour(PROFILE, w))
    nodes = peak + k + over
    target = max(peak + k, nodes + change)
    assume(replace or target != nodes)
    start = START + start_hour * HOUR
    try:
        s = schedule(
            PROFILE, w, nodes=nodes, target=target, replace=replace,
            batch_seconds=minutes * 60, start=start,
        )  # fmt: skip
    except UpgradeError as exc:
        # Only a cluster with no drainable stretch may refuse, and only to replace.
        assert replace and "drain" in str(exc)
        return
    check(s, w)
