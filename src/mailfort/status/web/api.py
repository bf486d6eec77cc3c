"""JSON shaped like the Atlassian Statuspage API v2 (`/api/v2/*.json`), which monitoring tools
and status aggregators already read. Field names and values follow that API; times are ISO 8601
in UTC. All documents come from the same snapshot and are rendered once per snapshot."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailfort.status.components import ALL_COMPONENTS, Component, ComponentState
from mailfort.status.incidents import Impact, Incident, Maintenance, TimelineEntry
from mailfort.status.repository import StatusPage
from mailfort.status.web import model
from mailfort.status.web.caching import Body, cached
from mailfort.status.web.context import WebContext, language
from mailfort.status.web.pages import cache_age
from mailfort.status.web.snapshot import View
from mailfort.status.web.text import Texts, iso

JSON = "application/json"
PAGE_ID = "mailfort"

_INDICATOR = {
    ComponentState.OPERATIONAL: "none",
    ComponentState.DEGRADED: "minor",
    ComponentState.PARTIAL_OUTAGE: "major",
    ComponentState.MAJOR_OUTAGE: "critical",
}
_INDICATOR_TEXT = {
    # Statuspage's own descriptions for each indicator, which some tools match on.
    "none": "All Systems Operational",
    "minor": "Minor Service Outage",
    "major": "Partial System Outage",
    "critical": "Major Service Outage",
    "unknown": "Status Unknown",
}
_ORDER = ("none", "minor", "major", "critical")


class Documents:
    """Builds the API documents from one view, in one language."""

    def __init__(self, t: Texts, view: View, base: str) -> None:
        self.t = t
        self.view = view
        self.base = base
        self.page = view.page
        self.updated = iso(view.fetched_at or view.now)

    # ---- parts ---------------------------------------------------------------------------------

    def page_info(self) -> dict[str, Any]:
        return {
            "id": PAGE_ID,
            "name": self.t.provider,
            "url": self.base,
            "time_zone": "Etc/UTC",
            "updated_at": self.updated,
        }

    def status(self) -> dict[str, str]:
        page = self.page
        if page is None:
            return {"indicator": "unknown", "description": _INDICATOR_TEXT["unknown"]}
        levels = [_INDICATOR[model.overall_state(page)]]
        levels += [_impact_indicator(i.impact) for i in page.open_incidents]
        indicator = max(levels, key=_ORDER.index)
        return {"indicator": indicator, "description": _INDICATOR_TEXT[indicator]}

    def components(self) -> list[dict[str, Any]]:
        page = self.page
        states = model.effective_states(page) if page else {}
        found = []
        for position, component in enumerate(ALL_COMPONENTS, start=1):
            published = page.components.get(component) if page else None
            if page is not None and component not in states:
                continue  # not offered by this installation
            found.append(
                {
                    "id": component.value,
                    "name": self.t.component(component),
                    "status": states[component].value if component in states else "unknown",
                    "created_at": iso(published.since) if published and published.since else None,
                    "updated_at": iso(
                        (published.updated_at or published.since) if published else None
                    )
                    or self.updated,
                    "position": position,
                    "description": None,
                    "showcase": True,
                    "start_date": None,
                    "group_id": None,
                    "page_id": PAGE_ID,
                    "group": False,
                    "only_show_if_degraded": False,
                }
            )
        return found

    def _component_refs(self, components: list[Component]) -> list[dict[str, Any]]:
        return [
            {"id": c.value, "name": self.t.component(c), "page_id": PAGE_ID, "group": False}
            for c in components
        ]

    def _update(self, owner: str, index: int, entry: TimelineEntry) -> dict[str, Any]:
        affected = []
        if entry.change is not None:
            affected.append(
                {
                    "code": entry.change.component.value,
                    "name": self.t.component(entry.change.component),
                    "old_status": entry.change.old.value,
                    "new_status": entry.change.new.value,
                }
            )
        return {
            "id": f"{owner}-u{index}",
            "status": entry.status.value,
            "body": self.t.entry(entry),
            "incident_id": owner,
            "created_at": iso(entry.at),
            "updated_at": iso(entry.at),
            "display_at": iso(entry.at),
            "affected_components": affected,
        }

    def incident(self, item: Incident) -> dict[str, Any]:
        monitoring = next((e.at for e in item.timeline if e.status == "monitoring"), None)
        updates = [self._update(item.id, i, e) for i, e in enumerate(item.timeline, start=1)]
        return {
            "id": item.id,
            "name": item.title,
            "status": item.status.value,
            "impact": item.impact.value,
            "created_at": iso(item.opened_at),
            "updated_at": iso(item.updated_at),
            "monitoring_at": iso(monitoring),
            "resolved_at": iso(item.resolved_at),
            "shortlink": f"{self.base}incidents/{item.id}",
            "started_at": iso(item.opened_at),
            "page_id": PAGE_ID,
            "incident_updates": list(reversed(updates)),  # newest first, as Statuspage does
            "components": self._component_refs(model.ordered(item.components)),
        }

    def maintenance(self, item: Maintenance) -> dict[str, Any]:
        status = item.status(self.view.now)
        updates = [self._update(item.id, i, e) for i, e in enumerate(item.updates, start=1)]
        first: dict[str, Any] = {
            "id": f"{item.id}-u0",
            "status": "scheduled",
            "body": item.text,
            "incident_id": item.id,
            "created_at": iso(item.starts_at),
            "updated_at": iso(item.starts_at),
            "display_at": iso(item.starts_at),
            "affected_components": [],
        }
        last = item.updates[-1].at if item.updates else item.starts_at
        return {
            "id": item.id,
            "name": item.title,
            "status": status.value,
            "impact": "maintenance",
            "created_at": iso(item.starts_at),
            "updated_at": iso(last),
            "monitoring_at": None,
            "resolved_at": iso(item.cancelled_at)
            or (iso(item.ends_at) if status == "completed" else None),
            "shortlink": f"{self.base}#{item.id}",
            "started_at": iso(item.starts_at),
            "page_id": PAGE_ID,
            "incident_updates": [*reversed(updates), first],
            "components": self._component_refs(model.ordered(item.components)),
            "scheduled_for": iso(item.starts_at),
            "scheduled_until": iso(item.ends_at),
        }

    # ---- documents -----------------------------------------------------------------------------

    def _incidents(self, page: StatusPage | None, *, open_only: bool) -> list[dict[str, Any]]:
        if page is None:
            return []
        items = list(page.open_incidents)
        if not open_only:
            items += list(page.recent_incidents)
        items.sort(key=lambda i: i.updated_at, reverse=True)
        return [self.incident(i) for i in items]

    def _maintenances(self) -> list[dict[str, Any]]:
        return [self.maintenance(m) for m in model.upcoming(self.page, self.view.now)]

    def summary(self) -> dict[str, Any]:
        return {
            "page": self.page_info(),
            "status": self.status(),
            "components": self.components(),
            "incidents": self._incidents(self.page, open_only=True),
            "scheduled_maintenances": self._maintenances(),
        }

    def status_doc(self) -> dict[str, Any]:
        return {"page": self.page_info(), "status": self.status()}

    def components_doc(self) -> dict[str, Any]:
        return {"page": self.page_info(), "components": self.components()}

    def incidents_doc(self) -> dict[str, Any]:
        return {"page": self.page_info(), "incidents": self._incidents(self.page, open_only=False)}

    def unresolved_doc(self) -> dict[str, Any]:
        return {"page": self.page_info(), "incidents": self._incidents(self.page, open_only=True)}

    def upcoming_doc(self) -> dict[str, Any]:
        scheduled = [m for m in self._maintenances() if m["status"] == "scheduled"]
        return {"page": self.page_info(), "scheduled_maintenances": scheduled}

    def active_doc(self) -> dict[str, Any]:
        active = [m for m in self._maintenances() if m["status"] == "in_progress"]
        return {"page": self.page_info(), "scheduled_maintenances": active}


def _impact_indicator(impact: Impact) -> str:
    return impact.value


def dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def routes(ctx: WebContext) -> list[Route]:
    def endpoint(name: str, build: Callable[[Documents], dict[str, Any]]) -> Any:
        async def handle(request: Request) -> Response:
            view = await ctx.snapshots.view()
            lang = language(request)
            base = ctx.base_url(request)

            def render() -> Body:
                return Body.of(dumps(build(Documents(Texts(lang, ctx.provider), view, base))), JSON)

            body = view.rendered((name, lang, base), render)
            return cached(request, body, lang=lang, max_age=cache_age(view))

        return handle

    documents: dict[str, Callable[[Documents], dict[str, Any]]] = {
        "summary": Documents.summary,
        "status": Documents.status_doc,
        "components": Documents.components_doc,
        "incidents": Documents.incidents_doc,
        "incidents/unresolved": Documents.unresolved_doc,
        "scheduled-maintenances/upcoming": Documents.upcoming_doc,
        "scheduled-maintenances/active": Documents.active_doc,
    }
    return [
        Route(f"/api/v2/{name}.json", endpoint(name, build), methods=["GET"])
        for name, build in documents.items()
    ]
