"""What the web app needs from its node, passed in (never a module global)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from starlette.requests import Request

from mailfort.auth.login import Logins
from mailfort.config import Config
from mailfort.metrics import NodeMetrics
from mailfort.status.i18n import SUPPORTED, negotiate
from mailfort.status.repository import StatusRepository
from mailfort.status.web.snapshot import SnapshotCache
from mailfort.store.api import Store

if TYPE_CHECKING:
    from mailfort.node import Node


class Gate(Protocol):
    """The node's overload gate (server/overload): admit a request or say "not now"."""

    @property
    def retry_after(self) -> int: ...

    # The token is the gate's own type; the web only hands it back.
    def try_acquire(self, protocol: str) -> Any: ...

    # The CPU is saturated: even pages served from memory should wait.
    def saturated(self) -> bool: ...

    # Count a request refused without `try_acquire` (metrics.refused, in bulk).
    def shed(self, protocol: str) -> None: ...

    # ok=False: the work failed for lack of resources (a 5xx), which backs the limit off.
    def release(self, token: Any, ok: bool = True) -> None: ...


@dataclass(slots=True)
class WebContext:
    config: Config
    store: Store
    repository: StatusRepository
    metrics: NodeMetrics
    auth: Logins
    snapshots: SnapshotCache
    # Looked up per request, so a node can swap or drop its gate while running.
    gate: Callable[[], Gate | None] = lambda: None
    clock: Callable[[], float] = time.time
    espeak: str = "espeak-ng"
    recent_days: int = 14

    @classmethod
    def from_node(cls, node: Node) -> WebContext:
        repository = StatusRepository(node.store)
        status = node.config.status
        snapshots = SnapshotCache(
            lambda now: repository.page(now, days=status.history_days, recent_days=14),
            refresh=status.page_refresh_seconds,
        )
        return cls(
            config=node.config,
            store=node.store,
            repository=repository,
            metrics=node.metrics,
            auth=node.logins,
            snapshots=snapshots,
            gate=lambda: node.gate,
        )

    @property
    def provider(self) -> str:
        return self.config.status.provider_name

    def base_url(self, request: Request) -> str:
        """Absolute URL of the page, ending in "/": `[status] public_url`, else the request's
        own (a CDN in front keeps the Host header, so links stay on the public name)."""
        configured = self.config.status.public_url
        if configured:
            return configured if configured.endswith("/") else configured + "/"
        return str(request.base_url)


def language(request: Request) -> str:
    """`?lang=de` (a link on the page) wins over `Accept-Language`; unknown values are ignored."""
    chosen = request.query_params.get("lang", "")
    if chosen in SUPPORTED:
        return chosen
    return negotiate(request.headers.get("accept-language"))
