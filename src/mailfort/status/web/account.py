"""Per-customer status: `/account` (HTML) and `/api/account.json`, behind HTTP Basic with the
customer's mail address and password; and their mail client profile for Apple devices,
`/account/mailfort.mobileconfig` (`wellknown/mobileconfig.py`), behind the same login.

Login is the node's `auth/login.Logins`, as on every protocol: throttled per client address,
network and account (429), verified by the node's bounded `Verifier` (Busy → 503), every attempt
recorded in `metrics.login("http", …)`. These pages take their overload-gate slots themselves
(`guard.SELF_GATED`), for the store reads only: a failed login's delay holds none. Answers are
`Cache-Control: private, no-store`.

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
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailfort.auth.login import Outcome
from mailfort.errors import StoreError
from mailfort.status.repository import AccountStatus
from mailfort.status.web import model
from mailfort.status.web.caching import HTML_HEADERS, NO_STORE
from mailfort.status.web.context import WebContext, language
from mailfort.status.web.guard import Slot
from mailfort.status.web.text import Texts, iso
from mailfort.wellknown.mobileconfig import MEDIA_TYPE as MOBILECONFIG
from mailfort.wellknown.mobileconfig import filename, profile, sign

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
    ip = request.client.host if request.client else "?"
    attempt = await ctx.auth.attempt("http", ip, user, password, ctx.gate())
    ctx.auth.record(attempt)
    if attempt.outcome is Outcome.THROTTLED:
        raise Refused(429, "web.account.throttled", {"Retry-After": "60"})
    if attempt.outcome is Outcome.UNAVAILABLE:
        busy = attempt.refused_by in ("verifier", "overload")
        key = "web.account.busy" if busy else "web.account.unavailable"
        raise Refused(503, key, {"Retry-After": "5"})
    if attempt.account is None:
        # The penalty is waited out by the caller, with no gate slot held.
        raise Refused(401, "web.account.unauthorized", {"WWW-Authenticate": REALM}, attempt.delay)
    return attempt.account.address


async def account_status(ctx: WebContext, address: str, client: str | None) -> AccountStatus | None:
    """The customer's status from the store, under a slot of the overload gate (503 when the
    node refuses it)."""
    slot = Slot.take(ctx.gate(), client)
    if slot is None:
        raise Refused(503, "web.account.busy", {"Retry-After": _retry(ctx)})
    ok = False
    try:
        found = await ctx.repository.account_status(address, ctx.clock())
        ok = True
        return found
    finally:
        slot.done(ok=ok)


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
        # No slot is held here: the login (auth/login.py) and the status read take their own,
        # around their store work only, so a wrong password's delay holds none.
        try:
            address = await authenticate(ctx, request)
            found = await account_status(ctx, address, ctx.client_network(request))
        except Refused as exc:
            if exc.delay:
                await asyncio.sleep(exc.delay)
            return t, _plain(t(exc.key), exc.status, exc.headers)
        except StoreError as exc:
            log.warning("event=account_status_unavailable error=%s", exc)
            return t, _plain(t("web.account.unavailable"), 503, {"Retry-After": "5"})
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
            # Relative: the link must lead back to the node that checked the password.
            "profile": "account/mailfort.mobileconfig" if ctx.clients is not None else "",
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

    async def account_profile(request: Request) -> Response:
        """The customer's own Apple configuration profile: only after their login, and only
        theirs (the address comes from the login, never from the request)."""
        t = Texts(language(request), ctx.provider)
        try:
            address = await authenticate(ctx, request)
        except Refused as exc:
            if exc.delay:
                await asyncio.sleep(exc.delay)
            return _plain(t(exc.key), exc.status, exc.headers)
        clients = ctx.clients
        body = None if clients is None else profile(clients.settings(), address)
        if body is None or clients is None:
            return Response(status_code=404, headers={"Cache-Control": NO_STORE})
        if clients.tls_files is not None:
            # Signing is CPU work (a signature per download) next to a password check's.
            signed = await asyncio.to_thread(sign, body, *clients.tls_files)
            body = signed or body
        headers = {
            "Cache-Control": NO_STORE,
            "Content-Disposition": f'attachment; filename="{filename(address)}"',
        }
        return Response(body, headers=headers, media_type=MOBILECONFIG)

    return [
        Route("/account", account_page, methods=["GET"]),
        Route("/account/mailfort.mobileconfig", account_profile, methods=["GET"]),
        Route("/api/account.json", account_json, methods=["GET"]),
    ]
