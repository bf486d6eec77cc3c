"""Routing overrides: a fixed next hop instead of the domain's MX (like Postfix transport_maps).

Keys are matched most specific first: the exact domain, then ".parent" entries for each parent
domain (".example.org" covers "a.example.org" and "b.a.example.org", not "example.org" itself),
then "*" (a smarthost for everything). Values are "host", "host:port", "[host]:port" (Postfix's
spelling) or "[v6addr]:port"; a host name is resolved by its A/AAAA records, never by MX.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Nexthop:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_nexthop(value: str, *, default_port: int) -> Nexthop:
    """`host`, `host:port`, `[v6]:port`, or a bare IPv6 address; raises ValueError."""
    text = value.strip()
    if not text:
        raise ValueError("expected host or host:port, got an empty string")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:]
        if not sep or (rest and (not rest.startswith(":") or not port_text)):
            raise ValueError(f"expected [address]:port, got {value!r}")
    elif text.count(":") > 1:
        host, port_text = text, ""  # a bare IPv6 address
    else:
        host, sep, port_text = text.partition(":")
        if sep and not port_text:
            raise ValueError(f"no port after ':' in {value!r}")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
            raise ValueError(f"bad port in {value!r}")
        port = int(port_text)
    else:
        port = default_port
    if not host or any(ch.isspace() or ch in "/@" for ch in host):
        raise ValueError(f"not a host: {value!r}")
    if ":" in host:
        ipaddress.IPv6Address(host)  # ValueError when it is not one
    return Nexthop(host.lower(), port)


class TransportMap:
    def __init__(self, table: Mapping[str, str]) -> None:
        self._table = {
            key.lower().rstrip("."): parse_nexthop(value, default_port=25)
            for key, value in table.items()
        }

    def __bool__(self) -> bool:
        return bool(self._table)

    @property
    def catch_all(self) -> Nexthop | None:
        """The smarthost for every domain without its own entry ("*"), if there is one."""
        return self._table.get("*")

    def route(self, domain: str) -> Nexthop | None:
        """The override for mail to `domain`, or None to use its MX records."""
        domain = domain.lower().rstrip(".")
        found = self._table.get(domain)
        if found is not None:
            return found
        labels = domain.split(".")
        for i in range(1, len(labels)):
            found = self._table.get("." + ".".join(labels[i:]))
            if found is not None:
                return found
        return self._table.get("*")
