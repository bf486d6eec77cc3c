"""Service status: health signals → component states → incidents.

Contract of this package (the logic half of ``status/``):

- Everything here is **pure logic**. No sockets, no asyncio, no ``store`` imports, no clocks:
  callers pass the current time (seconds since the epoch, as ``float``) and a :class:`HealthSignals`
  snapshot into every call, and persist or publish the results themselves. That keeps it
  deterministic and testable with tables and hypothesis, and lets every node (or a single
  leader) run the same code.
- :mod:`mailfort.status.signals` — the typed snapshot of health signals and the thresholds (config).
- :mod:`mailfort.status.components` — the customer-facing components and their states, derived from
  the signals with hysteresis (worse states after ``worsen_after``, recoveries
  after ``recover_after``).
- :mod:`mailfort.status.incidents` — automatic incidents opened/updated/resolved from state changes,
  operator incidents and updates, and scheduled maintenance windows, which automatic logic never
  closes.

Entries carry structured data (components, states, findings) rather than finished sentences, so the
web pages, feeds and notices can render them through message catalogs in any language.
"""

from __future__ import annotations

from mailfort.status.components import (
    Assessment,
    Component,
    ComponentState,
    ComponentTracker,
    Hysteresis,
    StateChange,
    StatusEvaluator,
    assess,
)
from mailfort.status.incidents import (
    Author,
    Impact,
    Incident,
    IncidentBook,
    IncidentStatus,
    Maintenance,
    MaintenanceStatus,
    Origin,
    TimelineEntry,
)
from mailfort.status.signals import (
    Ceiling,
    Finding,
    Floor,
    HealthSignals,
    LoginSignals,
    LoginThresholds,
    Protocol,
    Severity,
    StatusThresholds,
)

__all__ = [
    "Assessment",
    "Author",
    "Ceiling",
    "Component",
    "ComponentState",
    "ComponentTracker",
    "Finding",
    "Floor",
    "HealthSignals",
    "Hysteresis",
    "Impact",
    "Incident",
    "IncidentBook",
    "IncidentStatus",
    "LoginSignals",
    "LoginThresholds",
    "Maintenance",
    "MaintenanceStatus",
    "Origin",
    "Protocol",
    "Severity",
    "StateChange",
    "StatusEvaluator",
    "StatusThresholds",
    "TimelineEntry",
    "assess",
]
