"""A stranger cannot move the capacity margin beyond the work he really costs.

The margin (`capacity/margin.py`) prices the heartbeats' window: messages answered 250, remote
attempts, *successful* logins, and the CPU the process spent. What a stranger can send without an
account:

- wrong passwords and unknown users: `NodeMetrics.login(..., "rejected")` never reaches the
  window's login counts, so a flood is not priced as IMAP or POP3 sessions served. Its real cost
  (argon2 runs until the throttle refuses unchecked) is in the process CPU, which is what it
  should cost: the nodes really are that much busier, and the operator should know;
- throttled logins and refused connections (`CLIENT_REASONS`, overload refusals): not priced at
  all. Counting a refusal as a message would let a stranger who knocks cheaply look like a
  customer sending mail;
- mail to our customers: accepted messages are real work, priced as the profile measured it.

And the margin feeds no public signal: the status inputs a CPU-heavy window gives are those of an
idle one, so a low margin opens no incident and changes no component.
"""

from __future__ import annotations

from typing import Any

from mailfort.capacity.profile import profile_from_dict
from mailfort.config import CapacityConfig
from mailfort.metrics import (
    LOGIN_ERROR,
    LOGIN_REJECTED,
    LOGIN_SUCCESS,
    LOGIN_THROTTLED,
    NodeMetrics,
)
from mailfort.status.collector import signals_from
from mailfort.status.margin import current_margin, node_loads
from mailfort.store.records import NodeInfo
from tests.capacity_support import profile

NOW = 1_000.0


def heartbeat(metrics: NodeMetrics, name: str = "mx1") -> NodeInfo:
    load: dict[str, Any] = {"window": metrics.snapshot()}
    return NodeInfo(name=name, state="active", started=0, heartbeat=NOW, listeners=[], load=load)


def node_metrics() -> NodeMetrics:
    return NodeMetrics(window=300.0, clock=lambda: NOW)


def test_a_wrong_password_flood_is_not_sessions_served() -> None:
    metrics = node_metrics()
    for _ in range(50_000):
        metrics.login("imap", LOGIN_REJECTED, 0.05)
        metrics.login("pop3", LOGIN_THROTTLED, 0.0)
        metrics.refused("imap", "throttled")
        metrics.refused("smtp", "ip")
    (load,) = node_loads([heartbeat(metrics)], NOW, 5.0)
    assert (load.imap_sessions, load.pop3_sessions, load.messages) == (0, 0, 0)
    m = current_margin(
        CapacityConfig(),
        profile_from_dict(profile()),
        [heartbeat(metrics)],
        now=NOW,
        window_seconds=300.0,
        heartbeat_seconds=5.0,
    )
    assert m is not None and m.profile_cpu == 0.0 and m.spare == 0  # one node, needs one


def test_the_flood_costs_what_the_cpu_says() -> None:
    # 20 CPU-seconds of argon2 over the window are 20 CPU-seconds of demand, no more.
    metrics = node_metrics()
    for _ in range(1000):
        metrics.login("imap", LOGIN_REJECTED, 0.02)
    metrics.process_cpu(20.0)
    (load,) = node_loads([heartbeat(metrics)], NOW, 5.0)
    assert load.cpu_seconds == 20.0 and load.imap_sessions == 0


def test_a_real_login_is_priced() -> None:
    # The check above must be able to fail: a successful login is counted.
    metrics = node_metrics()
    metrics.login("imap", LOGIN_SUCCESS, 0.01)
    metrics.login("imap", LOGIN_ERROR, 0.01)  # the platform failing is not a session served
    (load,) = node_loads([heartbeat(metrics)], NOW, 5.0)
    assert load.imap_sessions == 1


def test_a_low_margin_moves_no_public_signal() -> None:
    idle, busy = node_metrics(), node_metrics()
    busy.process_cpu(299.0)  # a whole CPU for the window: the margin is gone
    args: dict[str, Any] = {"now": NOW, "heartbeat_seconds": 5.0, "window_seconds": 300.0}
    assert signals_from([heartbeat(busy)], **args) == signals_from([heartbeat(idle)], **args)
