from __future__ import annotations

import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nodeproc import NodeProcess

PASSWORD = "correct horse battery staple"
USERS = {
    "alice@example.test": PASSWORD,
    "bob@example.test": PASSWORD,
    "carol@other.test": PASSWORD,
}
ALIASES = (
    ("postmaster@example.test", "alice@example.test"),
    ("team@example.test", "alice@example.test"),
    ("team@example.test", "bob@example.test"),
    ("forward@example.test", "someone@remote.test"),
    ("@other.test", "carol@other.test"),
)


def require_command(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; `make test` installs it (Debian package)")
    return path


def client_tls() -> ssl.SSLContext:
    """A client context that accepts the node's self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def start_node(
    tmp_path_factory: pytest.TempPathFactory,
    *,
    extra_config: str = "",
    users: dict[str, str] | None = None,
) -> NodeProcess:
    """A started node with the standard domains, USERS (plus `users`) and ALIASES."""
    root: Path = tmp_path_factory.mktemp("node")
    proc = NodeProcess(root, extra_config=extra_config)
    proc.provision(
        domains=("example.test", "other.test"), users={**USERS, **(users or {})}, aliases=ALIASES
    )
    return proc.start()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A real node on loopback with users alice, bob (example.test) and carol (other.test)."""
    proc = start_node(tmp_path_factory)
    yield proc
    proc.stop()
