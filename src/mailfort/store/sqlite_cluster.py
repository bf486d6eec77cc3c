"""SQL for cluster membership, lease release and maildrop locks on SQLite; one transaction each."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from mailfort.store.api import (
    NODE_STATES,
    NodeInfo,
    decode_json_dict,
    decode_json_list,
    encode_json,
)


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
    rows = c.execute(
        "SELECT name, state, started, heartbeat, listeners, load FROM nodes ORDER BY name"
    ).fetchall()
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


def lease_counts(c: sqlite3.Connection, now: float) -> dict[str, int]:
    rows = c.execute(
        "SELECT lease_owner, count(*) FROM queue"
        " WHERE lease_owner IS NOT NULL AND lease_until > ? GROUP BY lease_owner",
        (now,),
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


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
