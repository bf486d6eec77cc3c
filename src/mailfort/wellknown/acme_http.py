"""ACME HTTP-01 answers (RFC 8555 8.3) at `/.well-known/acme-challenge/<token>`.

The answers are in the store (`Certificates`), put there by whichever node is ordering, so any
node the CA's validation reaches answers it. A token is base64url (RFC 8555 8.3: at least 128 bits
of entropy); anything else, or a token too long to be one a CA sends, is answered 404 without a
store lookup, and a known one is one primary-key read.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from mailfort.errors import StoreError
from mailfort.store.roles import Certificates

PATH = "/.well-known/acme-challenge/"
MIN_TOKEN = 22  # 128 bits in base64url
MAX_TOKEN = 128  # CAs send 43 (256 bits); room to spare, bounded
_BASE64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def plausible_token(token: str) -> bool:
    return MIN_TOKEN <= len(token) <= MAX_TOKEN and set(token) <= _BASE64URL


def routes(store: Certificates, clock: Callable[[], float]) -> list[BaseRoute]:
    async def answer(request: Request) -> Response:
        token = request.path_params["token"]
        if not plausible_token(token):
            return _not_found()
        try:
            found = await store.acme_challenge(token, clock())
        except StoreError:
            # The CA retries a failed validation only within its order; say "not now", not "no".
            return PlainTextResponse("try again later\n", 503, headers={"Retry-After": "5"})
        if found is None:
            return _not_found()
        # RFC 8555 8.3: the body is the key authorization, nothing else.
        return Response(found.encode("ascii"), media_type="application/octet-stream")

    return [Route(PATH + "{token}", answer, methods=["GET"])]


def _not_found() -> Response:
    return PlainTextResponse("no such challenge\n", 404)
