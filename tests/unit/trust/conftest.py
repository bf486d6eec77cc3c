"""A real store, a real name server, and keys for the trust tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mailfort.store.records import DkimKey, DkimState
from mailfort.store.sqlite import SqliteStore
from mailfort.trust.dkim_keys import generate_set
from tests.dnsserver import NameServer, Zone


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "store.sqlite3")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def zone() -> Zone:
    return Zone()


@pytest.fixture
def nameserver(zone: Zone) -> Iterator[NameServer]:
    server = NameServer(zone).start()
    yield server
    server.stop()


# RSA key generation costs ~50 ms: one set per domain for the whole module run.
_KEYS: dict[str, list[DkimKey]] = {}


def active_keys(domain: str) -> list[DkimKey]:
    if domain not in _KEYS:
        _KEYS[domain] = generate_set(
            domain, ["rsa-sha256", "ed25519-sha256"], DkimState.ACTIVE, prefix="t", taken=()
        )
    return _KEYS[domain]
