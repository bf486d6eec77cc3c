"""Nodes, the clock, maildrop locks and named leases on PostgreSQL (roles `Cluster`, `Locks`).

Every node reckons by the database's clock, and takes a lock with one `INSERT … ON CONFLICT …
WHERE` statement, so two nodes cannot both win it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mailfort.store import rows
from mailfort.store.postgres.connection import Conn
from mailfort.store.postgres.engine import PostgresEngine
from mailfort.store.records import NODE_STATES, NodeInfo, encode_json


async def register_node(
    c: Conn, name: str, listeners: Sequence[Mapping[str, object]], now: float
) -> None:
    await c.execute(
        "INSERT INTO nodes(name, state, started, heartbeat, listeners, load)"
        " VALUES ($1, 'active', $2, $2, $3, '{}')"
        " ON CONFLICT (name) DO UPDATE SET state = 'active', started = EXCLUDED.started,"
        " heartbeat = EXCLUDED.heartbeat, listeners = EXCLUDED.listeners, load = '{}'",
        name,
        now,
        encode_json([dict(x) for x in listeners]),
    )


async def heartbeat(c: Conn, name: str, load: Mapping[str, object], now: float) -> str | None:
    state = await c.fetchval(
        "UPDATE nodes SET heartbeat = $1, load = $2 WHERE name = $3 RETURNING state",
        now,
        encode_json(dict(load)),
        name,
    )
    return None if state is None else str(state)


async def set_node_state(c: Conn, name: str, state: str) -> bool:
    if state not in NODE_STATES:
        raise ValueError(f"not a node state: {state!r}")
    done = await c.fetchval("UPDATE nodes SET state = $1 WHERE name = $2 RETURNING 1", state, name)
    return done is not None


async def list_nodes(c: Conn) -> list[NodeInfo]:
    found = await c.fetch(f"SELECT {rows.NODE_COLS} FROM nodes ORDER BY name")
    return [rows.node(r) for r in found]


async def lease_counts(c: Conn, now: float) -> dict[str, int]:
    fetched = await c.fetch(
        "SELECT lease_owner, count(*) FROM queue"
        " WHERE lease_owner IS NOT NULL AND lease_until > $1 GROUP BY lease_owner",
        now,
    )
    return {str(r[0]): int(r[1]) for r in fetched}


async def release_leases(c: Conn, owner: str) -> int:
    fetched = await c.fetch(
        "UPDATE queue SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1"
        " RETURNING id",
        owner,
    )
    return len(fetched)


async def acquire_maildrop(c: Conn, account_id: int, owner: str, until: float, now: float) -> bool:
    done = await c.fetchval(
        "INSERT INTO maildrop_locks(account_id, owner, until) VALUES ($1, $2, $3)"
        " ON CONFLICT (account_id) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until"
        " WHERE maildrop_locks.until <= $4 OR maildrop_locks.owner = EXCLUDED.owner"
        " RETURNING 1",
        account_id,
        owner,
        until,
        now,
    )
    return done is not None


async def renew_maildrop(c: Conn, account_id: int, owner: str, until: float) -> bool:
    done = await c.fetchval(
        "UPDATE maildrop_locks SET until = $1 WHERE account_id = $2 AND owner = $3 RETURNING 1",
        until,
        account_id,
        owner,
    )
    return done is not None


async def release_maildrop(c: Conn, account_id: int, owner: str) -> None:
    await c.execute(
        "DELETE FROM maildrop_locks WHERE account_id = $1 AND owner = $2", account_id, owner
    )


async def acquire_lease(c: Conn, name: str, owner: str, until: float, now: float) -> bool:
    done = await c.fetchval(
        "INSERT INTO leases(name, owner, until) VALUES ($1, $2, $3)"
        " ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until"
        " WHERE leases.until <= $4 OR leases.owner = EXCLUDED.owner RETURNING 1",
        name,
        owner,
        until,
        now,
    )
    return done is not None


async def release_lease(c: Conn, name: str, owner: str) -> None:
    await c.execute("DELETE FROM leases WHERE name = $1 AND owner = $2", name, owner)


async def lease_holder(c: Conn, name: str, now: float) -> str | None:
    owner = await c.fetchval("SELECT owner FROM leases WHERE name = $1 AND until > $2", name, now)
    return None if owner is None else str(owner)


class PostgresCluster(PostgresEngine):
    async def register_node(
        self, name: str, listeners: Sequence[Mapping[str, object]], now: float
    ) -> None:
        await self.db.run(lambda c: register_node(c, name, listeners, now))

    async def heartbeat(self, name: str, load: Mapping[str, object], now: float) -> str | None:
        return await self.db.run(lambda c: heartbeat(c, name, load, now))

    async def set_node_state(self, name: str, state: str) -> bool:
        return await self.db.run(lambda c: set_node_state(c, name, state))

    async def list_nodes(self) -> list[NodeInfo]:
        return await self.db.read_one(list_nodes)

    async def clock(self) -> float:
        # clock_timestamp(), not now(): the time of this reading, not of the transaction's start.
        return float(
            await self.db.read_one(
                lambda c: c.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
            )
        )

    async def lease_counts(self, now: float) -> dict[str, int]:
        return await self.db.read_one(lambda c: lease_counts(c, now))

    async def release_leases(self, owner: str) -> int:
        return await self.db.run(lambda c: release_leases(c, owner))

    async def acquire_maildrop(self, account_id: int, owner: str, until: float, now: float) -> bool:
        return await self.db.run(lambda c: acquire_maildrop(c, account_id, owner, until, now))

    async def renew_maildrop(self, account_id: int, owner: str, until: float) -> bool:
        return await self.db.run(lambda c: renew_maildrop(c, account_id, owner, until))

    async def release_maildrop(self, account_id: int, owner: str) -> None:
        await self.db.run(lambda c: release_maildrop(c, account_id, owner))

    async def acquire_lease(self, name: str, owner: str, until: float, now: float) -> bool:
        return await self.db.run(lambda c: acquire_lease(c, name, owner, until, now))

    async def release_lease(self, name: str, owner: str) -> None:
        await self.db.run(lambda c: release_lease(c, name, owner))

    async def lease_holder(self, name: str, now: float) -> str | None:
        return await self.db.read_one(lambda c: lease_holder(c, name, now))
