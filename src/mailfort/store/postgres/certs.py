"""Certificates and the ACME client's shared state on PostgreSQL (role `Certificates`): what
every node of the cluster serves, and the HTTP-01 answers any of them gives the CA."""

from __future__ import annotations

from mailfort.store import rows
from mailfort.store.postgres.connection import Conn
from mailfort.store.postgres.engine import PostgresEngine
from mailfort.store.records import StoredCertificate


async def certificate(c: Conn, name: str) -> StoredCertificate | None:
    found = await c.fetchrow(
        f"SELECT {rows.CERTIFICATE_COLS} FROM certificates WHERE name = $1", name
    )
    return None if found is None else rows.certificate(found)


async def put_certificate(c: Conn, cert: StoredCertificate) -> None:
    await c.execute(
        f"INSERT INTO certificates({rows.CERTIFICATE_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"
        + rows.CERTIFICATE_REPLACE,
        *rows.certificate_values(cert),
    )


async def put_acme_challenge(
    c: Conn, token: str, key_authorization: str, expires: float, now: float
) -> None:
    await c.execute("DELETE FROM acme_challenges WHERE expires <= $1", now)
    await c.execute(
        "INSERT INTO acme_challenges(token, key_authorization, expires) VALUES ($1, $2, $3)"
        " ON CONFLICT (token) DO UPDATE SET key_authorization = EXCLUDED.key_authorization,"
        " expires = EXCLUDED.expires",
        token,
        key_authorization,
        expires,
    )


async def acme_challenge(c: Conn, token: str, now: float) -> str | None:
    found = await c.fetchval(
        "SELECT key_authorization FROM acme_challenges WHERE token = $1 AND expires > $2",
        token,
        now,
    )
    return None if found is None else str(found)


async def delete_acme_challenge(c: Conn, token: str) -> None:
    await c.execute("DELETE FROM acme_challenges WHERE token = $1", token)


async def acme_account_key(c: Conn, directory: str, key_pem: str, now: float) -> str:
    # Two nodes creating the account at once: the first insert wins, both read the winner.
    await c.execute(
        "INSERT INTO acme_accounts(directory, key_pem, created) VALUES ($1, $2, $3)"
        " ON CONFLICT (directory) DO NOTHING",
        directory,
        key_pem,
        now,
    )
    found = await c.fetchval("SELECT key_pem FROM acme_accounts WHERE directory = $1", directory)
    return str(found)


class PostgresCertificates(PostgresEngine):
    async def certificate(self, name: str) -> StoredCertificate | None:
        return await self.db.read_one(lambda c: certificate(c, name))

    async def put_certificate(self, cert: StoredCertificate) -> None:
        await self.db.run(lambda c: put_certificate(c, cert))

    async def put_acme_challenge(
        self, token: str, key_authorization: str, expires: float, now: float
    ) -> None:
        await self.db.run(lambda c: put_acme_challenge(c, token, key_authorization, expires, now))

    async def acme_challenge(self, token: str, now: float) -> str | None:
        return await self.db.read_one(lambda c: acme_challenge(c, token, now))

    async def delete_acme_challenge(self, token: str) -> None:
        await self.db.run(lambda c: delete_acme_challenge(c, token))

    async def acme_account_key(self, directory: str, key_pem: str, now: float) -> str:
        return await self.db.run(lambda c: acme_account_key(c, directory, key_pem, now))
