"""Mail addresses as mailfort compares them: case-insensitive, with an optional +detail."""

from __future__ import annotations

import re

# RFC 5321 4.5.3.1: local part ≤ 64 octets, domain ≤ 255, path ≤ 256.
MAX_LOCAL = 64
MAX_DOMAIN = 255
_DOMAIN = re.compile(r"^(?:[^\s.@\[\]]+\.)*[^\s.@\[\]]+$")


class AddressError(ValueError):
    pass


def _bad_char(ch: str) -> bool:
    code = ord(ch)
    # Surrogates come from undecodable bytes (surrogateescape); they are not text and cannot be
    # encoded. Angle brackets belong to the path syntax around an address, never inside it.
    return ch.isspace() or code < 32 or code == 127 or 0xD800 <= code <= 0xDFFF or ch in "<>"


def normalize(address: str) -> str:
    """Lower-cased `local@domain`; raises AddressError for anything that is not one.

    Idempotent: normalizing a result gives the same result, so stored addresses compare equal to
    freshly normalized ones."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    if any(_bad_char(ch) for ch in address):
        raise AddressError("control characters or brackets in address")
    local, at, domain = address.rpartition("@")
    local = local.lower()
    domain = domain.lower().rstrip(".")
    if not at or not local or not domain:
        raise AddressError(f"not an address: {address!r}")
    # Checked after lower-casing: some characters grow when lowered (İ → i̇).
    if len(local.encode()) > MAX_LOCAL or len(domain.encode()) > MAX_DOMAIN:
        raise AddressError("address too long")
    if not _DOMAIN.match(domain):
        raise AddressError(f"not a domain: {domain!r}")
    return f"{local}@{domain}"


def normalize_domain(domain: str) -> str | None:
    """A domain as `normalize` leaves it in an address; None when it is not one."""
    if "@" in domain:
        return None
    try:
        return domain_of(normalize(f"x@{domain}"))
    except AddressError:
        return None


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
