"""A name server on loopback and a `TrustResolver` pointed at it, for the tests of trust/.

One server per test module (stopping one takes a second); each test gets its zone emptied and a
resolver of its own, so no answer is cached from one test into the next."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailfort.trust.dns import TrustResolver
from tests.dnsserver import NameServer, Zone
from tests.nodeproc import NodeProcess


@pytest.fixture(scope="module")
def nameserver() -> Iterator[NameServer]:
    server = NameServer(Zone()).start()
    yield server
    server.stop()


@pytest.fixture
def zone(nameserver: NameServer) -> Zone:
    zone = nameserver.zone
    zone.clear()
    zone.queries.clear()  # tests count the questions asked
    return zone


@pytest.fixture
def resolver(nameserver: NameServer, zone: Zone) -> TrustResolver:
    return TrustResolver(nameservers=[(nameserver.host, nameserver.port)], timeout=1.0)


def txt(zone: Zone, name: str, text: str) -> None:
    """A TXT record of `text`, cut into strings of at most 255 octets (RFC 1035 3.3.14)."""
    zone.txt(name, text)


def checking_node(
    root: Path,
    dns: NameServer,
    users: dict[str, str],
    verify: str = "",
) -> NodeProcess:
    """A started node that checks incoming mail, asking `dns`; `users` in their domains;
    `verify`: more lines of its [verify] table."""
    node = NodeProcess(
        root,
        delivery=f'dns_nameservers = ["{dns.address}"]\ndns_timeout = 1.0\n',
        verify=f"enabled = true\ndns_timeout = 1.0\n{verify}",
    )
    domains = tuple(dict.fromkeys(u.rpartition("@")[2] for u in users))
    node.provision(domains=domains, users=users)
    return node.start()
