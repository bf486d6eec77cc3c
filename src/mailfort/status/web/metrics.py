"""`/metrics`: the node's Prometheus registry in the text exposition format.

Not cached and not behind the overload gate: a scraper must see the node most when it is busy."""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailfort.status.web.context import WebContext


def routes(ctx: WebContext) -> list[Route]:
    registry = ctx.metrics.registry

    async def metrics(request: Request) -> Response:
        # Collecting walks every label set; off the loop so a big registry never stalls it.
        data = await asyncio.to_thread(generate_latest, registry)
        return Response(data, headers={"Cache-Control": "no-store"}, media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", metrics, methods=["GET"])]
