"""The Starlette app of the `http` listener: routes from one small module per thing served."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute

from mailfort.status.web import (
    account,
    announcement,
    api,
    banner,
    feed,
    metrics,
    pages,
    subscriptions,
)
from mailfort.status.web.context import WebContext
from mailfort.status.web.guard import Guard

REQUEST_TIMEOUT = 30.0  # seconds for one request; a WAV synthesis is the slowest
MAX_BODY = 16 * 1024  # request bodies: only webhook subscriptions have one


async def _error(request: Request, exc: Exception) -> Response:
    # Never a traceback in front of a visitor; the log has it (Starlette's ServerErrorMiddleware).
    return PlainTextResponse("internal error, try again later\n", 500, headers={"Retry-After": "5"})


def create_app(ctx: WebContext, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """`extra_routes`: what the node serves beside the status web (`wellknown/`), first, so that
    a well-known path is never shadowed by a page's route."""
    routes = [
        *extra_routes,
        *pages.routes(ctx),
        *api.routes(ctx),
        *subscriptions.routes(ctx),
        *feed.routes(ctx),
        *banner.routes(ctx),
        *announcement.routes(ctx),
        *account.routes(ctx),
        *metrics.routes(ctx),
    ]
    limits = ctx.config.limits
    middleware = [
        Middleware(
            Guard,
            gate=ctx.gate,
            timeout=REQUEST_TIMEOUT,
            max_body=MAX_BODY,
            body_timeout=limits.http_body_timeout,
            min_rate=limits.http_min_body_rate,
            networks=ctx.networks,
        ),
    ]
    app = Starlette(
        routes=routes, middleware=middleware, exception_handlers={500: _error}, debug=False
    )
    app.state.web = ctx
    return app
