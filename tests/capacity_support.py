"""A profile and workloads for the planner's tests: figures of the order mailfort measures on a
2-CPU machine (benchmarks/README.md), written out so that a test states what it plans with."""

from __future__ import annotations

import copy
from typing import Any

from mailfort import __version__

PROFILE: dict[str, Any] = {
    "format": "mailfort-capacity-profile",
    "schema": 1,
    "mailfort_version": __version__,
    "measured_at": "2026-12-07T00:00:00Z",
    "machine": {
        "hostname": "test",
        "cpu_model": "test CPU",
        "cpus": 2,
        "memory_bytes": 24 << 30,
        "kernel": "6.1",
        "python": "3.11",
    },
    "engine": "postgresql",
    "source": "benchmark",
    "node_cpus": 1.0,
    "accept": [
        {"name": "small", "max_bytes": 16384, "measured_bytes": 5000, "cpu_seconds": 0.0008},
        {"name": "medium", "max_bytes": 262144, "measured_bytes": 100000, "cpu_seconds": 0.002},
        {"name": "large", "max_bytes": 0, "measured_bytes": 2000000, "cpu_seconds": 0.02},
    ],
    "remote_delivery_cpu": 0.002,
    "imap_login_cpu": 0.004,
    "header_fetch_cpu": 0.001,
    "header_fetch_per_message_cpu": 0.00005,
    "pop3_session_cpu": 0.003,
    "commit_p50_seconds": 0.002,
    "commit_p99_seconds": 0.01,
    "db_cpu_per_message": 0.0004,
    "memory_base_bytes": 70 << 20,
    "memory_per_connection_bytes": {"smtp": 60000, "imap": 90000, "pop3": 50000},
    "saturation_limit": 64,
    "saturation_messages_per_second": 1100.0,
    "saturation_refused_share": 0.05,
}

WORKLOAD: dict[str, Any] = {
    "mailboxes": {"count": 100_000},
    "messages": {
        "per_mailbox_per_day": 20,
        "peak_factor": 2.5,
        "remote_share": 0.3,
        "sizes": {"small": 0.8, "medium": 0.18, "large": 0.02},
    },
    "logins": {"imap": 0.5, "pop3": 0.1, "header_fetch_messages": 50},
    "targets": {"p99_time_to_250_seconds": 1.0, "p99_time_to_mailbox_seconds": 120},
}


def profile(**changes: Any) -> dict[str, Any]:
    """A copy of PROFILE with top-level keys replaced."""
    data = copy.deepcopy(PROFILE)
    data.update(changes)
    return data


def workload(**tables: Any) -> dict[str, Any]:
    """A copy of WORKLOAD with whole tables replaced (or added)."""
    data = copy.deepcopy(WORKLOAD)
    data.update(tables)
    return data
