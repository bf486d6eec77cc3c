"""NodeMetrics: the heartbeat window forgets what is older than it, merges exactly across nodes,
and the Prometheus exposition follows the client library's conventions."""

from __future__ import annotations

from prometheus_client import generate_latest

from mailfort.metrics import (
    LATENCY_BUCKETS,
    LOGIN_ERROR,
    LOGIN_REJECTED,
    LOGIN_SUCCESS,
    LOGIN_THROTTLED,
    NodeMetrics,
    WindowStats,
    merge_snapshots,
    quantile,
)


def test_the_window_forgets_what_is_older_than_it() -> None:
    window = WindowStats(window=60.0, slot=10.0)
    window.count("login.imap.ok", now=1000.0, n=5)
    window.observe("store_commit", 0.004, now=1000.0)
    assert window.snapshot(1030.0)["counts"] == {"login.imap.ok": 5}
    window.count("login.imap.ok", now=1075.0)  # a new slot; the first is now out of the window
    snap = window.snapshot(1075.0)
    assert snap["counts"] == {"login.imap.ok": 1}
    assert snap["hists"] == {}


def test_windows_of_several_nodes_add_up_bucket_by_bucket() -> None:
    a, b = WindowStats(), WindowStats()
    for _ in range(95):
        a.observe("store_commit", 0.004, now=10.0)
    for _ in range(5):
        b.observe("store_commit", 3.0, now=10.0)
    merged = merge_snapshots([a.snapshot(10.0), b.snapshot(10.0)])
    buckets = merged["hists"]["store_commit"]
    assert sum(buckets) == 100 and len(buckets) == len(LATENCY_BUCKETS)
    assert quantile(buckets, 0.95) == 0.005  # the upper bound of the bucket holding the p95
    assert quantile(buckets, 0.99) == 5.0
    assert quantile(None, 0.95) is None and quantile([0] * len(LATENCY_BUCKETS), 0.5) is None


def test_exposition_names_follow_prometheus_conventions() -> None:
    metrics = NodeMetrics()
    metrics.login("imap", LOGIN_ERROR, seconds=0.2)
    metrics.refused("smtp", "limit", n=3)
    text = generate_latest(metrics.registry).decode()
    assert 'mailfort_logins_total{protocol="imap",result="error"} 1.0' in text
    assert 'mailfort_admission_refusals_total{protocol="smtp",reason="limit"} 3.0' in text
    assert "mailfort_login_duration_seconds_bucket" in text
    assert "_created" not in text  # no timestamp series beside every counter
    assert metrics.snapshot()["counts"] == {"login.imap.fail": 1, "refused.smtp": 3}


def test_refusals_a_client_earns_itself_stay_out_of_the_public_window() -> None:
    metrics = NodeMetrics(window=60.0, clock=lambda: 1000.0)
    for reason in ("ip", "network", "client", "throttled"):
        metrics.refused("imap", reason, 5)
    assert metrics.snapshot()["counts"].get("refused.imap", 0) == 0
    metrics.refused("imap", "overload", 2)
    metrics.refused("imap", "node")
    assert metrics.snapshot()["counts"]["refused.imap"] == 3
    exported = generate_latest(metrics.registry).decode()
    assert 'mailfort_admission_refusals_total{protocol="imap",reason="ip"} 5.0' in exported


def test_logins_the_client_failed_stay_out_of_the_public_window() -> None:
    """Wrong passwords, unknown users and throttled guesses are exported, but only what the
    platform did (success, error) reaches the window the status signals read, latency included."""
    metrics = NodeMetrics(window=60.0, clock=lambda: 1000.0)
    for _ in range(50):
        metrics.login("imap", LOGIN_REJECTED, 4.0)
        metrics.login("imap", LOGIN_THROTTLED, 0.0)
    assert metrics.snapshot() == {"counts": {}, "hists": {}}
    metrics.login("imap", LOGIN_SUCCESS, 0.004)
    metrics.login("imap", LOGIN_ERROR, 0.3)
    snap = metrics.snapshot()
    assert snap["counts"] == {"login.imap.ok": 1, "login.imap.fail": 1}
    assert sum(snap["hists"]["login.imap"]) == 2
    text = generate_latest(metrics.registry).decode()
    for result, n in (("rejected", 50), ("throttled", 50), ("success", 1), ("error", 1)):
        assert f'mailfort_logins_total{{protocol="imap",result="{result}"}} {n}.0' in text
    # The histogram shows how long answers took (rejections included), not the refusals.
    assert 'mailfort_login_duration_seconds_count{protocol="imap"} 52.0' in text


def test_remote_reach_feeds_the_window_and_remote_results_only_the_export() -> None:
    metrics = NodeMetrics(window=60.0, clock=lambda: 1000.0)
    metrics.remote_attempt("deferred", 40)  # what strangers can make: exported only
    metrics.remote_reach("reached", 3)
    metrics.remote_reach("theirs", 50)
    metrics.remote_reach("ours", 2)
    metrics.remote_reach("unreachable", 4, "198.51.100.0/24")
    assert metrics.snapshot()["counts"] == {
        "remote.reached": 3,
        "remote.ours": 2,
        "remote.unreachable@198.51.100.0/24": 4,
    }
    exported = generate_latest(metrics.registry).decode()
    assert 'mailfort_remote_reach_total{verdict="theirs"} 50.0' in exported
    assert 'mailfort_remote_deliveries_total{result="deferred"} 40.0' in exported


def test_a_short_window_keeps_what_happened_within_it_across_slot_boundaries() -> None:
    now = [1009.9]
    metrics = NodeMetrics(window=10.0, clock=lambda: now[0])
    metrics.refused("smtp", "overload", 50)
    now[0] = 1010.1  # a multiple of 10 s later: still well within the 10-s window
    assert metrics.snapshot()["counts"] == {"refused.smtp": 50}
    now[0] = 1021.0
    assert metrics.snapshot()["counts"] == {}
