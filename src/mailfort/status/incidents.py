"""Incidents: automatic ones that follow component states, operator ones, and maintenance windows.

Automatic rules (:meth:`IncidentBook.apply`):

- When a component's published state leaves *operational* and no automatic incident is open, one
  opens (status *investigating*). A component that turns bad while one is open joins it: one outage
  often touches several components (a slow store slows them all) and customers want one story.
- Every published change of an affected component adds a timeline entry.
- When every affected component is operational again, the incident resolves itself.

Operator incidents, operator updates and scheduled maintenance are separate entries with
``author=Author.OPERATOR``; automatic logic never closes an operator incident or a maintenance
window and never removes an operator's entry.
Operators may update and resolve automatic incidents too.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from mailfort.status.components import Component, ComponentState, StateChange


class IncidentStatus(StrEnum):
    """Incident status; values are those of the Statuspage API."""

    INVESTIGATING = "investigating"
    IDENTIFIED = "identified"
    MONITORING = "monitoring"
    RESOLVED = "resolved"


class Impact(StrEnum):
    """Incident impact (Statuspage values), from the worst state of its components."""

    NONE = "none"
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"

    @classmethod
    def of(cls, state: ComponentState) -> Impact:
        return {
            ComponentState.OPERATIONAL: cls.NONE,
            ComponentState.DEGRADED: cls.MINOR,
            ComponentState.PARTIAL_OUTAGE: cls.MAJOR,
            ComponentState.MAJOR_OUTAGE: cls.CRITICAL,
        }[state]


class Origin(StrEnum):
    AUTOMATIC = "automatic"
    OPERATOR = "operator"


class Author(StrEnum):
    AUTOMATIC = "automatic"
    OPERATOR = "operator"


class MaintenanceStatus(StrEnum):
    """Statuspage values for a maintenance window, derived from the clock."""

    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One entry of an incident's timeline.

    Automatic entries carry ``change`` (component, old and new state, findings) and no text, so
    pages render them in the reader's language; operator entries carry ``text``.
    """

    at: float
    status: IncidentStatus
    author: Author
    text: str = ""
    change: StateChange | None = None


@dataclass(frozen=True, slots=True)
class Incident:
    """An incident; ``components`` holds the current state of every component it has affected."""

    id: str
    origin: Origin
    title: str
    status: IncidentStatus
    opened_at: float
    components: Mapping[Component, ComponentState]
    timeline: tuple[TimelineEntry, ...]
    resolved_at: float | None = None

    @property
    def open(self) -> bool:
        return self.status is not IncidentStatus.RESOLVED

    @property
    def impact(self) -> Impact:
        worst = max(
            self.components.values(), key=lambda s: s.severity, default=ComponentState.OPERATIONAL
        )
        return Impact.of(worst)

    @property
    def updated_at(self) -> float:
        return self.timeline[-1].at if self.timeline else self.opened_at


@dataclass(frozen=True, slots=True)
class Maintenance:
    """A scheduled maintenance window (for example a hardware upgrade) and its updates."""

    id: str
    title: str
    text: str
    starts_at: float
    ends_at: float
    components: tuple[Component, ...] = ()
    updates: tuple[TimelineEntry, ...] = ()
    cancelled_at: float | None = None

    def status(self, now: float) -> MaintenanceStatus:
        if self.cancelled_at is not None:
            return MaintenanceStatus.CANCELLED
        if now < self.starts_at:
            return MaintenanceStatus.SCHEDULED
        if now < self.ends_at:
            return MaintenanceStatus.IN_PROGRESS
        return MaintenanceStatus.COMPLETED


def _counter(prefix: str) -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers)}"


@dataclass(slots=True)
class IncidentBook:
    """All incidents and maintenance windows; the caller persists what the methods return.

    ``new_id`` makes incident and maintenance ids (the store will pass its own).
    """

    incidents: dict[str, Incident] = field(default_factory=dict)
    maintenance: dict[str, Maintenance] = field(default_factory=dict)
    new_id: Callable[[], str] = field(default_factory=lambda: _counter("inc-"))

    # ---- queries -----------------------------------------------------------------------------

    def open_incidents(self) -> list[Incident]:
        return sorted((i for i in self.incidents.values() if i.open), key=lambda i: i.opened_at)

    def open_automatic(self) -> Incident | None:
        for incident in self.open_incidents():
            if incident.origin is Origin.AUTOMATIC:
                return incident
        return None

    def maintenance_at(self, now: float, *statuses: MaintenanceStatus) -> list[Maintenance]:
        wanted = statuses or (MaintenanceStatus.SCHEDULED, MaintenanceStatus.IN_PROGRESS)
        found = (m for m in self.maintenance.values() if m.status(now) in wanted)
        return sorted(found, key=lambda m: m.starts_at)

    # ---- automatic ---------------------------------------------------------------------------

    def apply(self, changes: Sequence[StateChange]) -> list[Incident]:
        """Apply published state changes; return the incidents opened, updated or resolved."""
        touched: dict[str, Incident] = {}
        for change in sorted(changes, key=lambda c: c.at):
            incident = self.open_automatic()
            if incident is None:
                if change.new is ComponentState.OPERATIONAL:
                    continue
                incident = Incident(
                    id=self.new_id(),
                    origin=Origin.AUTOMATIC,
                    title=f"{change.component.display_name}: {change.new.value.replace('_', ' ')}",
                    status=IncidentStatus.INVESTIGATING,
                    opened_at=change.at,
                    components={},
                    timeline=(),
                )
            elif change.component not in incident.components and not change.worse:
                continue
            components = {**incident.components, change.component: change.new}
            status = incident.status
            resolved_at = None
            if all(s is ComponentState.OPERATIONAL for s in components.values()):
                status, resolved_at = IncidentStatus.RESOLVED, change.at
            entry = TimelineEntry(change.at, status, Author.AUTOMATIC, change=change)
            incident = replace(
                incident,
                components=components,
                status=status,
                resolved_at=resolved_at,
                timeline=(*incident.timeline, entry),
            )
            self.incidents[incident.id] = touched[incident.id] = incident
        return list(touched.values())

    # ---- operator ----------------------------------------------------------------------------

    def open_incident(
        self,
        now: float,
        title: str,
        text: str,
        components: Mapping[Component, ComponentState] | None = None,
        status: IncidentStatus = IncidentStatus.INVESTIGATING,
    ) -> Incident:
        """``mailfort status incident open``: an operator incident, never closed automatically."""
        if status is IncidentStatus.RESOLVED:
            raise ValueError("an incident cannot open resolved")
        incident = Incident(
            id=self.new_id(),
            origin=Origin.OPERATOR,
            title=title,
            status=status,
            opened_at=now,
            components=dict(components or {}),
            timeline=(TimelineEntry(now, status, Author.OPERATOR, text),),
        )
        self.incidents[incident.id] = incident
        return incident

    def update_incident(
        self,
        now: float,
        incident_id: str,
        text: str,
        status: IncidentStatus | None = None,
        components: Mapping[Component, ComponentState] | None = None,
    ) -> Incident:
        """``mailfort status incident update`` (and ``resolve`` with ``status=RESOLVED``)."""
        incident = self.incidents[incident_id]
        if not incident.open:
            raise ValueError(f"incident {incident_id} is resolved")
        new_status = status or incident.status
        incident = replace(
            incident,
            status=new_status,
            components={**incident.components, **(components or {})},
            resolved_at=now if new_status is IncidentStatus.RESOLVED else None,
            timeline=(*incident.timeline, TimelineEntry(now, new_status, Author.OPERATOR, text)),
        )
        self.incidents[incident_id] = incident
        return incident

    def resolve_incident(self, now: float, incident_id: str, text: str) -> Incident:
        return self.update_incident(now, incident_id, text, IncidentStatus.RESOLVED)

    def add_maintenance(
        self,
        title: str,
        text: str,
        starts_at: float,
        ends_at: float,
        components: Iterable[Component] = (),
    ) -> Maintenance:
        """``mailfort status maintenance add``: a window with start, end and text."""
        if ends_at <= starts_at:
            raise ValueError("maintenance must end after it starts")
        window = Maintenance(self.new_id(), title, text, starts_at, ends_at, tuple(components))
        self.maintenance[window.id] = window
        return window

    def update_maintenance(
        self, now: float, maintenance_id: str, text: str, *, cancel: bool = False
    ) -> Maintenance:
        window = self.maintenance[maintenance_id]
        if window.cancelled_at is not None:
            raise ValueError(f"maintenance {maintenance_id} is cancelled")
        entry = TimelineEntry(now, IncidentStatus.INVESTIGATING, Author.OPERATOR, text)
        window = replace(
            window,
            updates=(*window.updates, entry),
            cancelled_at=now if cancel else None,
        )
        self.maintenance[maintenance_id] = window
        return window
