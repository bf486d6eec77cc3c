"""Certificates and the ACME client's shared state on SQLite (role `Certificates`)."""

from __future__ import annotations

import sqlite3

from mailfort.store import rows
from mailfort.store.records import StoredCertificate
from mailfort.store.sqlite.engine import SqliteEngine


def certificate(c: sqlite3.Connection, name: str) -> StoredCertificate | None:
    found = c.execute(
        f"SELECT {rows.CERTIFICATE_COLS} FROM certificates WHERE name = ?", (name,)
    ).fetchone()
    return None if found is None else rows.certificate(found)


def put_certificate(c: sqlite3.Connection, cert: StoredCertificate) -> None:
    c.execute(
        f"INSERT INTO certificates({rows.CERTIFICATE_COLS}) VALUES (?, ?, ?, ?, ?, ?)"
        + rows.CERTIFICATE_REPLACE,
        rows.certificate_values(cert),
    )


def put_acme_challenge(
    c: sqlite3.Connection, token: str, key_authorization: str, expires: float, now: float
) -> None:
    c.execute("DELETE FROM acme_challenges WHERE expires <= ?", (now,))
    c.execute(
        "INSERT INTO acme_challenges(token, key_authorization, expires) VALUES (?, ?, ?)"
        " ON CONFLICT(token) DO UPDATE SET key_authorization = excluded.key_authorization,"
        " expires = excluded.expires",
        (token, key_authorization, expires),
    )


def acme_challenge(c: sqlite3.Connection, token: str, now: float) -> str | None:
    found = c.execute(
        "SELECT key_authorization FROM acme_challenges WHERE token = ? AND expires > ?",
        (token, now),
    ).fetchone()
    return None if found is None else str(found[0])


def delete_acme_challenge(c: sqlite3.Connection, token: str) -> None:
    c.execute("DELETE FROM acme_challenges WHERE token = ?", (token,))


def acme_account_key(c: sqlite3.Connection, directory: str, key_pem: str, now: float) -> str:
    c.execute(
        "INSERT INTO acme_accounts(directory, key_pem, created) VALUES (?, ?, ?)"
        " ON CONFLICT(directory) DO NOTHING",
        (directory, key_pem, now),
    )
    found = c.execute("SELECT key_pem FROM acme_accounts WHERE directory = ?", (directory,))
    return str(found.fetchone()[0])


class SqliteCertificates(SqliteEngine):
    async def certificate(self, name: str) -> StoredCertificate | None:
        return await self._read(lambda c: certificate(c, name))

    async def put_certificate(self, cert: StoredCertificate) -> None:
        await self._write(lambda c: put_certificate(c, cert))

    async def put_acme_challenge(
        self, token: str, key_authorization: str, expires: float, now: float
    ) -> None:
        await self._write(lambda c: put_acme_challenge(c, token, key_authorization, expires, now))

    async def acme_challenge(self, token: str, now: float) -> str | None:
        return await self._read(lambda c: acme_challenge(c, token, now))

    async def delete_acme_challenge(self, token: str) -> None:
        await self._write(lambda c: delete_acme_challenge(c, token))

    async def acme_account_key(self, directory: str, key_pem: str, now: float) -> str:
        return await self._write(lambda c: acme_account_key(c, directory, key_pem, now))
