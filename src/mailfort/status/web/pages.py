"""The public HTML pages: `/` and `/incidents/{id}`; readable without JavaScript."""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailfort.errors import StoreError
from mailfort.status.incidents import Incident
from mailfort.status.web import model
from mailfort.status.web.caching import (
    HTML_HEADERS,
    PAGE_MAX_AGE,
    UNSURE_MAX_AGE,
    Body,
    cached,
)
from mailfort.status.web.context import WebContext, language
from mailfort.status.web.guard import Slot
from mailfort.status.web.snapshot import View
from mailfort.status.web.text import Texts

HTML = "text/html; charset=utf-8"
_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_OLD_INCIDENTS = 256  # incidents older than the snapshot, remembered per snapshot


class _Busy(Exception):
    """The overload gate refused the store read of an incident older than the snapshot."""


def cache_age(view: View) -> int:
    """Shorter caching for pages drawn from stale or missing data (they should heal soon)."""
    return UNSURE_MAX_AGE if view.page is None or view.stale else PAGE_MAX_AGE


def routes(ctx: WebContext) -> list[Route]:
    status = ctx.config.status
    # Incidents that fell out of the snapshot (older than `recent_days`), keyed by snapshot so
    # they refresh with it; bounded so a crawler walking ids cannot grow it.
    old: OrderedDict[str, Incident | None] = OrderedDict()
    old_for: list[View | None] = [None]

    async def index(request: Request) -> Response:
        view = await ctx.snapshots.view()
        lang = language(request)
        base = ctx.base_url(request)

        def render() -> Body:
            t = Texts(lang, ctx.provider)
            context = model.page_context(t, view, base, status.history_days, ctx.recent_days)
            return Body.of(model.render("index.html", **context), HTML)

        body = view.rendered(("index", lang, base), render)
        return cached(request, body, lang=lang, max_age=cache_age(view), headers=HTML_HEADERS)

    async def find(view: View, incident_id: str, client: str | None) -> Incident | None:
        if view.page is not None:
            for item in (*view.page.open_incidents, *view.page.recent_incidents):
                if item.id == incident_id:
                    return item
        if old_for[0] is not view:
            old.clear()
            old_for[0] = view
        if incident_id not in old:
            # The page itself takes no slot (guard.from_memory); this store read does, so a
            # crawler walking old ids is store-bound work like any other.
            slot = Slot.take(ctx.gate(), client)
            if slot is None:
                raise _Busy
            ok = False
            try:
                # Bounded like the snapshot's own reads: a hanging store must not hold the visitor.
                lookup = ctx.repository.incident(incident_id)
                old[incident_id] = await asyncio.wait_for(lookup, ctx.snapshots.timeout)
                ok = True
            finally:
                slot.done(ok=ok)  # a store error or timeout backs the limit off
            if len(old) > _OLD_INCIDENTS:
                old.popitem(last=False)
        return old[incident_id]

    async def incident(request: Request) -> Response:
        incident_id = request.path_params["incident_id"]
        view = await ctx.snapshots.view()
        lang = language(request)
        base = ctx.base_url(request)
        t = Texts(lang, ctx.provider)
        found: Incident | None = None
        if _ID.match(incident_id):
            try:
                found = await find(view, incident_id, ctx.client_network(request))
            except (StoreError, TimeoutError, _Busy):
                return Response(
                    t("web.account.busy"),
                    503,
                    headers={
                        "Retry-After": str(ctx.config.overload.retry_after),
                        "Cache-Control": "no-store",
                    },
                    media_type="text/plain; charset=utf-8",
                )

        def render() -> Body:
            context = model.base_context(t, view, base)
            context.update(
                incident=model.incident(t, found) if found else None,
                query=f"?lang={lang}" if "lang" in request.query_params else "",
            )
            return Body.of(model.render("incident.html", **context), HTML)

        key = ("incident", incident_id, lang, base, "lang" in request.query_params)
        body = view.rendered(key, render)
        status_code = 200 if found else 404
        return cached(
            request,
            body,
            lang=lang,
            status_code=status_code,
            max_age=cache_age(view),
            headers=HTML_HEADERS,
        )

    return [
        Route("/", index, methods=["GET"]),
        Route("/incidents/{incident_id}", incident, methods=["GET"]),
    ]
