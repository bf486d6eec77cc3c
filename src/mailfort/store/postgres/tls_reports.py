"""TLS-RPT counts and report claims on PostgreSQL (role `TlsReports`); each write one
transaction. A report is claimed by one `INSERT … ON CONFLICT DO NOTHING`, so two nodes cannot
both send it."""

from __future__ import annotations

from collections.abc import Sequence

from mailfort.store import rows
from mailfort.store.postgres.connection import Conn
from mailfort.store.postgres.engine import PostgresEngine
from mailfort.store.records import TlsResultRow


class PostgresTlsReports(PostgresEngine):
    async def add_tls_results(self, results: Sequence[TlsResultRow]) -> None:
        async def fn(c: Conn) -> None:
            await c.executemany(
                f"INSERT INTO tls_results({rows.TLS_RESULT_COLS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                " ON CONFLICT (day, domain, policy_type, policy, mx_host, result, address)"
                " DO UPDATE SET sessions = tls_results.sessions + EXCLUDED.sessions",
                rows.tls_result_values(results),
            )

        if results:
            await self.db.run(fn)

    async def tls_report_domains(self, before_day: str, limit: int) -> list[tuple[str, str]]:
        found = await self.db.fetch(
            "SELECT DISTINCT r.day, r.domain FROM tls_results r WHERE r.day < $1"
            " AND NOT EXISTS (SELECT 1 FROM tls_reports s"
            " WHERE s.day = r.day AND s.domain = r.domain)"
            " ORDER BY r.day, r.domain LIMIT $2",
            before_day,
            limit,
        )
        return [(str(r[0]), str(r[1])) for r in found]

    async def tls_results(self, day: str, domain: str) -> list[TlsResultRow]:
        found = await self.db.fetch(
            f"SELECT {rows.TLS_RESULT_COLS} FROM tls_results WHERE day = $1 AND domain = $2"
            " ORDER BY policy_type, policy, result, mx_host, address",
            day,
            domain,
        )
        return [rows.tls_result(r) for r in found]

    async def claim_tls_report(
        self, day: str, domain: str, node: str, now: float, *, report: bool, since: float, cap: int
    ) -> bool:
        async def fn(c: Conn) -> bool:
            if report:
                # Claims of one node are counted under its own lock: two claims of one node at
                # once cannot both take the last place under the cap.
                await c.execute("SELECT pg_advisory_xact_lock(hashtext('tlsrpt:' || $1))", node)
                sent = await c.fetchval(
                    "SELECT count(*) FROM tls_reports WHERE node = $1 AND claimed >= $2 AND report",
                    node,
                    since,
                )
                if sent >= cap:
                    return False
            done = await c.fetchval(
                "INSERT INTO tls_reports(day, domain, node, claimed, report)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
                day,
                domain,
                node,
                now,
                report,
            )
            return done is not None

        return await self.db.run(fn)

    async def prune_tls_results(self, before_day: str) -> int:
        async def fn(c: Conn) -> int:
            gone = 0
            for table in ("tls_results", "tls_reports"):
                status = await c.execute(f"DELETE FROM {table} WHERE day < $1", before_day)
                gone += int(status.split()[-1])
            return gone

        return await self.db.run(fn)
