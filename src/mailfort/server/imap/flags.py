"""Message flags: system flags in their canonical spelling, keywords as the client wrote them."""

from __future__ import annotations

from collections.abc import Iterable

SYSTEM_FLAGS = frozenset({"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"})
# RFC 9051 7.1: "\\*" says clients may create keywords.
PERMANENT_FLAGS = (*sorted(SYSTEM_FLAGS), "\\*")
_CANONICAL = {f.lower(): f for f in SYSTEM_FLAGS | {"\\Recent"}}
MAX_FLAG = 100


class FlagError(ValueError):
    pass


def normalize_flags(flags: Iterable[str]) -> frozenset[str]:
    """System flags are case-insensitive (RFC 9051 2.3.2); an unknown `\\name` is refused."""
    found = set()
    for flag in flags:
        if flag.startswith("\\"):
            canonical = _CANONICAL.get(flag.lower())
            if canonical is None:
                raise FlagError(f"unknown system flag {flag}")
            found.add(canonical)
        else:
            if not flag or len(flag) > MAX_FLAG or any(c in flag for c in '(){%*"\\] '):
                raise FlagError(f"invalid keyword {flag!r}")
            found.add(flag)
    return frozenset(found)
