from __future__ import annotations

import shutil
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


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A real node on loopback with users alice, bob (example.test) and carol (other.test)."""
    root: Path = tmp_path_factory.mktemp("node")
    proc = NodeProcess(root)
    proc.provision(domains=("example.test", "other.test"), users=USERS, aliases=ALIASES)
    proc.start()
    yield proc
    proc.stop()
