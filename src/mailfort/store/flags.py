"""Message flags as every engine stores them: one space-separated, sorted text column.

Shared by the SQLite and PostgreSQL engines, so both compute flag changes the same way; only
the SQL around them differs.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailfort.store.records import FlagMode

_FLAG_SETS: dict[str, frozenset[str]] = {}


def flag_set(text: str) -> frozenset[str]:
    """One shared frozenset per distinct flags text: a mailbox has few distinct combinations,
    and building a set per row was a large part of loading a mailbox."""
    found = _FLAG_SETS.get(text)
    if found is None:
        if len(_FLAG_SETS) > 4096:
            _FLAG_SETS.clear()
        found = _FLAG_SETS[text] = frozenset(text.split())
    return found


def flags_text(flags: Iterable[str]) -> str:
    return " ".join(sorted(flags))


def plan_flag_changes(
    current: Iterable[tuple[int, int, str]],
    mode: FlagMode,
    flags: frozenset[str],
    unchanged_since: int | None,
) -> tuple[list[tuple[int, str]], list[int]]:
    """From (uid, modseq, flags text) rows: the (uid, new flags text) updates to make, and the
    UIDs refused by UNCHANGEDSINCE. Rows whose flags would not change are left alone, so they
    keep their MODSEQ."""
    failed: list[int] = []
    updates: list[tuple[int, str]] = []
    for uid, modseq, text in current:
        # RFC 7162 3.1.3: a message changed after UNCHANGEDSINCE is left alone and reported.
        if unchanged_since is not None and modseq > unchanged_since:
            failed.append(uid)
            continue
        old = frozenset(text.split())
        if mode is FlagMode.ADD:
            new = old | flags
        elif mode is FlagMode.REMOVE:
            new = old - flags
        else:
            new = flags
        if new != old:
            updates.append((uid, flags_text(new)))
    return updates, failed
