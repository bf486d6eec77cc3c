"""Per-customer status: `/account` (HTML) and `/api/account.json`, behind HTTP Basic with the
customer's mail address and password (issue 6, item 10).

Login follows the IMAP rules (server/imap/session.py): throttled per client address and per
account, verified by the node's bounded `Verifier` (Busy → 503), every attempt recorded in
`metrics.login("http", …)`. Answers are `Cache-Control: private, no-store`.

Plaintext: the listener speaks plain HTTP and expects a TLS proxy in front, which sets
`X-Forwarded-Proto: https` (trusted from loopback only; uvicorn's proxy headers). Credentials are
accepted when the request came over HTTPS that way, or, with `[auth] allow_plaintext_loopback`,
from a loopback client — the same rule as IMAP and POP3 logins.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import json
import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailfort.errors import Busy, StoreError
from mailfort.mail.address import AddressError, normalize
from mailfort.status.repository import AccountStatus
from mailfort.status.web import model
from mailfort.status.web.caching import HTML_HEADERS, NO_STORE
from mailfort.status.web.context import WebContext, language
from mailfort.status.web.guard import Slot
from mailfort.status.web.text import Texts, iso

log = logging.getLogger("mailfort.status.web")

REALM = 'Basic realm="mailfort account status", charset="UTF-8"'
MAX_CREDENTIALS = 1024


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Refused(Exception):
    """The answer instead of the account; `delay`: seconds to wait before giving it (a wrong
    password's penalty), spent after the request's gate slot is given back."""

    def __init__(
        self, status: int, key: str, headers: dict[str, str] | None = None, delay: float = 0.0
    ) -> None:
        super().__init__(key)
        self.status = status
        self.key = key
        self.headers = headers or {}
        self.delay = delay


def credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token or len(token) > MAX_CREDENTIALS:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def plaintext_ok(ctx: WebContext, request: Request) -> bool:
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else None
    return ctx.config.auth.allow_plaintext_loopback and is_loopback(peer)


async def authenticate(ctx: WebContext, request: Request) -> str:
    """The customer's normalized address, or Refused with the HTTP answer."""
    if not plaintext_ok(ctx, request):
        raise Refused(403, "web.account.plaintext")
    given = credentials(request)
    if given is None:
        raise Refused(401, "web.account.unauthorized", {"WWW-Authenticate": REALM})
    user, password = given
    try:
        address = normalize(user)
    except AddressError:
        address = user[:200]
    ip = request.client.host if request.client else "?"
    if ctx.ip_throttle.blocked(ip) or ctx.account_throttle.blocked(address):
        log.warning("event=http_login_refused reason=throttled client=%s user=%r", ip, address)
        raise Refused(429, "web.account.throttled", {"Retry-After": "60"})
    started = time.monotonic()
    try:
        account = await ctx.store.get_account(address)
        ok = await ctx.verifier.verify(account.password_hash if account else None, password)
    except Busy:
        raise Refused(503, "web.account.busy", {"Retry-After": "5"}) from None
    except StoreError as exc:
        log.warning("event=http_login_unavailable error=%s", exc)
        raise Refused(503, "web.account.unavailable", {"Retry-After": "5"}) from None
    ok = ok and account is not None
    ctx.metrics.login("http", ok, time.monotonic() - started)
    if not ok:
        delay = max(ctx.ip_throttle.failed(ip), ctx.account_throttle.failed(address))
        log.warning("event=http_login_failed client=%s user=%r", ip, address)
        raise Refused(401, "web.account.unauthorized", {"WWW-Authenticate": REALM}, delay)
    assert account is not None
    return account.address


def _plain(text: str, status: int, headers: dict[str, str]) -> Response:
    return Response(
        text + "\n",
        status,
        headers={"Cache-Control": NO_STORE, **headers},
        media_type="text/plain; charset=utf-8",
    )


def _retry(ctx: WebContext) -> str:
    return str(max(1, ctx.config.overload.retry_after))


def document(status: AccountStatus, now: float, base: str) -> dict[str, Any]:
    oldest = status.oldest_queued_at
    return {
        "address": status.address,
        "queued_from": status.queued_from,
        "queued_for": status.queued_for,
        "oldest_queued_at": iso(oldest),
        "oldest_queued_age_seconds": None if oldest is None else max(0.0, round(now - oldest, 1)),
        "last_inbox_delivery": iso(status.last_inbox_delivery),
        "delayed": status.delayed,
        "incidents": [
            {
                "id": i.id,
                "name": i.title,
                "status": i.status.value,
                "impact": i.impact.value,
                "components": [c.value for c in model.ordered(i.components)],
                "shortlink": f"{base}incidents/{i.id}",
                "updated_at": iso(i.updated_at),
            }
            for i in status.incidents
        ],
    }


def routes(ctx: WebContext) -> list[Route]:
    async def lookup(request: Request) -> tuple[Texts, AccountStatus | Response]:
        t = Texts(language(request), ctx.provider)
        # The slot covers the store and password work only (a self-gated route, see guard.py):
        # a wrong password's delay is spent after it is given back, so it neither holds a slot
        # nor counts as the node's latency.
        slot = Slot.take(ctx.gate(), ctx.client_network(request))
        if slot is None:
            return t, _plain(t("web.account.busy"), 503, {"Retry-After": _retry(ctx)})
        ok = True
        try:
            address = await authenticate(ctx, request)
            found = await ctx.repository.account_status(address, ctx.clock())
        except Refused as exc:
            slot.done(ok=True)
            if exc.delay:
                await asyncio.sleep(exc.delay)
            return t, _plain(t(exc.key), exc.status, exc.headers)
        except StoreError as exc:
            ok = False
            log.warning("event=account_status_unavailable error=%s", exc)
            return t, _plain(t("web.account.unavailable"), 503, {"Retry-After": "5"})
        finally:
            slot.done(ok=ok)
        if found is None:  # the account vanished between login and lookup
            return t, Response(status_code=404, headers={"Cache-Control": NO_STORE})
        return t, found

    async def account_json(request: Request) -> Response:
        _, found = await lookup(request)
        if isinstance(found, Response):
            return found
        body = json.dumps(document(found, ctx.clock(), ctx.base_url(request)), ensure_ascii=False)
        return Response(body, headers={"Cache-Control": NO_STORE}, media_type="application/json")

    async def account_page(request: Request) -> Response:
        t, found = await lookup(request)
        if isinstance(found, Response):
            return found
        now = ctx.clock()
        oldest = found.oldest_queued_at
        view = ctx.snapshots.current
        context = model.base_context(t, view, ctx.base_url(request))
        context["account"] = {
            "address": found.address,
            "delayed": found.delayed,
            "queued_from": found.queued_from,
            "queued_for": found.queued_for,
            "oldest": t("web.account.none_waiting") if oldest is None else t.duration(now - oldest),
            "last_delivery": t.datetime(found.last_inbox_delivery)
            if found.last_inbox_delivery
            else t("web.account.never"),
            "incidents": [model.incident(t, i) for i in found.incidents],
        }
        html = model.render("account.html", **context)
        headers = {
            **HTML_HEADERS,
            "Cache-Control": NO_STORE,
            "Content-Language": t.lang,
            # A customer's own data: never inside another site's frame.
            "X-Frame-Options": "DENY",
        }
        return Response(html, headers=headers, media_type="text/html; charset=utf-8")

    return [
        Route("/account", account_page, methods=["GET"]),
        Route("/api/account.json", account_json, methods=["GET"]),
    ]
