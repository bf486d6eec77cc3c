"""Accounts, domains, aliases and login networks on SQLite (roles `Accounts`, `AccountAdmin`,
`LoginNetworks`)."""

from __future__ import annotations

import sqlite3
import time

from mailfort.errors import AlreadyExists, NotFound
from mailfort.store import rows
from mailfort.store.records import DEFAULT_MAILBOXES, MAX_LOGIN_NETWORKS, Account, Alias
from mailfort.store.sqlite import queue
from mailfort.store.sqlite.engine import SqliteEngine, exists, next_id
from mailfort.store.sqlite.mailboxes import insert_mailbox

_BY_ADDRESS = f"SELECT {rows.ACCOUNT_COLS} FROM accounts WHERE address = ?"
_BY_ID = f"SELECT {rows.ACCOUNT_COLS} FROM accounts WHERE id = ?"


def _one_account(c: sqlite3.Connection, sql: str, key: object) -> Account | None:
    row = c.execute(sql, (key,)).fetchone()
    return rows.account(row) if row else None


class SqliteAccounts(SqliteEngine):
    # -- domains -----------------------------------------------------------------------------
    async def add_domain(self, name: str) -> None:
        def fn(c: sqlite3.Connection) -> None:
            if exists(c, "SELECT 1 FROM domains WHERE name = ?", name):
                raise AlreadyExists(f"domain {name} already exists")
            c.execute("INSERT INTO domains(name, created) VALUES (?, ?)", (name, time.time()))

        await self._write(fn)

    async def list_domains(self) -> list[str]:
        return await self._read(
            lambda c: [r[0] for r in c.execute("SELECT name FROM domains ORDER BY name")]
        )

    async def delete_domain(self, name: str) -> None:
        def fn(c: sqlite3.Connection) -> None:
            if c.execute("DELETE FROM domains WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"no domain {name}")

        await self._write(fn)

    # -- accounts ----------------------------------------------------------------------------
    async def add_account(self, address: str, password_hash: str, quota_bytes: int = 0) -> Account:
        def fn(c: sqlite3.Connection) -> Account:
            if exists(c, "SELECT 1 FROM accounts WHERE address = ?", address):
                raise AlreadyExists(f"user {address} already exists")
            now = time.time()
            # A queue item, a cached session or a log line that still names a deleted account
            # must never come to mean its successor.
            account_id = next_id(c, "account_id", "accounts")
            c.execute(
                "INSERT INTO accounts(id, address, domain, password_hash, quota_bytes, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (account_id, address, address.rpartition("@")[2], password_hash, quota_bytes, now),
            )
            for name, special in DEFAULT_MAILBOXES:
                insert_mailbox(c, account_id, name, special)
            return rows.account((account_id, address, password_hash, quota_bytes, 0, now))

        return await self._write(fn)

    async def get_account(self, address: str) -> Account | None:
        return await self._read(lambda c: _one_account(c, _BY_ADDRESS, address))

    async def get_account_by_id(self, account_id: int) -> Account | None:
        return await self._read(lambda c: _one_account(c, _BY_ID, account_id))

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        def fn(c: sqlite3.Connection) -> list[Account]:
            if domain is None:
                found = c.execute(f"SELECT {rows.ACCOUNT_COLS} FROM accounts ORDER BY address")
            else:
                found = c.execute(
                    f"SELECT {rows.ACCOUNT_COLS} FROM accounts WHERE domain = ? ORDER BY address",
                    (domain,),
                )
            return [rows.account(r) for r in found]

        return await self._read(fn)

    async def count_accounts(self) -> int:
        return await self._read(lambda c: c.execute("SELECT count(*) FROM accounts").fetchone()[0])

    async def set_password(self, address: str, password_hash: str) -> None:
        def fn(c: sqlite3.Connection) -> None:
            cur = c.execute(
                "UPDATE accounts SET password_hash = ? WHERE address = ?", (password_hash, address)
            )
            if cur.rowcount == 0:
                raise NotFound(f"no user {address}")
            c.execute(
                "DELETE FROM login_networks WHERE account_id ="
                " (SELECT id FROM accounts WHERE address = ?)",
                (address,),
            )

        await self._write(fn)

    async def delete_account(self, address: str) -> None:
        def fn(c: sqlite3.Connection) -> None:
            row = c.execute("SELECT id FROM accounts WHERE address = ?", (address,)).fetchone()
            if row is None:
                raise NotFound(f"no user {address}")
            # Mail still queued for this account is theirs too; left behind it would wait forever.
            queue.drop_account_items(c, row[0])
            c.execute("DELETE FROM accounts WHERE id = ?", (row[0],))
            c.execute(rows.UNUSED_BLOBS)

        await self._write(fn)

    # -- aliases -----------------------------------------------------------------------------
    async def add_alias(self, source: str, target: str) -> None:
        def fn(c: sqlite3.Connection) -> None:
            sql = "SELECT 1 FROM aliases WHERE source = ? AND target = ?"
            if exists(c, sql, source, target):
                raise AlreadyExists(f"alias {source} -> {target} already exists")
            c.execute(
                "INSERT INTO aliases(source, target, created) VALUES (?, ?, ?)",
                (source, target, time.time()),
            )

        await self._write(fn)

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        def fn(c: sqlite3.Connection) -> list[Alias]:
            found = c.execute("SELECT source, target FROM aliases ORDER BY source, target")
            return [
                Alias(source=s, target=t)
                for s, t in found
                if domain is None or s.rpartition("@")[2] == domain
            ]

        return await self._read(fn)

    async def delete_alias(self, source: str, target: str | None = None) -> None:
        def fn(c: sqlite3.Connection) -> None:
            if target is None:
                cur = c.execute("DELETE FROM aliases WHERE source = ?", (source,))
            else:
                cur = c.execute(
                    "DELETE FROM aliases WHERE source = ? AND target = ?", (source, target)
                )
            if cur.rowcount == 0:
                raise NotFound(f"no alias {source}")

        await self._write(fn)

    async def alias_targets(self, source: str) -> list[str]:
        return await self._read(
            lambda c: [
                r[0]
                for r in c.execute(
                    "SELECT target FROM aliases WHERE source = ? ORDER BY target", (source,)
                )
            ]
        )

    # -- login networks ----------------------------------------------------------------------
    async def login_networks(self, account_id: int, since: float) -> dict[str, float]:
        def fn(c: sqlite3.Connection) -> dict[str, float]:
            found = c.execute(
                "SELECT network, last_seen FROM login_networks"
                " WHERE account_id = ? AND last_seen >= ? ORDER BY last_seen DESC LIMIT ?",
                (account_id, since, MAX_LOGIN_NETWORKS),
            ).fetchall()
            return {str(r[0]): float(r[1]) for r in found}

        return await self._read(fn)

    async def remember_login_network(
        self, account_id: int, network: str, now: float, forget_before: float
    ) -> None:
        def fn(c: sqlite3.Connection) -> None:
            c.execute(
                "DELETE FROM login_networks WHERE account_id = ? AND last_seen < ?",
                (account_id, forget_before),
            )
            # An account deleted meanwhile has nothing to remember (no foreign key error).
            c.execute(
                "INSERT INTO login_networks(account_id, network, last_seen)"
                " SELECT id, ?, ? FROM accounts WHERE id = ?"
                " ON CONFLICT(account_id, network) DO UPDATE SET last_seen = excluded.last_seen",
                (network, now, account_id),
            )

        await self._write(fn)
