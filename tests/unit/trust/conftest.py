"""A real store, a real name server, and keys for the trust tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailfort.store.records import DkimKey, DkimState
from mailfort.trust.dkim_keys import generate_set
from tests.dnsserver import NameServer, Zone


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
