"""What the status web takes from its node: a `NodeParts`, never the node itself."""

from __future__ import annotations

from pathlib import Path

from mailfort.config import Config, StatusConfig
from mailfort.metrics import NodeMetrics
from mailfort.network import Networks
from mailfort.server.overload import OverloadGate
from mailfort.status.web import NodeParts, WebContext
from mailfort.store.sqlite import SqliteStore
from tests.auth_support import logins


def test_the_web_is_built_from_the_parts_its_node_hands_over(tmp_path: Path) -> None:
    config = Config(
        status=StatusConfig(
            public_url="https://status.example/",
            webhook_timeout=2.5,
            webhook_allow_private=True,
        )
    )
    store = SqliteStore(tmp_path / "mailfort.sqlite3")  # never opened: building reads nothing
    gates: list[OverloadGate | None] = [None]
    parts = NodeParts(
        config=config,
        store=store,
        metrics=NodeMetrics(),
        logins=logins(store),
        networks=Networks(v4_prefix=16),
        gate=lambda: gates[0],
    )

    context = WebContext.from_node(parts)

    assert context.config is config
    assert context.store is store and context.repository.store is store
    assert context.metrics is parts.metrics and context.auth is parts.logins
    assert context.networks.of("192.0.2.7") == "192.0.0.0/16"
    assert (context.webhook_client.timeout, context.webhook_client.allow_private) == (2.5, True)
    assert context.id_base == "https://status.example/"
    # The gate is looked up per request, so a node can swap or drop it while it serves.
    assert context.gate() is None
    gates[0] = OverloadGate(config.overload, NodeMetrics())
    assert context.gate() is gates[0]
