"""DKIM keys and shared secrets on SQLite (roles `DkimKeys`, `Secrets`).

Each write runs inside one writer transaction, so a rotation's activation (new keys active, old
ones retiring) is never half seen.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from mailfort.errors import AlreadyExists, NotFound
from mailfort.store import rows
from mailfort.store.records import DkimKey, DkimState
from mailfort.store.sqlite.engine import SqliteEngine


def keys(c: sqlite3.Connection, domain: str | None) -> list[DkimKey]:
    where, args = ("WHERE domain = ?", (domain,)) if domain is not None else ("", ())
    found = c.execute(
        f"SELECT {rows.DKIM_COLS} FROM dkim_keys {where} ORDER BY domain, created, selector", args
    )
    return [rows.dkim_key(r) for r in found]


def add_keys(c: sqlite3.Connection, new: Sequence[DkimKey]) -> None:
    for k in new:
        done = c.execute(
            f"INSERT INTO dkim_keys({rows.DKIM_COLS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            rows.dkim_values(k),
        ).rowcount
        if not done:
            # Raising rolls the writer's transaction back: the keys before it are not stored.
            raise AlreadyExists(f"DKIM selector {k.selector} of {k.domain} already exists")


def activate(
    c: sqlite3.Connection, domain: str, selectors: Sequence[str], now: float, retire_after: float
) -> list[DkimKey]:
    if not selectors:
        raise ValueError("activating no key would leave the domain unsigned")
    usable = (DkimState.PUBLISHED.value, DkimState.ACTIVE.value)
    for selector in selectors:
        state = c.execute(
            "SELECT state FROM dkim_keys WHERE domain = ? AND selector = ?", (domain, selector)
        ).fetchone()
        if state is None or state[0] not in usable:
            raise NotFound(f"no published DKIM key {selector} for {domain}")
    marks = ",".join("?" * len(selectors))
    retiring = c.execute(
        f"UPDATE dkim_keys SET state = ?, retire_after = ? WHERE domain = ? AND state = ?"
        f" AND selector NOT IN ({marks}) RETURNING {rows.DKIM_COLS}",
        (DkimState.RETIRING.value, retire_after, domain, DkimState.ACTIVE.value, *selectors),
    ).fetchall()
    c.execute(
        f"UPDATE dkim_keys SET state = ?, activated_at = ? WHERE domain = ? AND state = ?"
        f" AND selector IN ({marks})",
        (DkimState.ACTIVE.value, now, domain, DkimState.PUBLISHED.value, *selectors),
    )
    return sorted((rows.dkim_key(r) for r in retiring), key=lambda k: (k.created, k.selector))


def retire(c: sqlite3.Connection, domain: str, selectors: Sequence[str], now: float) -> int:
    marks = ",".join("?" * len(selectors))
    return c.execute(
        f"UPDATE dkim_keys SET state = ?, retired_at = ? WHERE domain = ? AND state = ?"
        f" AND selector IN ({marks})",
        (DkimState.RETIRED.value, now, domain, DkimState.RETIRING.value, *selectors),
    ).rowcount


def delete_key(c: sqlite3.Connection, domain: str, selector: str) -> bool:
    return (
        c.execute(
            "DELETE FROM dkim_keys WHERE domain = ? AND selector = ?", (domain, selector)
        ).rowcount
        > 0
    )


def shared_secret(c: sqlite3.Connection, name: str, candidate: bytes) -> bytes:
    c.execute(
        "INSERT INTO shared_secrets(name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (name, candidate),
    )
    row = c.execute("SELECT value FROM shared_secrets WHERE name = ?", (name,)).fetchone()
    return bytes(row[0])


class SqliteDkim(SqliteEngine):
    async def dkim_keys(self, domain: str | None = None) -> list[DkimKey]:
        return await self._read(lambda c: keys(c, domain))

    async def add_dkim_keys(self, keys: Sequence[DkimKey]) -> None:
        await self._write(lambda c: add_keys(c, keys))

    async def activate_dkim_keys(
        self, domain: str, selectors: Sequence[str], now: float, retire_after: float
    ) -> list[DkimKey]:
        return await self._write(lambda c: activate(c, domain, selectors, now, retire_after))

    async def retire_dkim_keys(self, domain: str, selectors: Sequence[str], now: float) -> int:
        if not selectors:
            return 0
        return await self._write(lambda c: retire(c, domain, selectors, now))

    async def delete_dkim_key(self, domain: str, selector: str) -> bool:
        return await self._write(lambda c: delete_key(c, domain, selector))

    async def shared_secret(self, name: str, candidate: bytes) -> bytes:
        return await self._write(lambda c: shared_secret(c, name, candidate))
