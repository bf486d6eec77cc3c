"""HTTP caching for a rush through a CDN: Cache-Control, strong ETags, 304 on If-None-Match.

Public responses may be kept by shared caches for a short `max-age` and served stale while the
cache revalidates or while this node errs (RFC 5861), so millions of visitors reach the node as
a trickle of conditional requests that cost a hash compare.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

PAGE_MAX_AGE = 15  # seconds shared caches may serve a page without asking
UNSURE_MAX_AGE = 5  # pages from stale or missing data: ask again soon
STALE_WHILE_REVALIDATE = 30
STALE_IF_ERROR = 86400  # a day: when every node is down, the CDN still shows the last page
NO_STORE = "private, no-store"
# The pages run no script at all; forbidding it means an operator text that slipped past
# escaping still could not run in a visitor's browser.
HTML_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self';"
    " base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True, slots=True)
class Body:
    """A rendered representation and its strong validator (the hash of its bytes)."""

    content: bytes
    media_type: str
    etag: str

    @classmethod
    def of(cls, content: bytes | str, media_type: str) -> Body:
        data = content.encode("utf-8") if isinstance(content, str) else content
        return cls(data, media_type, '"' + hashlib.sha256(data).hexdigest()[:40] + '"')


def public_cache_control(max_age: int = PAGE_MAX_AGE) -> str:
    return (
        f"public, max-age={max_age}, stale-while-revalidate={STALE_WHILE_REVALIDATE},"
        f" stale-if-error={STALE_IF_ERROR}"
    )


def matches(request: Request, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 §13.1.2): a W/ prefix is ignored."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in header.split(","))


def cached(
    request: Request,
    body: Body,
    *,
    max_age: int = PAGE_MAX_AGE,
    vary: str | None = "Accept-Language",
    lang: str | None = None,
    headers: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    """The response for `body`: 304 without a body when the client's copy is current."""
    common = {"Cache-Control": public_cache_control(max_age), "ETag": body.etag}
    if vary:
        common["Vary"] = vary
    if lang:
        common["Content-Language"] = lang
    common.update(headers or {})
    if status_code == 200 and matches(request, body.etag):
        return Response(status_code=304, headers=common)
    return Response(body.content, status_code, headers=common, media_type=body.media_type)
