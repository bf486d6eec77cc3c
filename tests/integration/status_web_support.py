"""A real node with its `http` listener on loopback, and status records seeded through the real
StatusRepository on the node's own store (SQLite file, shared with the running node)."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from mailfort.status.repository import StatusRepository
from mailfort.store.sqlite import SqliteStore
from tests.cluster_support import run_async
from tests.nodeproc import NodeProcess

T = TypeVar("T")

_HTTP = re.compile(r"^\s+http\s+([\d.]+):(\d+)\s", re.M)

WEB_CONFIG = """
[status]
page_refresh_seconds = 0.5
provider_name = "Example Mail"
webhook_allow_private = true  # the tests' subscribers listen on loopback
webhook_subscribe_per_ip = 100  # one test client makes many attempts
webhook_subscribe_per_network = 100

[auth]
allow_plaintext_loopback = true
"""


def start_web_node(root: Path, users: dict[str, str]) -> tuple[NodeProcess, str]:
    """Start a node serving http on a free loopback port; returns it and its base URL."""
    node = NodeProcess(root, extra_config=WEB_CONFIG)
    node.provision(users=users)
    # NodeProcess turns the http listener off; this node needs it (port 0: any free port).
    text = node.config_path.read_text()
    assert 'http = ""' in text
    node.config_path.write_text(text.replace('http = ""', 'http = "127.0.0.1:0"', 1))
    node.start()
    out = (node.root / f"{node.name}.out").read_text()
    found = _HTTP.search(out)
    assert found, f"no http listener in the node's banner:\n{out}"
    return node, f"http://{found[1]}:{found[2]}/"


def with_repository(node: NodeProcess, fn: Callable[[StatusRepository], Awaitable[T]]) -> T:
    async def run() -> T:
        store = SqliteStore(node.db_path)
        await store.open()
        try:
            return await fn(StatusRepository(store))
        finally:
            await store.close()

    return run_async(run)  # from plain tests and from inside a running loop alike


def wait_for(
    fetch: Callable[[], httpx.Response],
    ok: Callable[[httpx.Response], bool],
    timeout: float = 15.0,
    what: str = "condition",
) -> httpx.Response:
    """Poll until `ok`; the page refreshes its snapshot every page_refresh_seconds."""
    deadline = time.monotonic() + timeout
    while True:
        response = fetch()
        if ok(response):
            return response
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {timeout} s; last: {response.text[:600]}")
        time.sleep(0.2)


def json_of(response: httpx.Response) -> Any:
    assert response.headers["content-type"].startswith("application/json"), response.headers
    return response.json()
