"""Mail addresses as mailfort compares them: case-insensitive, with an optional +detail."""

from __future__ import annotations

import re

# RFC 5321 4.5.3.1: local part ≤ 64 octets, domain ≤ 255, path ≤ 256.
MAX_LOCAL = 64
MAX_DOMAIN = 255
_DOMAIN = re.compile(r"^(?:[^\s.@\[\]]+\.)*[^\s.@\[\]]+$")


class AddressError(ValueError):
    pass


def normalize(address: str) -> str:
    """Lower-cased `local@domain`; raises AddressError for anything that is not one."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise AddressError(f"not an address: {address!r}")
    if len(local.encode()) > MAX_LOCAL or len(domain.encode()) > MAX_DOMAIN:
        raise AddressError("address too long")
    if any(ch.isspace() or ord(ch) < 32 for ch in address):
        raise AddressError("control characters in address")
    domain = domain.lower().rstrip(".")
    if not _DOMAIN.match(domain):
        raise AddressError(f"not a domain: {domain!r}")
    return f"{local.lower()}@{domain}"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def without_detail(address: str, delimiter: str) -> str | None:
    """`user+tag@dom` → `user@dom`; None when there is no detail to strip."""
    if not delimiter:
        return None
    local, _, domain = address.rpartition("@")
    base, sep, _ = local.partition(delimiter)
    if not sep or not base:
        return None
    return f"{base}@{domain}"
