"""The one shape of a client-setup answer: find what the request is about among our domains,
then the document for it; 404 for anything not ours, 503 while the domains cannot be read."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from starlette.responses import Response

from mailfort.errors import StoreError
from mailfort.wellknown.client_settings import ClientDirectory, ClientSettings

log = logging.getLogger("mailfort.wellknown")


async def client_answer(
    clients: ClientDirectory,
    find: Callable[[], Awaitable[str | None]],
    build: Callable[[ClientSettings, str], bytes],
    *,
    what: str,
    media_type: str,
    headers: Mapping[str, str],
) -> Response:
    """`find`: the domain or address asked about, if it is ours; `build`: its document."""
    try:
        found = await find()
    except StoreError as exc:
        log.warning("event=%s_unavailable error=%s", what, exc)
        return Response(status_code=503, headers={"Retry-After": "5"})
    if found is None:
        return Response("no such domain here\n", 404, media_type="text/plain")
    return Response(build(clients.settings(), found), media_type=media_type, headers=headers)
