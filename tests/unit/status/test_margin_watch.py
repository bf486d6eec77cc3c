"""The margin from heartbeats: live nodes grouped by machine, gauges, one log line per crossing."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest

from mailfort.capacity.profile import profile_from_dict
from mailfort.config import CapacityConfig
from mailfort.metrics import NodeMetrics
from mailfort.status.margin import MarginWatch, live_profile, machine, node_loads
from mailfort.store.records import NodeInfo
from tests.capacity_support import profile

NOW = 10_000.0
WINDOW = 300.0


def member(name: str, cpu_ms: int, *, state: str = "active", age: float = 1.0) -> NodeInfo:
    window: dict[str, Any] = {"counts": {"process.cpu_ms": cpu_ms, "login.imap.ok": 3}}
    return NodeInfo(
        name=name,
        state=state,
        started=0.0,
        heartbeat=NOW - age,
        listeners=[],
        load={"smtp": 0, "window": window},
    )


def test_workers_are_one_node() -> None:
    assert machine("mx1-w0") == "mx1" and machine("mx1") == "mx1" and machine("a-w") == "a-w"
    loads = node_loads(
        [member("mx1-w0", 1000), member("mx1-w1", 2000), member("mx2", 500)], NOW, 5.0
    )
    assert sorted((x.cpu_seconds, x.imap_sessions) for x in loads) == [(0.5, 3), (3.0, 6)]


def test_dead_draining_and_gone_nodes_carry_nothing() -> None:
    nodes = [
        member("a", 1000),
        member("b", 1000, age=60.0),  # dead: 3 heartbeats of 5 s missed
        member("c", 1000, state="draining"),
        member("d", 1000, state="gone"),
    ]
    assert len(node_loads(nodes, NOW, 5.0)) == 1


def watch(metrics: NodeMetrics, k: int = 1) -> MarginWatch:
    return MarginWatch(
        CapacityConfig(spare_nodes=k),
        window_seconds=WINDOW,
        heartbeat_seconds=5.0,
        metrics=metrics,
        profile=profile_from_dict(profile()),
    )


def gauge(metrics: NodeMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None
    return value


def test_crossing_k_is_logged_once_each_way(caplog: pytest.LogCaptureFixture) -> None:
    metrics = NodeMetrics()
    w = watch(metrics)
    idle = [member(n, 0) for n in "abc"]
    busy = [member(n, int(0.6 * WINDOW * 1000)) for n in "abc"]  # 1.8 CPU s/s: 3 nodes needed
    caplog.set_level(logging.INFO, logger="mailfort.status")
    for nodes in (idle, busy, busy, busy, idle, idle):
        w.update(nodes, NOW, leading=True)
    events = [r.getMessage() for r in caplog.records if "capacity_margin" in r.getMessage()]
    assert len(events) == 2
    assert events[0].startswith("event=capacity_margin_low spare=0 k=1 needed=3 live=3")
    assert events[1].startswith("event=capacity_margin_recovered spare=2 k=1")
    assert gauge(metrics, "mailfort_cluster_spare_nodes") == 2
    assert gauge(metrics, "mailfort_cluster_margin_low") == 0
    w.update(busy, NOW, leading=True)
    assert gauge(metrics, "mailfort_cluster_spare_nodes") == 0
    assert gauge(metrics, "mailfort_cluster_margin_low") == 1


def test_a_follower_sets_gauges_and_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    metrics = NodeMetrics()
    caplog.set_level(logging.INFO, logger="mailfort.status")
    watch(metrics).update([member("a", int(0.9 * WINDOW * 1000))], NOW, leading=False)
    assert gauge(metrics, "mailfort_cluster_spare_nodes") == -1
    assert not [r for r in caplog.records if "capacity_margin" in r.getMessage()]


def test_no_profile_is_unknown_not_zero() -> None:
    metrics = NodeMetrics()
    w = MarginWatch.from_config(
        CapacityConfig(), window_seconds=WINDOW, heartbeat_seconds=5.0, metrics=metrics
    )
    assert w.update([member("a", 0)], NOW, leading=True) is None
    assert math.isnan(gauge(metrics, "mailfort_cluster_spare_nodes"))
    assert gauge(metrics, "mailfort_cluster_margin_low") == 0
    assert w.describe() == "margin: unknown (no [capacity] profile)"


def test_a_bad_profile_is_one_line_and_no_margin(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "profile.json"
    path.write_text('{"format": "something else"}')
    caplog.set_level(logging.WARNING, logger="mailfort.status")
    w = MarginWatch.from_config(
        CapacityConfig(profile=str(path)), window_seconds=WINDOW, heartbeat_seconds=5.0
    )
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("event=capacity_profile_unusable")
    assert "not a mailfort capacity profile" in w.describe()
    assert live_profile(CapacityConfig(profile=str(tmp_path / "none.json")))[0] is None
