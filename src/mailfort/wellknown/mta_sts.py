"""Our own MTA-STS policy (RFC 8461 3.2) at `mta-sts.<local domain>/.well-known/mta-sts.txt`.

The policy comes from `[mta_sts]`: its mode, the MX patterns (default: the MX hosts the domains
publish, `[dns] mx_hosts`, else the node's `hostname`) and max_age. Senders fetch it over HTTPS
with a certificate valid for `mta-sts.<domain>` (the ACME certificate can name it); the http
listener speaks plain HTTP, so a TLS proxy must sit in front on port 443.

The `_mta-sts` TXT record's id must change whenever the policy does (RFC 8461 3.1), or senders
keep the old one until it expires: `policy_id` derives it from a hash of the policy text, so
`mailfort dns records` prints an id that changes exactly when the policy does.

Any other Host (or a domain that is not ours) gets 404: the policy of a domain we do not serve
must never appear to be ours.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from mailfort.config import Config

PATH = "/.well-known/mta-sts.txt"
PREFIX = "mta-sts."


def policy_text(config: Config) -> str:
    """The policy file (RFC 8461 3.2), CRLF line endings."""
    settings = config.mta_sts
    mx = settings.mx or config.dns.mx_hosts or (config.hostname,)
    lines = ["version: STSv1", f"mode: {settings.mode}"]
    lines += [f"mx: {pattern.rstrip('.')}" for pattern in mx]
    lines.append(f"max_age: {settings.max_age}")
    return "\r\n".join(lines) + "\r\n"


def policy_id(config: Config) -> str:
    """The `id=` of the `_mta-sts` TXT record: 1 to 32 letters and digits (RFC 8461 3.1) that
    change when the policy text does (`mailfort dns records` prints it)."""
    digest = hashlib.sha256(policy_text(config).encode()).digest()
    return base64.b32encode(digest).decode().rstrip("=")[:32]


def txt_record(config: Config) -> str:
    """The value of `_mta-sts.<domain>` TXT."""
    return f"v=STSv1; id={policy_id(config)}"


def routes(config: Config, is_local_domain: Callable[[str], Awaitable[bool]]) -> list[BaseRoute]:
    text = policy_text(config)

    async def policy(request: Request) -> Response:
        host = request.headers.get("host", "").lower()
        if host.startswith("["):  # an address literal is never a policy host
            return PlainTextResponse("not found\n", status_code=404)
        name = host.rsplit(":", 1)[0].rstrip(".")
        domain = name[len(PREFIX) :] if name.startswith(PREFIX) else ""
        if not domain or not await is_local_domain(domain):
            return PlainTextResponse("not found\n", status_code=404)
        return PlainTextResponse(text, headers={"Cache-Control": "max-age=3600"})

    return [Route(PATH, policy, methods=["GET"])]
