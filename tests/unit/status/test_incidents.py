"""Incidents open within a minute of a fault, record each change and resolve after recovery."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailfort.status import (
    Author,
    Component,
    ComponentState,
    HealthSignals,
    Impact,
    IncidentBook,
    IncidentStatus,
    MaintenanceStatus,
    Origin,
    Protocol,
    StateChange,
    StatusEvaluator,
)

OK = ComponentState.OPERATIONAL
DEG = ComponentState.DEGRADED
PART = ComponentState.PARTIAL_OUTAGE
MAJ = ComponentState.MAJOR_OUTAGE
T0 = 1_800_000_000.0
HEALTHY = HealthSignals(accept_to_mailbox_p95=0.3, store_commit_p95=0.01)
SMTP_DOWN = HealthSignals(admission_refusals_per_minute={Protocol.SMTP: 1000.0})


def simulate(
    fault_start: float, fault_end: float, until: float, phase: float = 0.0
) -> tuple[IncidentBook, StatusEvaluator]:
    """Evaluate every 15 s from ``T0 + phase``; the fault shows in the signals in [start, end)."""
    evaluator = StatusEvaluator()
    book = IncidentBook()
    now = T0 + phase
    while now <= T0 + until:
        faulty = T0 + fault_start <= now < T0 + fault_end
        book.apply(evaluator.evaluate(now, SMTP_DOWN if faulty else HEALTHY))
        now += 15.0
    return book, evaluator


@settings(max_examples=200, deadline=None)
@given(
    start=st.floats(min_value=0.0, max_value=600.0),
    duration=st.floats(min_value=60.0, max_value=3600.0),
    phase=st.floats(min_value=0.0, max_value=14.999),
)
def test_incident_opens_within_60s_and_resolves_after_recovery(
    start: float, duration: float, phase: float
) -> None:
    end = start + duration
    book, evaluator = simulate(start, end, end + 400.0, phase)
    [incident] = book.incidents.values()
    assert incident.origin is Origin.AUTOMATIC
    assert T0 + start <= incident.opened_at <= T0 + start + 60.0
    assert incident.status is IncidentStatus.RESOLVED
    assert incident.resolved_at is not None
    # resolves after the signals recover, after recover_after, within one more evaluation
    assert T0 + end + 300.0 <= incident.resolved_at <= T0 + end + 300.0 + 15.0
    assert [e.change.new for e in incident.timeline if e.change] == [PART, OK]
    assert evaluator.states[Component.INCOMING] is OK


def test_short_blip_opens_nothing() -> None:
    book, _ = simulate(100.0, 120.0, 1000.0)
    assert book.incidents == {}


def test_still_open_while_fault_lasts() -> None:
    book, _ = simulate(0.0, 10_000.0, 900.0)
    [incident] = book.open_incidents()
    assert incident.impact is Impact.MAJOR
    assert incident.components == {Component.INCOMING: PART}


def change(
    at: float, component: Component, old: ComponentState, new: ComponentState
) -> StateChange:
    return StateChange(component, old, new, T0 + at)


def test_timeline_records_each_change_and_joins_components() -> None:
    book = IncidentBook()
    steps = [
        change(0, Component.IMAP, OK, DEG),
        change(30, Component.POP3, OK, MAJ),
        change(60, Component.IMAP, DEG, PART),
        change(400, Component.POP3, MAJ, OK),
        change(500, Component.IMAP, PART, OK),
    ]
    for step in steps:
        book.apply([step])
    [incident] = book.incidents.values()
    assert [e.change for e in incident.timeline] == steps
    assert [e.status for e in incident.timeline] == [IncidentStatus.INVESTIGATING] * 4 + [
        IncidentStatus.RESOLVED
    ]
    assert all(e.author is Author.AUTOMATIC for e in incident.timeline)
    assert incident.resolved_at == T0 + 500
    assert incident.impact is Impact.NONE
    assert incident.title == "IMAP: degraded performance"
    # a new fault after resolution is a new incident
    [second] = book.apply([change(900, Component.OUTGOING, OK, DEG)])
    assert second.id != incident.id and second.open


def test_recovery_of_unaffected_component_is_ignored() -> None:
    book = IncidentBook()
    assert book.apply([change(0, Component.IMAP, DEG, OK)]) == []
    book.apply([change(10, Component.IMAP, OK, DEG)])
    assert book.apply([change(20, Component.POP3, DEG, OK)]) == []


def test_operator_incident_never_closed_automatically() -> None:
    book = IncidentBook()
    manual = book.open_incident(
        T0, "Spam filter upgrade", "Some messages may be delayed.", {Component.INCOMING: DEG}
    )
    book.apply([change(10, Component.INCOMING, OK, DEG)])
    book.apply([change(400, Component.INCOMING, DEG, OK)])
    assert book.incidents[manual.id].open
    assert book.incidents[manual.id].timeline == manual.timeline
    [auto] = [i for i in book.incidents.values() if i.origin is Origin.AUTOMATIC]
    assert not auto.open
    updated = book.update_incident(T0 + 500, manual.id, "Found it.", IncidentStatus.IDENTIFIED)
    assert updated.status is IncidentStatus.IDENTIFIED and updated.open
    resolved = book.resolve_incident(T0 + 600, manual.id, "Fixed.")
    assert resolved.resolved_at == T0 + 600
    assert [e.text for e in resolved.timeline] == [
        "Some messages may be delayed.",
        "Found it.",
        "Fixed.",
    ]
    assert all(e.author is Author.OPERATOR for e in resolved.timeline)
    with pytest.raises(ValueError):
        book.update_incident(T0 + 700, manual.id, "again")


def test_operator_update_on_automatic_incident_is_kept() -> None:
    book = IncidentBook()
    [auto] = book.apply([change(0, Component.OUTGOING, OK, PART)])
    book.update_incident(T0 + 60, auto.id, "A remote provider is refusing our mail.")
    [auto] = book.apply([change(400, Component.OUTGOING, PART, OK)])
    assert not auto.open
    assert [e.author for e in auto.timeline] == [
        Author.AUTOMATIC,
        Author.OPERATOR,
        Author.AUTOMATIC,
    ]


def test_maintenance_window() -> None:
    book = IncidentBook()
    window = book.add_maintenance(
        "Hardware upgrade", "New disks for the store.", T0 + 3600, T0 + 7200, [Component.IMAP]
    )
    assert window.status(T0) is MaintenanceStatus.SCHEDULED
    assert window.status(T0 + 3600) is MaintenanceStatus.IN_PROGRESS
    assert window.status(T0 + 7200) is MaintenanceStatus.COMPLETED
    assert book.maintenance_at(T0) == [window]
    # automatic logic does not touch it
    book.apply([change(3700, Component.IMAP, OK, MAJ), change(9000, Component.IMAP, MAJ, OK)])
    assert book.maintenance[window.id] == window
    assert book.maintenance_at(T0 + 8000) == []
    assert book.maintenance_at(T0 + 8000, MaintenanceStatus.COMPLETED) == [window]
    cancelled = book.update_maintenance(T0 + 100, window.id, "Postponed.", cancel=True)
    assert cancelled.status(T0 + 4000) is MaintenanceStatus.CANCELLED
    with pytest.raises(ValueError):
        book.add_maintenance("x", "y", T0 + 10, T0)
