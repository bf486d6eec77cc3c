"""Incidents, maintenance windows and findings as JSON, for the store, and back — exactly.

The store keeps each incident and window whole, as one JSON document, so a timeline entry with
its state change and findings comes back equal to what was saved (floats are written with
`repr`, which Python reads back bit for bit). Enums travel as their values; a mapping of
components travels as a list of pairs, so its order survives too.
"""

from __future__ import annotations

import json
from typing import Any

from mailfort.status.components import Component, ComponentState, StateChange
from mailfort.status.incidents import (
    Author,
    Incident,
    IncidentStatus,
    Maintenance,
    Origin,
    TimelineEntry,
)
from mailfort.status.signals import Finding, Protocol, Severity

# Bumped when the document shape changes, so a reader can convert older documents.
FORMAT = 1


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def finding_to_json(f: Finding) -> dict[str, Any]:
    return {
        "signal": f.signal,
        "value": f.value,
        "limit": f.limit,
        "severity": int(f.severity),
        "protocol": None if f.protocol is None else f.protocol.value,
    }


def finding_from_json(d: dict[str, Any]) -> Finding:
    protocol = d.get("protocol")
    return Finding(
        signal=str(d["signal"]),
        value=float(d["value"]),
        limit=float(d["limit"]),
        severity=Severity(int(d["severity"])),
        protocol=None if protocol is None else Protocol(protocol),
    )


def findings_to_text(findings: tuple[Finding, ...]) -> str:
    return _dumps([finding_to_json(f) for f in findings])


def findings_from_text(text: str) -> tuple[Finding, ...]:
    return tuple(finding_from_json(d) for d in json.loads(text))


def _change_to_json(c: StateChange) -> dict[str, Any]:
    return {
        "component": c.component.value,
        "old": c.old.value,
        "new": c.new.value,
        "at": c.at,
        "findings": [finding_to_json(f) for f in c.findings],
    }


def _change_from_json(d: dict[str, Any]) -> StateChange:
    return StateChange(
        component=Component(d["component"]),
        old=ComponentState(d["old"]),
        new=ComponentState(d["new"]),
        at=float(d["at"]),
        findings=tuple(finding_from_json(f) for f in d.get("findings", ())),
    )


def _entry_to_json(e: TimelineEntry) -> dict[str, Any]:
    return {
        "at": e.at,
        "status": e.status.value,
        "author": e.author.value,
        "text": e.text,
        "change": None if e.change is None else _change_to_json(e.change),
    }


def _entry_from_json(d: dict[str, Any]) -> TimelineEntry:
    change = d.get("change")
    return TimelineEntry(
        at=float(d["at"]),
        status=IncidentStatus(d["status"]),
        author=Author(d["author"]),
        text=str(d.get("text", "")),
        change=None if change is None else _change_from_json(change),
    )


def incident_to_text(i: Incident) -> str:
    return _dumps(
        {
            "format": FORMAT,
            "id": i.id,
            "origin": i.origin.value,
            "title": i.title,
            "status": i.status.value,
            "opened_at": i.opened_at,
            "components": [[c.value, s.value] for c, s in i.components.items()],
            "timeline": [_entry_to_json(e) for e in i.timeline],
            "resolved_at": i.resolved_at,
        }
    )


def incident_from_text(text: str) -> Incident:
    d = json.loads(text)
    resolved = d.get("resolved_at")
    return Incident(
        id=str(d["id"]),
        origin=Origin(d["origin"]),
        title=str(d["title"]),
        status=IncidentStatus(d["status"]),
        opened_at=float(d["opened_at"]),
        components={Component(c): ComponentState(s) for c, s in d["components"]},
        timeline=tuple(_entry_from_json(e) for e in d["timeline"]),
        resolved_at=None if resolved is None else float(resolved),
    )


def maintenance_to_text(m: Maintenance) -> str:
    return _dumps(
        {
            "format": FORMAT,
            "id": m.id,
            "title": m.title,
            "text": m.text,
            "starts_at": m.starts_at,
            "ends_at": m.ends_at,
            "components": [c.value for c in m.components],
            "updates": [_entry_to_json(e) for e in m.updates],
            "cancelled_at": m.cancelled_at,
        }
    )


def maintenance_from_text(text: str) -> Maintenance:
    d = json.loads(text)
    cancelled = d.get("cancelled_at")
    return Maintenance(
        id=str(d["id"]),
        title=str(d["title"]),
        text=str(d["text"]),
        starts_at=float(d["starts_at"]),
        ends_at=float(d["ends_at"]),
        components=tuple(Component(c) for c in d["components"]),
        updates=tuple(_entry_from_json(e) for e in d["updates"]),
        cancelled_at=None if cancelled is None else float(cancelled),
    )


def components_to_text(components: tuple[Component, ...]) -> str:
    return _dumps([c.value for c in components])


def components_from_text(text: str) -> tuple[Component, ...]:
    # A key this version does not know (written by a newer node) is skipped, not fatal.
    known = {c.value for c in Component}
    return tuple(Component(c) for c in json.loads(text) if c in known)
