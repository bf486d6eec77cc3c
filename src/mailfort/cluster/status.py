"""`mailfort cluster status`: every node, what it is doing, and the leases it holds."""

from __future__ import annotations

from dataclasses import dataclass

from mailfort.cluster.membership import DEAD_AFTER
from mailfort.store.records import NodeInfo
from mailfort.store.roles import Cluster


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatus:
    info: NodeInfo
    state: str  # active | draining | dead | gone
    age: float  # seconds since its last heartbeat
    leases: int


def effective_state(info: NodeInfo, now: float, heartbeat_seconds: float) -> str:
    if info.state == "gone":
        return "gone"
    if now - info.heartbeat > DEAD_AFTER * heartbeat_seconds:
        return "dead"
    return info.state


async def cluster_status(store: Cluster, now: float, heartbeat_seconds: float) -> list[NodeStatus]:
    nodes = await store.list_nodes()
    leases = await store.lease_counts(now)
    found = [
        NodeStatus(
            info=n,
            state=effective_state(n, now, heartbeat_seconds),
            age=max(0.0, now - n.heartbeat),
            leases=leases.pop(n.name, 0),
        )
        for n in nodes
    ]
    # Leases held by owners that never registered (an older node, a test): shown all the same.
    for owner, count in sorted(leases.items()):
        info = NodeInfo(name=owner, state="gone", started=0.0, heartbeat=0.0, listeners=[], load={})
        found.append(NodeStatus(info=info, state="unregistered", age=0.0, leases=count))
    return found


def _listeners(info: NodeInfo) -> str:
    parts = [f"{x.get('name')}={x.get('host')}:{x.get('port')}" for x in info.listeners]
    return ",".join(parts) or "-"


def _load(info: NodeInfo) -> str:
    # The metrics window rides along in the heartbeat for the status leader; not for this table.
    shown = {k: v for k, v in info.load.items() if not isinstance(v, dict)}
    return ",".join(f"{k}={v}" for k, v in sorted(shown.items())) or "-"


def _age(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 120 else f"{int(seconds // 60)}m"


def format_status(found: list[NodeStatus], margin: str = "") -> str:
    """The table, and the capacity margin line (`status/margin.py`) after it when given (not
    without nodes: no cluster has no margin to speak of)."""
    table = _table(found)
    return f"{table}\n{margin}" if margin and found else table


def _table(found: list[NodeStatus]) -> str:
    if not found:
        return "no nodes registered"
    # One word per cell, so that scripts can split lines on white space.
    rows = [("NODE", "STATE", "LAST-HEARTBEAT", "LEASES", "LOAD", "LISTENERS")]
    for s in found:
        age = "-" if s.state == "unregistered" else _age(s.age)
        rows.append((s.info.name, s.state, age, str(s.leases), _load(s.info), _listeners(s.info)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:5])) + "  " + r[5] for r in rows
    )
