"""What the web app needs from its node, passed in (never a module global).

The node hands the web a `NodeParts` (its settings, store, metrics, logins, client networks and a
way to find its overload gate), never itself: the web cannot reach the node's listeners, workers
or cluster membership, and `status/web/` does not import `node.py`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request

from mailfort.auth.login import Logins
from mailfort.config import Config
from mailfort.metrics import NodeMetrics
from mailfort.network import Networks
from mailfort.status.i18n import SUPPORTED, negotiate
from mailfort.status.repository import StatusRepository
from mailfort.status.web.snapshot import SnapshotCache
from mailfort.status.web.subscribe_limits import SubscribeLimits
from mailfort.status.webhook_client import WebhookClient
from mailfort.store.roles import StatusStore
from mailfort.wellknown.client_settings import ClientDirectory

log = logging.getLogger("mailfort.status.web")


class Gate(Protocol):
    """The node's overload gate (server/overload): admit a request or say "not now"."""

    @property
    def retry_after(self) -> int: ...

    # The token is the gate's own type; the web only hands it back. `client` is the client's
    # network, which holds at most its share of the slots.
    def try_acquire(self, protocol: str, client: str | None = None) -> Any: ...

    # The client network holds its share of the slots already (a refusal of its own doing).
    def client_full(self, client: str | None) -> bool: ...

    # The CPU is saturated: even pages served from memory should wait.
    def saturated(self) -> bool: ...

    # Count a request refused without `try_acquire` (metrics.refused, in bulk).
    def shed(self, protocol: str) -> None: ...

    # ok=False: the work failed for lack of resources (a 5xx), which backs the limit off.
    def release(self, token: Any, ok: bool = True) -> None: ...

    # Give the slot back without a sample (the client left: its timing says nothing).
    def forget(self, token: Any) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeParts:
    """What the status web takes from its node, and nothing else of it."""

    config: Config
    store: StatusStore
    metrics: NodeMetrics
    logins: Logins
    networks: Networks
    # Looked up per request, so a node can swap or drop its gate while running.
    gate: Callable[[], Gate | None]
    # Where the customer's mail client connects: `/account` offers it as a profile.
    clients: ClientDirectory | None = None


@dataclass(slots=True)
class WebContext:
    config: Config
    store: StatusStore
    repository: StatusRepository
    metrics: NodeMetrics
    auth: Logins
    snapshots: SnapshotCache
    # Looked up per request, so a node can swap or drop its gate while running.
    gate: Callable[[], Gate | None] = lambda: None
    clock: Callable[[], float] = time.time
    espeak: str = "espeak-ng"
    recent_days: int = 14
    # Client address -> the network its per-client bounds count in.
    networks: Networks = field(default_factory=Networks)
    # Verification requests to webhook subscribers (its resolver is the test seam).
    webhook_client: WebhookClient = field(default_factory=WebhookClient)
    subscribe_limits: SubscribeLimits = field(default_factory=SubscribeLimits)
    clients: ClientDirectory | None = None

    @classmethod
    def from_node(cls, parts: NodeParts) -> WebContext:
        config = parts.config
        repository = StatusRepository(parts.store)
        status = config.status
        snapshots = SnapshotCache(
            lambda now: repository.page(now, days=status.history_days, recent_days=14),
            refresh=status.page_refresh_seconds,
        )
        if not status.public_url:
            log.warning(
                "event=status_public_url_unset detail=%s",
                "links on the status pages are relative and notices point at the listener;"
                " set [status] public_url to the page's public address",
            )
        return cls(
            config=parts.config,
            store=parts.store,
            repository=repository,
            metrics=parts.metrics,
            auth=parts.logins,
            snapshots=snapshots,
            gate=parts.gate,
            networks=parts.networks,
            clients=parts.clients,
            webhook_client=WebhookClient(
                timeout=status.webhook_timeout, allow_private=status.webhook_allow_private
            ),
            subscribe_limits=SubscribeLimits(
                per_ip=status.webhook_subscribe_per_ip,
                per_network=status.webhook_subscribe_per_network,
                network_share=config.limits.max_network_share,
            ),
        )

    @property
    def provider(self) -> str:
        return self.config.status.provider_name

    def base_url(self, request: Request) -> str:
        """What links on a page start with, ending in "/": `[status] public_url`, else "/"
        (links relative to the server the reader asked). Never the request's `Host` header:
        pages are cached publicly (`Cache-Control: public`), so a link built from one
        visitor's Host would be served by a CDN to everyone (web cache poisoning)."""
        return public_base(self.config) or "/"

    def client_network(self, request: Request) -> str | None:
        """The network of the request's client (behind the TLS proxy: the visitor's, which
        uvicorn takes from X-Forwarded-For), whose share of the overload gate it counts in."""
        return self.networks.of(request.client.host) if request.client else None

    @property
    def id_base(self) -> str:
        """An absolute URL for identifiers that must be absolute (Atom ids, the WebSub topic):
        `[status] public_url`, else this node's configured http listener."""
        return public_base(self.config) or f"http://{self.config.listen.http}/"


def public_base(config: Config) -> str:
    """`[status] public_url` ending in "/", or "" when it is not set."""
    configured = config.status.public_url
    if not configured:
        return ""
    return configured if configured.endswith("/") else configured + "/"


def language(request: Request) -> str:
    """`?lang=de` (a link on the page) wins over `Accept-Language`; unknown values are ignored."""
    chosen = request.query_params.get("lang", "")
    if chosen in SUPPORTED:
        return chosen
    return negotiate(request.headers.get("accept-language"))
