"""DKIM keys and shared secrets on PostgreSQL (roles `DkimKeys`, `Secrets`).

The same records as on SQLite. Nodes read keys concurrently with an operator's rotation: the
activation is one transaction, so a node sees the old generation active or the new one, never
both nor neither. Secrets are claimed with `INSERT … ON CONFLICT DO NOTHING`, so two nodes
generating one at once agree on the first.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailfort.errors import AlreadyExists, NotFound
from mailfort.store import rows
from mailfort.store.postgres.connection import Conn
from mailfort.store.postgres.engine import PostgresEngine
from mailfort.store.records import DkimKey, DkimState


class PostgresDkim(PostgresEngine):
    async def dkim_keys(self, domain: str | None = None) -> list[DkimKey]:
        order = "ORDER BY domain, created, selector"
        if domain is None:
            found = await self.db.fetch(f"SELECT {rows.DKIM_COLS} FROM dkim_keys {order}")
        else:
            found = await self.db.fetch(
                f"SELECT {rows.DKIM_COLS} FROM dkim_keys WHERE domain = $1 {order}", domain
            )
        return [rows.dkim_key(r) for r in found]

    async def add_dkim_keys(self, keys: Sequence[DkimKey]) -> None:
        async def fn(c: Conn) -> None:
            for k in keys:
                done = await c.fetchval(
                    f"INSERT INTO dkim_keys({rows.DKIM_COLS})"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                    " ON CONFLICT DO NOTHING RETURNING 1",
                    *rows.dkim_values(k),
                )
                if done is None:
                    raise AlreadyExists(f"DKIM selector {k.selector} of {k.domain} already exists")

        await self.db.run(fn)

    async def activate_dkim_keys(
        self, domain: str, selectors: Sequence[str], now: float, retire_after: float
    ) -> list[DkimKey]:
        if not selectors:
            raise ValueError("activating no key would leave the domain unsigned")
        wanted = list(selectors)

        async def fn(c: Conn) -> list[DkimKey]:
            # Lock the domain's rows: two operators rotating at once must not interleave.
            found = await c.fetch(
                "SELECT selector, state FROM dkim_keys WHERE domain = $1 FOR UPDATE", domain
            )
            states = {r[0]: r[1] for r in found}
            usable = (DkimState.PUBLISHED.value, DkimState.ACTIVE.value)
            for selector in wanted:
                if states.get(selector) not in usable:
                    raise NotFound(f"no published DKIM key {selector} for {domain}")
            retiring = await c.fetch(
                "UPDATE dkim_keys SET state = $1, retire_after = $2 WHERE domain = $3"
                f" AND state = $4 AND selector <> ALL($5::text[]) RETURNING {rows.DKIM_COLS}",
                DkimState.RETIRING.value,
                retire_after,
                domain,
                DkimState.ACTIVE.value,
                wanted,
            )
            await c.execute(
                "UPDATE dkim_keys SET state = $1, activated_at = $2 WHERE domain = $3"
                " AND state = $4 AND selector = ANY($5::text[])",
                DkimState.ACTIVE.value,
                now,
                domain,
                DkimState.PUBLISHED.value,
                wanted,
            )
            made = (rows.dkim_key(r) for r in retiring)
            return sorted(made, key=lambda k: (k.created, k.selector))

        return await self.db.run(fn)

    async def retire_dkim_keys(self, domain: str, selectors: Sequence[str], now: float) -> int:
        async def fn(c: Conn) -> int:
            done = await c.fetch(
                "UPDATE dkim_keys SET state = $1, retired_at = $2 WHERE domain = $3"
                " AND state = $4 AND selector = ANY($5::text[]) RETURNING 1",
                DkimState.RETIRED.value,
                now,
                domain,
                DkimState.RETIRING.value,
                list(selectors),
            )
            return len(done)

        return await self.db.run(fn)

    async def delete_dkim_key(self, domain: str, selector: str) -> bool:
        async def fn(c: Conn) -> bool:
            done = await c.fetchval(
                "DELETE FROM dkim_keys WHERE domain = $1 AND selector = $2 RETURNING 1",
                domain,
                selector,
            )
            return done is not None

        return await self.db.run(fn)

    async def shared_secret(self, name: str, candidate: bytes) -> bytes:
        async def fn(c: Conn) -> bytes:
            await c.execute(
                "INSERT INTO shared_secrets(name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                name,
                candidate,
            )
            value = await c.fetchval("SELECT value FROM shared_secrets WHERE name = $1", name)
            return bytes(value)

        return await self.db.run(fn)
