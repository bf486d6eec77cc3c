"""Client addresses and the networks they come from: the unit in which per-client bounds count.

A stranger with one machine rarely has one address: an IPv6 host is given a whole /64, and a
rented server or a home line can use many IPv4 addresses of its /24. A bound counted per address
alone lets such a client multiply its share by the addresses it owns, so every per-client bound
(connection slots, the overload gate's slots and reservations, failed logins, verifications in
progress) is counted per address *and* per network (`Networks.of`). The prefixes are settings
(`[limits] network_prefix_v4`, `network_prefix_v6`).

A leaf module: pure logic on strings, importable from every layer.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Networks:
    """Maps a client address to the network it is counted in (`"192.0.2.0/24"`)."""

    v4_prefix: int = 24
    v6_prefix: int = 64

    def __post_init__(self) -> None:
        if not 8 <= self.v4_prefix <= 32 or not 16 <= self.v6_prefix <= 128:
            raise ValueError("need 8 <= v4_prefix <= 32 and 16 <= v6_prefix <= 128")

    def of(self, ip: str) -> str:
        """The network of `ip`; an address that does not parse (a Unix socket, "unknown") is
        its own network, so it is still bounded, only alone."""
        return _network(ip, self.v4_prefix, self.v6_prefix)


@functools.lru_cache(maxsize=4096)
def _network(ip: str, v4_prefix: int, v6_prefix: int) -> str:
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # "::ffff:192.0.2.1" is the IPv4 client it wraps
    prefix = v4_prefix if address.version == 4 else v6_prefix
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def share_of(total: int, share: float) -> int:
    """How many of `total` units one client network may hold: `share` of them, at least one."""
    return max(1, int(total * share))
