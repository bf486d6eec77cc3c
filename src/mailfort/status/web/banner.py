"""The embeddable banner for the provider's homepage and webmail.

- `/banner.json` (CORS `*`): `{active, level, title, text, url, updated_at, count}`.
- `/banner.js`: a small script that fetches banner.json and puts a red notice at the top of the
  page while something is open, and nothing otherwise (static/banner.js).
- `/banner.html`: the same notice as an HTML fragment for server-side includes; an empty body
  while nothing is open.

Active means: an open incident (any; operators open incidents to tell customers) or maintenance
in progress. The worst open incident wins the banner; maintenance shows only without incidents.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailfort.status.incidents import MaintenanceStatus
from mailfort.status.web import model
from mailfort.status.web.caching import Body, cached
from mailfort.status.web.context import WebContext, language
from mailfort.status.web.pages import cache_age
from mailfort.status.web.snapshot import View
from mailfort.status.web.text import Texts, iso

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, OPTIONS",
    "Access-Control-Allow-Headers": "Accept-Language, If-None-Match",
    "Access-Control-Expose-Headers": "ETag",
    "Access-Control-Max-Age": "86400",
}
_SEVERITY = ("none", "minor", "major", "critical")


def banner(t: Texts, view: View, base: str) -> dict[str, Any]:
    page = view.page
    inactive: dict[str, Any] = {
        "active": False,
        "level": "none",
        "title": "",
        "text": "",
        "url": base,
        "updated_at": None,
        "count": 0,
    }
    if page is None:
        return inactive
    running = [
        m
        for m in model.upcoming(page, view.now)
        if m.status(view.now) is MaintenanceStatus.IN_PROGRESS
    ]
    count = len(page.open_incidents) + len(running)
    if page.open_incidents:
        worst = max(
            page.open_incidents,
            key=lambda i: (_SEVERITY.index(i.impact.value), i.updated_at),
        )
        text = t.latest(worst)
        if count > 1:
            text += " " + t("web.banner.more", count=count)
        return {
            "active": True,
            # An operator incident without components has impact "none", yet it is a notice.
            "level": worst.impact.value if worst.impact.value != "none" else "minor",
            "title": t("web.banner.incident", title=worst.title),
            "text": text,
            "url": f"{base}incidents/{worst.id}",
            "updated_at": iso(worst.updated_at),
            "count": count,
        }
    if running:
        window = running[0]
        return {
            "active": True,
            "level": "maintenance",
            "title": t("web.banner.maintenance", title=window.title),
            "text": f"{window.text} ({t.window(window.starts_at, window.ends_at)})",
            "url": f"{base}#{window.id}",
            "updated_at": iso(window.starts_at),
            "count": count,
        }
    return inactive


def _script() -> bytes:
    return (resources.files("mailfort.status.web") / "static" / "banner.js").read_bytes()


def routes(ctx: WebContext) -> list[Route]:
    script = Body.of(_script(), "text/javascript; charset=utf-8")

    async def banner_json(request: Request) -> Response:
        view = await ctx.snapshots.view()
        lang = language(request)
        base = ctx.base_url(request)

        def render() -> Body:
            document = banner(Texts(lang, ctx.provider), view, base)
            return Body.of(json.dumps(document, ensure_ascii=False).encode(), "application/json")

        body = view.rendered(("banner.json", lang, base), render)
        return cached(request, body, lang=lang, headers=CORS, max_age=cache_age(view))

    async def banner_html(request: Request) -> Response:
        view = await ctx.snapshots.view()
        lang = language(request)
        base = ctx.base_url(request)

        def render() -> Body:
            t = Texts(lang, ctx.provider)
            document = banner(t, view, base)
            if not document["active"]:
                return Body.of(b"", "text/html; charset=utf-8")
            html = model.render("banner.html", t=t, lang=lang, banner=document)
            return Body.of(html, "text/html; charset=utf-8")

        body = view.rendered(("banner.html", lang, base), render)
        return cached(request, body, lang=lang, headers=CORS, max_age=cache_age(view))

    async def banner_js(request: Request) -> Response:
        # The script never changes while the node runs; its data comes from banner.json.
        return cached(request, script, max_age=300, vary=None, headers=CORS)

    async def preflight(request: Request) -> Response:
        return Response(status_code=204, headers={**CORS, "Cache-Control": "public, max-age=86400"})

    return [
        Route("/banner.json", banner_json, methods=["GET"]),
        Route("/banner.json", preflight, methods=["OPTIONS"]),
        Route("/banner.html", banner_html, methods=["GET"]),
        Route("/banner.html", preflight, methods=["OPTIONS"]),
        Route("/banner.js", banner_js, methods=["GET"]),
    ]
