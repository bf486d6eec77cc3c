"""TLS-RPT counts and report claims on SQLite (role `TlsReports`); each write one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from mailfort.store import rows
from mailfort.store.records import TlsResultRow
from mailfort.store.sqlite.engine import SqliteEngine


class SqliteTlsReports(SqliteEngine):
    async def add_tls_results(self, results: Sequence[TlsResultRow]) -> None:
        def fn(c: sqlite3.Connection) -> None:
            c.executemany(
                f"INSERT INTO tls_results({rows.TLS_RESULT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(day, domain, policy_type, policy, mx_host, result, address)"
                " DO UPDATE SET sessions = sessions + excluded.sessions",
                rows.tls_result_values(results),
            )

        if results:
            await self._write(fn)

    async def tls_report_domains(self, before_day: str, limit: int) -> list[tuple[str, str]]:
        def fn(c: sqlite3.Connection) -> list[tuple[str, str]]:
            found = c.execute(
                "SELECT DISTINCT r.day, r.domain FROM tls_results r WHERE r.day < ?"
                " AND NOT EXISTS (SELECT 1 FROM tls_reports s"
                " WHERE s.day = r.day AND s.domain = r.domain)"
                " ORDER BY r.day, r.domain LIMIT ?",
                (before_day, limit),
            ).fetchall()
            return [(str(r[0]), str(r[1])) for r in found]

        return await self._read(fn)

    async def tls_results(self, day: str, domain: str) -> list[TlsResultRow]:
        def fn(c: sqlite3.Connection) -> list[TlsResultRow]:
            found = c.execute(
                f"SELECT {rows.TLS_RESULT_COLS} FROM tls_results WHERE day = ? AND domain = ?"
                " ORDER BY policy_type, policy, result, mx_host, address",
                (day, domain),
            ).fetchall()
            return [rows.tls_result(r) for r in found]

        return await self._read(fn)

    async def claim_tls_report(
        self, day: str, domain: str, node: str, now: float, *, report: bool, since: float, cap: int
    ) -> bool:
        def fn(c: sqlite3.Connection) -> bool:
            if report:
                (sent,) = c.execute(
                    "SELECT count(*) FROM tls_reports WHERE node = ? AND claimed >= ? AND report",
                    (node, since),
                ).fetchone()
                if sent >= cap:
                    return False
            cur = c.execute(
                "INSERT INTO tls_reports(day, domain, node, claimed, report)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (day, domain, node, now, int(report)),
            )
            return cur.rowcount == 1

        return await self._write(fn)

    async def prune_tls_results(self, before_day: str) -> int:
        def fn(c: sqlite3.Connection) -> int:
            gone = c.execute("DELETE FROM tls_results WHERE day < ?", (before_day,)).rowcount
            gone += c.execute("DELETE FROM tls_reports WHERE day < ?", (before_day,)).rowcount
            return int(gone)

        return await self._write(fn)
