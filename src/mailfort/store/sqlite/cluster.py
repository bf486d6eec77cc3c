"""Nodes, the clock, maildrop locks and named leases on SQLite (roles `Cluster`, `Locks`).

Each write is one writer transaction. An embedded store has one machine's clock: that one."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence

from mailfort.store import rows
from mailfort.store.records import NODE_STATES, NodeInfo, encode_json
from mailfort.store.sqlite.engine import SqliteEngine


def register_node(
    c: sqlite3.Connection, name: str, listeners: Sequence[Mapping[str, object]], now: float
) -> None:
    c.execute(
        "INSERT INTO nodes(name, state, started, heartbeat, listeners, load)"
        " VALUES (?, 'active', ?, ?, ?, '{}')"
        " ON CONFLICT(name) DO UPDATE SET state = 'active', started = excluded.started,"
        " heartbeat = excluded.heartbeat, listeners = excluded.listeners, load = '{}'",
        (name, now, now, encode_json([dict(x) for x in listeners])),
    )


def heartbeat(
    c: sqlite3.Connection, name: str, load: Mapping[str, object], now: float
) -> str | None:
    c.execute(
        "UPDATE nodes SET heartbeat = ?, load = ? WHERE name = ?",
        (now, encode_json(dict(load)), name),
    )
    row = c.execute("SELECT state FROM nodes WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row[0])


def set_node_state(c: sqlite3.Connection, name: str, state: str) -> bool:
    if state not in NODE_STATES:
        raise ValueError(f"not a node state: {state!r}")
    return c.execute("UPDATE nodes SET state = ? WHERE name = ?", (state, name)).rowcount > 0


def list_nodes(c: sqlite3.Connection) -> list[NodeInfo]:
    found = c.execute(f"SELECT {rows.NODE_COLS} FROM nodes ORDER BY name").fetchall()
    return [rows.node(r) for r in found]


def lease_counts(c: sqlite3.Connection, now: float) -> dict[str, int]:
    fetched = c.execute(
        "SELECT lease_owner, count(*) FROM queue"
        " WHERE lease_owner IS NOT NULL AND lease_until > ? GROUP BY lease_owner",
        (now,),
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in fetched}


def release_leases(c: sqlite3.Connection, owner: str) -> int:
    return c.execute(
        "UPDATE queue SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?", (owner,)
    ).rowcount


def acquire_maildrop(
    c: sqlite3.Connection, account_id: int, owner: str, until: float, now: float
) -> bool:
    c.execute(
        "INSERT INTO maildrop_locks(account_id, owner, until) VALUES (?, ?, ?)"
        " ON CONFLICT(account_id) DO UPDATE SET owner = excluded.owner, until = excluded.until"
        " WHERE maildrop_locks.until <= ? OR maildrop_locks.owner = excluded.owner",
        (account_id, owner, until, now),
    )
    row = c.execute("SELECT owner FROM maildrop_locks WHERE account_id = ?", (account_id,))
    found = row.fetchone()
    return found is not None and found[0] == owner


def renew_maildrop(c: sqlite3.Connection, account_id: int, owner: str, until: float) -> bool:
    return (
        c.execute(
            "UPDATE maildrop_locks SET until = ? WHERE account_id = ? AND owner = ?",
            (until, account_id, owner),
        ).rowcount
        > 0
    )


def release_maildrop(c: sqlite3.Connection, account_id: int, owner: str) -> None:
    c.execute("DELETE FROM maildrop_locks WHERE account_id = ? AND owner = ?", (account_id, owner))


def acquire_lease(c: sqlite3.Connection, name: str, owner: str, until: float, now: float) -> bool:
    c.execute(
        "INSERT INTO leases(name, owner, until) VALUES (?, ?, ?)"
        " ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, until = excluded.until"
        " WHERE leases.until <= ? OR leases.owner = excluded.owner",
        (name, owner, until, now),
    )
    found = c.execute("SELECT owner FROM leases WHERE name = ?", (name,)).fetchone()
    return found is not None and found[0] == owner


def release_lease(c: sqlite3.Connection, name: str, owner: str) -> None:
    c.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))


def lease_holder(c: sqlite3.Connection, name: str, now: float) -> str | None:
    found = c.execute(
        "SELECT owner FROM leases WHERE name = ? AND until > ?", (name, now)
    ).fetchone()
    return None if found is None else str(found[0])


class SqliteCluster(SqliteEngine):
    async def register_node(
        self, name: str, listeners: Sequence[Mapping[str, object]], now: float
    ) -> None:
        await self._write(lambda c: register_node(c, name, listeners, now))

    async def heartbeat(self, name: str, load: Mapping[str, object], now: float) -> str | None:
        return await self._write(lambda c: heartbeat(c, name, load, now))

    async def set_node_state(self, name: str, state: str) -> bool:
        return await self._write(lambda c: set_node_state(c, name, state))

    async def list_nodes(self) -> list[NodeInfo]:
        return await self._read(list_nodes)

    async def clock(self) -> float:
        return time.time()

    async def lease_counts(self, now: float) -> dict[str, int]:
        return await self._read(lambda c: lease_counts(c, now))

    async def release_leases(self, owner: str) -> int:
        return await self._write(lambda c: release_leases(c, owner))

    async def acquire_maildrop(self, account_id: int, owner: str, until: float, now: float) -> bool:
        return await self._write(lambda c: acquire_maildrop(c, account_id, owner, until, now))

    async def renew_maildrop(self, account_id: int, owner: str, until: float) -> bool:
        return await self._write(lambda c: renew_maildrop(c, account_id, owner, until))

    async def release_maildrop(self, account_id: int, owner: str) -> None:
        await self._write(lambda c: release_maildrop(c, account_id, owner))

    async def acquire_lease(self, name: str, owner: str, until: float, now: float) -> bool:
        return await self._write(lambda c: acquire_lease(c, name, owner, until, now))

    async def release_lease(self, name: str, owner: str) -> None:
        await self._write(lambda c: release_lease(c, name, owner))

    async def lease_holder(self, name: str, now: float) -> str | None:
        return await self._read(lambda c: lease_holder(c, name, now))
