"""Accounts, domains, aliases and login networks on PostgreSQL (roles `Accounts`, `AccountAdmin`,
`LoginNetworks`). Uniqueness is the database's: `INSERT … ON CONFLICT DO NOTHING RETURNING`
answers "already exists" in the same statement, so two nodes cannot both create one name."""

from __future__ import annotations

import time

from mailfort.errors import AlreadyExists, NotFound
from mailfort.store import rows
from mailfort.store.postgres import queue
from mailfort.store.postgres.connection import Conn
from mailfort.store.postgres.engine import PostgresEngine
from mailfort.store.postgres.mailboxes import insert_mailbox
from mailfort.store.records import DEFAULT_MAILBOXES, MAX_LOGIN_NETWORKS, Account, Alias


class PostgresAccounts(PostgresEngine):
    # -- domains -----------------------------------------------------------------------------
    async def add_domain(self, name: str) -> None:
        async def fn(c: Conn) -> None:
            done = await c.fetchval(
                "INSERT INTO domains(name, created) VALUES ($1, $2)"
                " ON CONFLICT DO NOTHING RETURNING 1",
                name,
                time.time(),
            )
            if done is None:
                raise AlreadyExists(f"domain {name} already exists")

        await self.db.run(fn)

    async def list_domains(self) -> list[str]:
        return [r[0] for r in await self.db.fetch("SELECT name FROM domains ORDER BY name")]

    async def delete_domain(self, name: str) -> None:
        async def fn(c: Conn) -> None:
            if await c.fetchval("DELETE FROM domains WHERE name = $1 RETURNING 1", name) is None:
                raise NotFound(f"no domain {name}")

        await self.db.run(fn)

    # -- accounts ----------------------------------------------------------------------------
    async def add_account(self, address: str, password_hash: str, quota_bytes: int = 0) -> Account:
        async def fn(c: Conn) -> Account:
            now = time.time()
            account_id = await c.fetchval(
                "INSERT INTO accounts(address, domain, password_hash, quota_bytes, created)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (address) DO NOTHING RETURNING id",
                address,
                address.rpartition("@")[2],
                password_hash,
                quota_bytes,
                now,
            )
            if account_id is None:
                raise AlreadyExists(f"user {address} already exists")
            for name, special in DEFAULT_MAILBOXES:
                await insert_mailbox(c, account_id, name, special)
            return rows.account((account_id, address, password_hash, quota_bytes, 0, now))

        return await self.db.run(fn)

    async def _one_account(self, where: str, key: object) -> Account | None:
        found = await self.db.fetch(f"SELECT {rows.ACCOUNT_COLS} FROM accounts WHERE {where}", key)
        return rows.account(found[0]) if found else None

    async def get_account(self, address: str) -> Account | None:
        return await self._one_account("address = $1", address)

    async def get_account_by_id(self, account_id: int) -> Account | None:
        return await self._one_account("id = $1", account_id)

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        if domain is None:
            found = await self.db.fetch(
                f"SELECT {rows.ACCOUNT_COLS} FROM accounts ORDER BY address"
            )
        else:
            found = await self.db.fetch(
                f"SELECT {rows.ACCOUNT_COLS} FROM accounts WHERE domain = $1 ORDER BY address",
                domain,
            )
        return [rows.account(r) for r in found]

    async def count_accounts(self) -> int:
        return int((await self.db.fetch("SELECT count(*) FROM accounts"))[0][0])

    async def set_password(self, address: str, password_hash: str) -> None:
        async def fn(c: Conn) -> None:
            account_id = await c.fetchval(
                "UPDATE accounts SET password_hash = $1 WHERE address = $2 RETURNING id",
                password_hash,
                address,
            )
            if account_id is None:
                raise NotFound(f"no user {address}")
            await c.execute("DELETE FROM login_networks WHERE account_id = $1", account_id)

        await self.db.run(fn)

    async def delete_account(self, address: str) -> None:
        async def fn(c: Conn) -> None:
            account_id = await c.fetchval("SELECT id FROM accounts WHERE address = $1", address)
            if account_id is None:
                raise NotFound(f"no user {address}")
            # Mail still queued for this account is theirs too; left behind it would wait forever.
            await queue.drop_account_items(c, account_id)
            await c.execute("DELETE FROM accounts WHERE id = $1", account_id)
            await c.execute(rows.UNUSED_BLOBS)

        await self.db.run(fn)

    # -- aliases -----------------------------------------------------------------------------
    async def add_alias(self, source: str, target: str) -> None:
        async def fn(c: Conn) -> None:
            done = await c.fetchval(
                "INSERT INTO aliases(source, target, created) VALUES ($1, $2, $3)"
                " ON CONFLICT DO NOTHING RETURNING 1",
                source,
                target,
                time.time(),
            )
            if done is None:
                raise AlreadyExists(f"alias {source} -> {target} already exists")

        await self.db.run(fn)

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        found = await self.db.fetch("SELECT source, target FROM aliases ORDER BY source, target")
        return [
            Alias(source=s, target=t)
            for s, t in found
            if domain is None or s.rpartition("@")[2] == domain
        ]

    async def delete_alias(self, source: str, target: str | None = None) -> None:
        async def fn(c: Conn) -> None:
            if target is None:
                found = await c.fetch("DELETE FROM aliases WHERE source = $1 RETURNING 1", source)
            else:
                found = await c.fetch(
                    "DELETE FROM aliases WHERE source = $1 AND target = $2 RETURNING 1",
                    source,
                    target,
                )
            if not found:
                raise NotFound(f"no alias {source}")

        await self.db.run(fn)

    async def alias_targets(self, source: str) -> list[str]:
        found = await self.db.fetch(
            "SELECT target FROM aliases WHERE source = $1 ORDER BY target", source
        )
        return [r[0] for r in found]

    # -- login networks ----------------------------------------------------------------------
    async def login_networks(self, account_id: int, since: float) -> dict[str, float]:
        found = await self.db.fetch(
            "SELECT network, last_seen FROM login_networks"
            " WHERE account_id = $1 AND last_seen >= $2 ORDER BY last_seen DESC LIMIT $3",
            account_id,
            since,
            MAX_LOGIN_NETWORKS,
        )
        return {str(r[0]): float(r[1]) for r in found}

    async def remember_login_network(
        self, account_id: int, network: str, now: float, forget_before: float
    ) -> None:
        async def fn(c: Conn) -> None:
            await c.execute(
                "DELETE FROM login_networks WHERE account_id = $1 AND last_seen < $2",
                account_id,
                forget_before,
            )
            # An account deleted meanwhile has nothing to remember (no foreign key error).
            await c.execute(
                "INSERT INTO login_networks(account_id, network, last_seen)"
                " SELECT id, $2, $3 FROM accounts WHERE id = $1"
                " ON CONFLICT (account_id, network) DO UPDATE SET last_seen = EXCLUDED.last_seen",
                account_id,
                network,
                now,
            )

        await self.db.run(fn)
