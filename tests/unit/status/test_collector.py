"""The cluster's health signals from heartbeats: only live nodes count, windows add up."""

from __future__ import annotations

import pytest

from mailfort.metrics import REMOTE_OURS, REMOTE_REACHED, REMOTE_UNREACHABLE, WindowStats
from mailfort.status.collector import platform_failures, signals_from
from mailfort.status.signals import Protocol
from mailfort.store.records import NodeInfo

NOW = 1_000_000.0
HEARTBEAT = 1.0


def node(name: str, *, state: str = "active", age: float = 0.0, window: object = None) -> NodeInfo:
    load: dict[str, object] = {"smtp": 0}
    if window is not None:
        load["window"] = window
    return NodeInfo(
        name=name, state=state, started=NOW - 100, heartbeat=NOW - age, listeners=[], load=load
    )


def test_live_over_expected_counts_dead_but_not_drained_or_gone_nodes() -> None:
    nodes = [
        node("a"),
        node("b", age=10.0),  # silent for 10 heartbeats: dead, still expected
        node("c", state="draining"),  # leaving on purpose: not expected
        node("d", state="gone", age=500.0),
    ]
    s = signals_from(nodes, now=NOW, heartbeat_seconds=HEARTBEAT, window_seconds=60.0)
    assert (s.live_nodes, s.expected_nodes) == (1, 2)
    assert s.live_node_fraction == 0.5


def test_windows_of_live_nodes_add_up_and_dead_ones_are_ignored() -> None:
    a = WindowStats(window=60.0)
    b = WindowStats(window=60.0)
    dead = WindowStats(window=60.0)
    for _ in range(8):
        a.count("login.imap.ok", NOW - 1)
        a.observe("login.imap", 0.004, NOW - 1)
    for _ in range(2):
        b.count("login.imap.fail", NOW - 1)
        b.observe("login.imap", 3.0, NOW - 1)
    for _ in range(50):
        dead.count("login.imap.fail", NOW - 1)
    a.count(REMOTE_REACHED, NOW - 1, 3)
    b.count(REMOTE_OURS, NOW - 1, 1)
    b.count(f"{REMOTE_UNREACHABLE}192.0.2.0/24", NOW - 1, 1)
    for _ in range(30):
        a.count("refused.smtp", NOW - 1)
    a.observe("store_commit", 0.002, NOW - 1)
    b.observe("store_commit", 4.0, NOW - 1)
    b.observe("accept_to_mailbox", 0.3, NOW - 1)
    nodes = [
        node("a", window=a.snapshot(NOW)),
        node("b", window=b.snapshot(NOW)),
        node("dead", age=60.0, window=dead.snapshot(NOW)),
    ]
    s = signals_from(nodes, now=NOW, heartbeat_seconds=HEARTBEAT, window_seconds=60.0)
    imap = s.login(Protocol.IMAP)
    assert (imap.attempts, imap.successes) == (10, 8)
    assert imap.p95_latency == 5.0  # the bucket bound holding the slow 20 %
    assert (s.remote_attempts, s.remote_successes) == (5, 3)
    assert s.refusals(Protocol.SMTP) == pytest.approx(30.0)  # 30 in a 60-s window
    assert s.store_commit_p95 == 5.0
    assert s.accept_to_mailbox_p95 == 0.5
    assert s.login(Protocol.POP3).attempts == 0


def test_no_traffic_is_not_judged() -> None:
    s = signals_from([node("a")], now=NOW, heartbeat_seconds=HEARTBEAT, window_seconds=60.0)
    assert s.store_commit_p95 is None and s.remote_success_rate is None
    assert dict(s.logins) == {} and s.oldest_queue_age is None


def test_queue_age_is_measured_from_the_oldest_due_item() -> None:
    s = signals_from(
        [node("a")],
        now=NOW,
        heartbeat_seconds=HEARTBEAT,
        window_seconds=60.0,
        queue_depth=7,
        oldest_due=NOW - 120.0,
    )
    assert (s.queue_depth, s.oldest_queue_age) == (7, 120.0)


def test_a_heartbeat_without_a_window_or_with_garbage_counts_as_empty() -> None:
    nodes = [node("a", window="not a window"), node("b")]
    s = signals_from(nodes, now=NOW, heartbeat_seconds=HEARTBEAT, window_seconds=60.0)
    assert (s.live_nodes, s.expected_nodes) == (2, 2)
    assert s.remote_attempts == 0


def remote(counts: dict[str, int], share: float = 0.25) -> tuple[int, int]:
    window = WindowStats(window=60.0)
    for name, n in counts.items():
        window.count(name, NOW - 1, n)
    s = signals_from(
        [node("a", window=window.snapshot(NOW))],
        now=NOW,
        heartbeat_seconds=HEARTBEAT,
        window_seconds=60.0,
        network_share=share,
    )
    return s.remote_attempts, s.remote_successes


def test_one_silent_network_alone_is_its_own_outage() -> None:
    """A stranger's server that took one bounce and then went silent, or a provider's outage:
    however many attempts it swallows, alone it moves nothing."""
    assert remote({f"{REMOTE_UNREACHABLE}198.51.100.0/24": 500}) == (0, 0)
    attempts, reached = remote({REMOTE_REACHED: 40, f"{REMOTE_UNREACHABLE}198.51.100.0/24": 5000})
    assert (attempts, reached) == (50, 40)  # 10 = a quarter of the 40 others
    assert reached / attempts >= 0.8  # above the degraded floor (70 %) whatever the flood


def test_many_silent_networks_are_ours_and_count_in_full() -> None:
    """Our own network failing silences every destination at once."""
    silent = {f"{REMOTE_UNREACHABLE}192.0.{n}.0/24": 10 for n in range(8)}
    assert remote({REMOTE_REACHED: 2, **silent}) == (82, 2)
    # Two networks: each counts up to a quarter of the other: still judged, still bad.
    assert remote(
        {f"{REMOTE_UNREACHABLE}192.0.1.0/24": 40, f"{REMOTE_UNREACHABLE}192.0.2.0/24": 40}
    ) == (20, 0)


def test_failures_that_are_ours_are_never_capped() -> None:
    assert remote({REMOTE_REACHED: 5, REMOTE_OURS: 95}) == (100, 5)


def test_old_names_of_a_node_not_yet_upgraded_count_for_nothing() -> None:
    """A rolling upgrade: the old window said only "deferred", which strangers could make."""
    assert remote({"remote.delivered": 3, "remote.deferred": 90, "remote.bounced": 40}) == (0, 0)


def test_platform_failures_is_a_share_of_the_others() -> None:
    assert platform_failures(100, 0, {"x": 1000}, 0.25) == 25
    assert platform_failures(100, 0, {"x": 10}, 0.25) == 10
    assert platform_failures(0, 7, {}, 0.25) == 7
    assert platform_failures(0, 0, {"x": 10}, 1.0) == 0  # alone, even with a share of 100 %
