"""Service status: health signals → component states → incidents → pages, notices, webhooks.

Holds two halves.

The logic, pure: no asyncio, sockets, TLS, threads, clock or store. Callers pass the current time
(seconds since the epoch, as ``float``) and a :class:`HealthSignals` snapshot into every call, and
persist or publish the results themselves, so it is deterministic, testable with tables and
hypothesis, and the same code runs on every node (or a single leader):

- :mod:`.signals` — the typed snapshot of health signals and the thresholds that judge them;
- :mod:`.components` — the customer-facing components and their states, derived from the signals
  with hysteresis (worse states after ``worsen_after``, recoveries after ``recover_after``);
- :mod:`.incidents` — automatic incidents opened/updated/resolved from state changes, operator
  incidents and updates, and scheduled maintenance windows, which automatic logic never closes;
- :mod:`.records` — incidents, maintenance and findings as JSON for the store, and back, exactly;
- :mod:`.i18n` — the message catalogs (TOML shipped in ``status/locales/``, read once).

The node's side of it, on asyncio and the store's status records:

- :mod:`.repository` — the status data every reader and writer goes through, kept in the store;
- :mod:`.collector` — the cluster's health signals, from the live nodes' heartbeats and the queue;
- :mod:`.service` — the loop every node runs; the holder of the ``status-leader`` lease evaluates,
  saves, and tells subscribers;
- :mod:`.notices` — the one-line notice for logins and 4xx texts, kept in memory;
- :mod:`.webhooks`, :mod:`.webhook_client`, :mod:`.webhook_url`, :mod:`.webhook_verify` —
  notifying subscribers: delivery with retries, one HTTP request to the checked address only,
  which URLs may be used, and WebSub intent verification;
- :mod:`.web` — the status web (its own contract in ``status/web/__init__.py``).

May import: the store's role interfaces, ``cluster/`` (which nodes count as live), ``config`` (its
settings), ``overload/``, and the leaves ``metrics``, ``errors``, ``network``. Must not import:
protocol cores, ``server/``, ``queue/``, ``delivery/`` or ``node.py``; the pure half reaches no
asyncio, socket, clock or store through any chain of imports (``tests/unit/test_layers.py``).

Promises: entries carry structured data (components, states, findings) rather than finished
sentences, so pages, feeds and notices render them through the catalogs in any language; what a
reader sees comes from the store, so every node serves the same status and it outlives any node.
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
