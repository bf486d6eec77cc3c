"""Webhook subscriptions: `POST /api/v2/webhooks` and `DELETE /api/v2/webhooks/{id}`.

The status engine (status/webhooks.py) sends the notifications; this module decides what gets
stored. A subscription request goes through, in order:

1. the client's attempt count (`SubscribeLimits`: per address and per network an hour; 429);
2. the URL's syntax (`webhook_url.parse`; 400) and its components (400);
3. a verification slot (bounded in all and per network; 503 when none is free);
4. the URL's host, resolved once: every address must be public unless the operator allows
   private ones (400), then the challenge to exactly that address (`webhook_verify`; 400 when
   the URL does not echo it);
5. the store, with a gate slot taken only now (503 when the node is overloaded): 201 with a new
   subscription, 200 with the existing one if the URL was subscribed already (the caller has
   just proved it controls the URL, so it may know the id that unsubscribes it), 429 when the
   client's network has its share of subscriptions, 503 when the page has all it takes.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mailfort.errors import StoreError
from mailfort.status.components import Component
from mailfort.status.repository import Webhook
from mailfort.status.web.context import WebContext
from mailfort.status.web.guard import Slot
from mailfort.status.web.text import iso
from mailfort.status.webhook_url import BadUrl, Refused, parse
from mailfort.status.webhook_verify import NotVerified, verify
from mailfort.store.records import WebhookOutcome

log = logging.getLogger("mailfort.status.web")

MAX_BODY = 4096
NO_STORE = {"Cache-Control": "no-store"}
FULL_RETRY = 3600  # seconds to come back after when every subscription is taken


class Invalid(ValueError):
    """The subscription request is unusable; the message is shown to the client."""


def check_components(value: object) -> tuple[Component, ...]:
    if value is None or value == "" or value == []:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > len(Component):
        raise Invalid("components: expected a list of component ids")
    found = []
    for item in items:
        try:
            found.append(Component(str(item).strip()))
        except ValueError:
            known = ", ".join(c.value for c in Component)
            raise Invalid(f"components: unknown {item!r} (known: {known})") from None
    return tuple(dict.fromkeys(found))


def parse_body(content_type: str, data: bytes) -> dict[str, Any]:
    """JSON `{url, components?}` or a form `url=…&components=a,b` (or repeated)."""
    if len(data) > MAX_BODY:
        raise Invalid(f"body larger than {MAX_BODY} bytes")
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise Invalid("body: not valid JSON") from None
        if not isinstance(document, dict):
            raise Invalid("body: expected a JSON object")
        return document
    try:
        fields = urllib.parse.parse_qs(data.decode("utf-8"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise Invalid("body: not a valid form") from None
    urls = fields.get("url") or []
    result: dict[str, Any] = {"url": urls[0] if urls else None}
    components = [p for value in fields.get("components", []) for p in value.split(",") if p]
    result["components"] = components
    return result


def _error(status: int, text: str, retry: int | None = None) -> Response:
    headers = dict(NO_STORE)
    if retry is not None:
        headers["Retry-After"] = str(retry)
    return JSONResponse({"error": text}, status, headers=headers)


def _described(hook: Webhook) -> dict[str, Any]:
    return {
        "id": hook.id,
        "url": hook.url,
        "components": [c.value for c in hook.components],
        "created_at": iso(hook.created_at),
    }


def routes(ctx: WebContext) -> list[Route]:
    limits = ctx.subscribe_limits
    status = ctx.config.status

    async def subscribe(request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        network = ctx.networks.of(client)
        wait = limits.attempt(client, network)
        if wait:
            ctx.metrics.refused("http", "throttled")
            return _error(429, "too many subscription attempts; try again later", wait)
        try:
            document = parse_body(request.headers.get("content-type", ""), await request.body())
            target = parse(document.get("url"))
            components = check_components(document.get("components"))
        except (Invalid, BadUrl) as exc:
            return _error(413 if "larger" in str(exc) else 400, str(exc))
        if not limits.start_verifying(network):
            return _error(503, "too many subscriptions are being verified; try again later", 5)
        try:
            await verify(ctx.webhook_client, target, topic=f"{ctx.id_base}api/v2/summary.json")
        except Refused:
            return _error(400, "url: must be a public address reachable from the internet")
        except NotVerified as exc:
            log.info("event=webhook_not_verified client=%s reason=%s", client, exc)
            return _error(400, str(exc))
        finally:
            limits.done_verifying(network)
        return await _store(target.url, components, network, ctx.base_url(request))

    async def _store(
        url: str, components: tuple[Component, ...], network: str, base: str
    ) -> Response:
        # The slot is taken only now, for the store write: waiting for the subscriber above
        # was not the node's work and must not count in its latency.
        slot = Slot.take(ctx.gate(), network)
        if slot is None:
            return _error(503, "busy, try again later", ctx.config.overload.retry_after)
        ok = False
        try:
            added = await ctx.repository.subscribe(
                url,
                components,
                network=network,
                max_total=status.webhook_max_subscriptions,
                max_per_network=status.webhook_max_per_network,
            )
            ok = True
        except StoreError as exc:
            log.warning("event=webhook_subscribe_failed error=%s", exc)
            return _error(503, "try again later", 5)
        finally:
            slot.done(ok=ok)
        if added.outcome is WebhookOutcome.NETWORK_FULL:
            return _error(429, "your network has as many subscriptions as it may have")
        if added.outcome is WebhookOutcome.FULL or added.hook is None:
            return _error(503, "the page has as many subscriptions as it takes", FULL_RETRY)
        hook = added.hook
        created = added.outcome is WebhookOutcome.CREATED
        if created:
            log.info("event=webhook_subscribed id=%s network=%s", hook.id, network)
        location = f"{base}api/v2/webhooks/{urllib.parse.quote(hook.id)}"
        return JSONResponse(
            _described(hook), 201 if created else 200, headers={**NO_STORE, "Location": location}
        )

    async def unsubscribe(request: Request) -> Response:
        webhook_id = request.path_params["webhook_id"]
        if len(webhook_id) > 128:
            return Response(status_code=404, headers=NO_STORE)
        try:
            removed = await ctx.repository.remove_webhook(webhook_id)
        except StoreError as exc:
            log.warning("event=webhook_unsubscribe_failed error=%s", exc)
            return Response(status_code=503, headers={**NO_STORE, "Retry-After": "5"})
        return Response(status_code=204 if removed else 404, headers=NO_STORE)

    return [
        Route("/api/v2/webhooks", subscribe, methods=["POST"]),
        Route("/api/v2/webhooks/{webhook_id}", unsubscribe, methods=["DELETE"]),
    ]
