"""Proof that a URL wants our notifications, asked before it gets any (W3C WebSub §5.3, intent
verification).

Without it, anyone could subscribe any URL that accepts POSTs, and the node would send it
requests on their behalf. So a subscription is stored only after the node asked the URL itself:

    GET <url>?hub.mode=subscribe&hub.topic=<status page>&hub.challenge=<random token>

(the parameters are added to the URL's own query), and the URL answered `2xx` within
`[status] webhook_timeout` with a body that is exactly the token (surrounding white space is
ignored). Anything else — another status, a redirect (never followed), a different body, no
answer — and nothing is stored. The request goes to the address that was checked, like every
delivery (`webhook_client`).
"""

from __future__ import annotations

import secrets
from typing import Final

from mailfort.status.webhook_client import WebhookClient
from mailfort.status.webhook_url import Target

CHALLENGE_BYTES: Final = 24  # random bytes in a token (32 URL-safe characters)


class NotVerified(ValueError):
    """The URL did not prove it wants notifications; the message is shown to the subscriber."""


async def verify(client: WebhookClient, target: Target, *, topic: str) -> None:
    """Ask `target` for the challenge; `NotVerified` unless it echoes it. `Refused` (from the
    client) when the host is not public."""
    challenge = secrets.token_urlsafe(CHALLENGE_BYTES)
    path = target.with_query(
        {"hub.mode": "subscribe", "hub.topic": topic, "hub.challenge": challenge}
    )
    try:
        answer = await client.request(target, "GET", path=path, max_answer=len(challenge) + 64)
    except TimeoutError:
        raise NotVerified("verification: no answer from the URL in time") from None
    except OSError:
        # No detail: what went wrong where would make this a scanner of other people's hosts.
        raise NotVerified("verification: the URL could not be reached") from None
    if not 200 <= answer.status < 300:
        raise NotVerified(
            f"verification: the URL answered {answer.status}; expected 2xx with hub.challenge"
        )
    if answer.body.strip() != challenge.encode():
        raise NotVerified("verification: the answer's body was not the hub.challenge sent")
