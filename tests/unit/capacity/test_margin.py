"""The live margin: pure computation from node loads and a profile, and its one line."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailfort.capacity.margin import Margin, NodeLoad, describe, margin
from mailfort.capacity.profile import profile_from_dict
from tests.capacity_support import profile

PROFILE = profile_from_dict(profile())
WINDOW = 300.0


def busy(messages: int = 0, cpu: float | None = None, **more: int) -> NodeLoad:
    return NodeLoad(messages=messages, message_bytes=messages * 5000, cpu_seconds=cpu, **more)


def spare(loads: list[NodeLoad], k: int = 1) -> Margin:
    return margin(PROFILE, loads, window_seconds=WINDOW, spare_nodes=k, max_utilisation=0.75)


def test_idle_cluster_needs_one_node() -> None:
    m = spare([NodeLoad()] * 3)
    assert (m.live, m.needed, m.spare, m.low) == (3, 1, 2, False)
    assert m.profile_cpu == 0.0 and m.measured_cpu is None


def test_counted_work_is_priced_with_the_profile() -> None:
    # 300 small messages a second over the window at 0.0008 s each: 0.24 CPU s/s per node.
    m = spare([busy(messages=int(300 * WINDOW))])
    assert m.profile_cpu == pytest.approx(300 * 0.0008, rel=0.01)
    # A node of 1 CPU at 0.75 carries 0.75 CPU s/s.
    assert m.node_capacity == pytest.approx(0.75)


def test_load_beyond_the_margin_is_low() -> None:
    # 3 nodes each spending 0.6 CPU s/s: 1.8 needs 3 nodes at 0.75 each, none spare.
    m = spare([busy(cpu=0.6 * WINDOW)] * 3)
    assert m.measured_cpu == pytest.approx(1.8)
    assert (m.needed, m.spare, m.low) == (3, 0, True)


def test_measured_cpu_above_the_profile_wins() -> None:
    # The profile prices 10 messages as almost nothing; the nodes spent far more.
    m = spare([busy(messages=10, cpu=0.7 * WINDOW)] * 2)
    assert m.cpu == pytest.approx(1.4) and m.needed == 2


def test_profile_above_measured_wins() -> None:
    m = spare([busy(messages=int(1000 * WINDOW), cpu=0.01 * WINDOW)] * 2)
    assert m.cpu == m.profile_cpu > m.measured_cpu  # type: ignore[operator]


def test_large_messages_cost_more_than_small() -> None:
    small = spare([NodeLoad(messages=1000, message_bytes=1000 * 5000)])
    large = spare([NodeLoad(messages=1000, message_bytes=1000 * 2_000_000)])
    assert large.profile_cpu == pytest.approx(1000 * 0.02 / WINDOW)
    assert large.profile_cpu > small.profile_cpu


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError):
        margin(PROFILE, [], window_seconds=0, spare_nodes=1, max_utilisation=0.75)


def test_describe_lines() -> None:
    assert describe(None) == "margin: unknown (no [capacity] profile)"
    ok = spare([NodeLoad()] * 3)
    assert describe(ok).startswith("margin: 2 spare nodes at current load (needs 1 of 3; k=1;")
    low = spare([busy(cpu=0.6 * WINDOW)] * 3)
    assert describe(low).startswith("margin: LOW — 0 spare nodes at current load (needs 3 of 3;")
    assert "measured" in describe(low)


loads = st.builds(
    NodeLoad,
    messages=st.integers(0, 500_000),
    message_bytes=st.integers(0, 10**10),
    deliveries=st.integers(0, 200_000),
    imap_sessions=st.integers(0, 100_000),
    pop3_sessions=st.integers(0, 100_000),
    cpu_seconds=st.one_of(st.none(), st.floats(0, 2000)),
)


def more(x: NodeLoad, extra: NodeLoad) -> NodeLoad:
    cpu = None
    if x.cpu_seconds is not None or extra.cpu_seconds is not None:
        cpu = (x.cpu_seconds or 0.0) + (extra.cpu_seconds or 0.0)
    # More messages at the same mean size (a heavier mix is more work too, but not this test's).
    size = x.message_bytes / x.messages if x.messages else 5000
    return NodeLoad(
        messages=x.messages + extra.messages,
        message_bytes=x.message_bytes + math.floor(extra.messages * size),
        deliveries=x.deliveries + extra.deliveries,
        imap_sessions=x.imap_sessions + extra.imap_sessions,
        pop3_sessions=x.pop3_sessions + extra.pop3_sessions,
        cpu_seconds=cpu,
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(loads, min_size=1, max_size=6), loads, st.integers(0, 5))
def test_more_load_never_more_spare(base: list[NodeLoad], extra: NodeLoad, which: int) -> None:
    heavier = list(base)
    heavier[which % len(base)] = more(base[which % len(base)], extra)
    assert spare(heavier).spare <= spare(base).spare


@settings(max_examples=150, deadline=None)
@given(st.lists(loads, min_size=1, max_size=6), st.integers(1, 5))
def test_more_live_nodes_never_fewer_spare(base: list[NodeLoad], added: int) -> None:
    assert spare(base + [NodeLoad()] * added).spare >= spare(base).spare + added


# Sessions of 0.3 s and a 0.5-s commit: here the latency targets, not utilisation, set the count.
SLOW = profile_from_dict(profile(imap_login_cpu=0.3, pop3_session_cpu=0.2, commit_p99_seconds=0.5))


def slow_spare(x: NodeLoad) -> int:
    return margin(SLOW, [x], window_seconds=WINDOW, spare_nodes=1, max_utilisation=0.75).spare


def test_cheap_work_added_to_slow_sessions_is_no_margin() -> None:
    # With the planner's mean job, one message more made the mean shorter and freed a node.
    sessions = NodeLoad(imap_sessions=304)
    assert slow_spare(NodeLoad(imap_sessions=304, messages=1)) <= slow_spare(sessions)
    m = margin(SLOW, [sessions], window_seconds=WINDOW, spare_nodes=1, max_utilisation=0.75)
    assert m.bound.startswith("p99")


@settings(max_examples=300, deadline=None)
@given(loads, loads)
def test_more_load_never_more_spare_when_latency_binds(base: NodeLoad, extra: NodeLoad) -> None:
    assert slow_spare(more(base, extra)) <= slow_spare(base)
