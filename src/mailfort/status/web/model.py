"""Page models: what the templates show, built from the snapshot in the reader's language.

Templates get plain dicts of finished strings; every decision (order, language, which state a
component is in when the status is unknown) is made here, where it can be read and tested.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import jinja2

from mailfort.status.components import ALL_COMPONENTS, Component, ComponentState
from mailfort.status.i18n import SUPPORTED
from mailfort.status.incidents import Incident, Maintenance, MaintenanceStatus
from mailfort.status.repository import DayStatus, StatusPage
from mailfort.status.web.snapshot import View
from mailfort.status.web.text import Texts, iso

UNKNOWN = "unknown"
_ICONS = {
    ComponentState.OPERATIONAL: "✓",
    ComponentState.DEGRADED: "!",
    ComponentState.PARTIAL_OUTAGE: "✕",
    ComponentState.MAJOR_OUTAGE: "✕",
}
LANGUAGE_NAMES = {"en": "English", "de": "Deutsch"}


@functools.cache
def environment() -> jinja2.Environment:
    # Autoescape everything: incident titles and texts are operator input shown to the public.
    return jinja2.Environment(
        loader=jinja2.PackageLoader("mailfort.status.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def effective_states(page: StatusPage) -> dict[Component, ComponentState]:
    """Published states, made worse where an open incident says so.

    The leader publishes what the signals show; an operator who opens an incident for a
    component ("IMAP: degraded") knows something the signals may not, and the page must not
    show "operational" next to their incident.
    """
    states = {c: p.state for c, p in page.components.items()}
    for incident in page.open_incidents:
        for component, state in incident.components.items():
            current = states.get(component, ComponentState.OPERATIONAL)
            states[component] = max(current, state, key=lambda s: s.severity)
    return states


def overall_state(page: StatusPage) -> ComponentState:
    return max(
        effective_states(page).values(),
        key=lambda s: s.severity,
        default=ComponentState.OPERATIONAL,
    )


def overall(view: View) -> str:
    """The state of the whole service: the worst component, or "unknown" without a snapshot."""
    return UNKNOWN if view.page is None else overall_state(view.page).value


def stale_note(t: Texts, view: View) -> str:
    if view.failing_since is None or view.page is None:
        return ""
    return t("web.stale", since=t.datetime(view.failing_since), time=t.datetime(view.fetched_at))


def base_context(t: Texts, view: View, base: str) -> dict[str, Any]:
    return {
        "t": t,
        "lang": t.lang,
        "provider": t.provider,
        "base": base,
        "languages": [(code, LANGUAGE_NAMES.get(code, code)) for code in SUPPORTED],
        "updated": t.datetime(view.fetched_at) if view.fetched_at else "",
        "stale": stale_note(t, view),
    }


def incident(t: Texts, item: Incident) -> dict[str, Any]:
    entries = [
        {
            "when": t.datetime(entry.at),
            "iso": iso(entry.at),
            "status": t(f"web.incident_status.{entry.status}"),
            "text": t.entry(entry),
        }
        for entry in reversed(item.timeline)
    ]
    return {
        "id": item.id,
        "title": item.title,
        "status": t(f"web.incident_status.{item.status}"),
        "impact": t(f"web.impact.{item.impact}"),
        "affected": t.affected(ordered(item.components)),
        "entries": entries,
        "window": t.datetime(item.opened_at)
        + (" – " + t.datetime(item.resolved_at) if item.resolved_at else ""),
    }


def maintenance(t: Texts, item: Maintenance, now: float) -> dict[str, Any]:
    return {
        "id": item.id,
        "title": item.title,
        "text": item.text,
        "status": t(f"web.maintenance_status.{item.status(now)}"),
        "window": t.window(item.starts_at, item.ends_at),
        "starts_iso": iso(item.starts_at),
        "affected": t.affected(ordered(item.components)),
        "updates": [{"when": t.datetime(u.at), "text": t.entry(u)} for u in reversed(item.updates)],
    }


def ordered(components: Iterable[Component]) -> list[Component]:
    """Components in the page's fixed order, whatever order the store returned them in."""
    present = set(components)
    return [c for c in ALL_COMPONENTS if c in present]


def components(t: Texts, page: StatusPage | None) -> list[dict[str, str]]:
    if page is None:
        return [
            {"name": t.component(c), "state": UNKNOWN, "icon": "?", "text": t.state(UNKNOWN)}
            for c in ALL_COMPONENTS
        ]
    states = effective_states(page)
    return [
        {
            "name": t.component(c),
            "state": states[c].value,
            "icon": _ICONS[states[c]],
            "text": t.state(states[c]),
        }
        for c in ordered(states)
    ]


def _day_kind(day: DayStatus) -> str:
    if not day.measured:
        return "unmeasured"
    if day.worst in (ComponentState.PARTIAL_OUTAGE, ComponentState.MAJOR_OUTAGE):
        return "outage"
    if day.worst is ComponentState.DEGRADED:
        return "degraded"
    return "ok"


def _day_title(t: Texts, day: DayStatus, kind: str) -> str:
    label = t.day(day.day)
    if kind == "outage":
        return t(
            "web.day.outage",
            day=label,
            duration=t.duration(day.outage_seconds),
            degraded=t.duration(day.degraded_seconds),
        )
    if kind == "degraded":
        return t("web.day.degraded", day=label, duration=t.duration(day.degraded_seconds))
    return t(f"web.day.{kind}", day=label)


def history(t: Texts, page: StatusPage) -> list[dict[str, Any]]:
    rows = []
    for component in ordered(page.history):
        days = page.history[component]
        cells = []
        counts = {"ok": 0, "degraded": 0, "outage": 0, "unmeasured": 0}
        for day in days:
            kind = _day_kind(day)
            counts[kind] += 1
            cells.append({"kind": kind, "title": _day_title(t, day, kind)})
        measured = [d for d in days if d.measured]
        down = sum(d.outage_seconds for d in measured)
        uptime = 1.0 - down / (len(measured) * 86400) if measured else None
        rows.append(
            {
                "name": t.component(component),
                "cells": cells,
                "summary": t("web.history_summary", **counts),
                "uptime": "" if uptime is None else t("web.uptime", value=t.percent(uptime, 2)),
            }
        )
    return rows


def page_context(t: Texts, view: View, base: str, days: int, recent_days: int) -> dict[str, Any]:
    page = view.page
    state = overall(view)
    context = base_context(t, view, base)
    context.update(
        overall=state,
        overall_text=t.overall(state),
        unknown=page is None,
        components=components(t, page),
        incidents=[incident(t, i) for i in page.open_incidents] if page else [],
        maintenance=[maintenance(t, m, view.now) for m in upcoming(page, view.now)],
        history=history(t, page) if page else [],
        recent=[incident(t, i) for i in page.recent_incidents] if page else [],
        days=days,
        recent_days=recent_days,
    )
    return context


def upcoming(page: StatusPage | None, now: float) -> list[Maintenance]:
    if page is None:
        return []
    wanted = (MaintenanceStatus.SCHEDULED, MaintenanceStatus.IN_PROGRESS)
    return [m for m in page.maintenance if m.status(now) in wanted]
