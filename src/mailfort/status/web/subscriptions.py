"""Webhook subscriptions: `POST /api/v2/webhooks` and `DELETE /api/v2/webhooks/{id}`.

The status engine (status/webhooks.py) sends the notifications; this module only validates and
stores subscriptions. A subscriber's URL is fetched by our nodes later, so it is checked here:
http(s) only, no credentials, bounded length, and no literal loopback/private/link-local address
unless the subscription itself comes from loopback (the operator, or a test). Names that resolve
to such addresses must be refused by the sender at send time (resolution can change).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mailfort.errors import StoreError
from mailfort.status.components import Component
from mailfort.status.web.context import WebContext
from mailfort.status.web.text import iso

log = logging.getLogger("mailfort.status.web")

MAX_BODY = 4096
MAX_URL = 2048
NO_STORE = {"Cache-Control": "no-store"}


class Invalid(ValueError):
    """The subscription request is unusable; the message is shown to the client."""


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: object, *, local: bool) -> str:
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise Invalid(f"url: expected an http or https URL of at most {MAX_URL} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise Invalid("url: must not contain spaces or control characters")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("url: expected an http or https URL with a host")
    if parts.username is not None or parts.password is not None:
        raise Invalid("url: must not contain credentials")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise Invalid("url: bad port") from None
    if not local:
        host = parts.hostname
        if host == "localhost" or host.endswith(".localhost"):
            raise Invalid("url: must be reachable from the internet")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None and not address.is_global:
            raise Invalid("url: must be reachable from the internet")
    return url


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


async def read_body(request: Request) -> bytes:
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            raise Invalid(f"body larger than {MAX_BODY} bytes")
    return data


def parse(content_type: str, data: bytes) -> dict[str, Any]:
    """JSON `{url, components?}` or a form `url=…&components=a,b` (or repeated)."""
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError):
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


def routes(ctx: WebContext) -> list[Route]:
    async def subscribe(request: Request) -> Response:
        try:
            document = parse(request.headers.get("content-type", ""), await read_body(request))
            url = check_url(document.get("url"), local=is_loopback(_peer(request)))
            components = check_components(document.get("components"))
        except Invalid as exc:
            status = 413 if "larger" in str(exc) else 400
            return JSONResponse({"error": str(exc)}, status, headers=NO_STORE)
        try:
            hook = await ctx.repository.add_webhook(url, components)
        except StoreError as exc:
            log.warning("event=webhook_subscribe_failed error=%s", exc)
            return JSONResponse(
                {"error": "try again later"}, 503, headers={**NO_STORE, "Retry-After": "5"}
            )
        log.info("event=webhook_subscribed id=%s", hook.id)
        body = {
            "id": hook.id,
            "url": hook.url,
            "components": [c.value for c in hook.components],
            "created_at": iso(hook.created_at),
        }
        location = f"{ctx.base_url(request)}api/v2/webhooks/{urllib.parse.quote(hook.id)}"
        return JSONResponse(body, 201, headers={**NO_STORE, "Location": location})

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


def _peer(request: Request) -> str | None:
    return request.client.host if request.client else None
