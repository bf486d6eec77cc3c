"""SQL for cluster membership, lease release and maildrop locks on PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mailfort.store.api import (
    NODE_STATES,
    NodeInfo,
    decode_json_dict,
    decode_json_list,
    encode_json,
)
from mailfort.store.postgres_conn import Conn


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
    rows = await c.fetch(
        "SELECT name, state, started, heartbeat, listeners, load FROM nodes ORDER BY name"
    )
    return [
        NodeInfo(
            name=r[0],
            state=r[1],
            started=r[2],
            heartbeat=r[3],
            listeners=decode_json_list(r[4]),
            load=decode_json_dict(r[5]),
        )
        for r in rows
    ]


async def lease_counts(c: Conn, now: float) -> dict[str, int]:
    rows = await c.fetch(
        "SELECT lease_owner, count(*) FROM queue"
        " WHERE lease_owner IS NOT NULL AND lease_until > $1 GROUP BY lease_owner",
        now,
    )
    return {str(r[0]): int(r[1]) for r in rows}


async def release_leases(c: Conn, owner: str) -> int:
    rows = await c.fetch(
        "UPDATE queue SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1"
        " RETURNING id",
        owner,
    )
    return len(rows)


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
