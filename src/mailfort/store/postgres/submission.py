"""Per-user submission counts on PostgreSQL (role `SubmissionCounts`). The conditional upsert
is one statement: `ON CONFLICT DO UPDATE` locks the row and evaluates its WHERE on the newest
version, so takers on every node are counted one after another and never pass the maxima."""

from __future__ import annotations

from collections.abc import Sequence

from mailfort.store.postgres.connection import Conn
from mailfort.store.postgres.engine import PostgresEngine

_TAKE = (
    "INSERT INTO submission_counts(account, hour, messages, recipients)"
    " SELECT $1::text, $2::bigint, $3::bigint, $4::bigint"
    " WHERE ($5::bigint = 0 OR $3::bigint <= $5::bigint)"
    " AND ($6::bigint = 0 OR $4::bigint <= $6::bigint)"
    " ON CONFLICT (account, hour) DO UPDATE SET"
    " messages = submission_counts.messages + EXCLUDED.messages,"
    " recipients = submission_counts.recipients + EXCLUDED.recipients"
    " WHERE ($5 = 0 OR submission_counts.messages + EXCLUDED.messages <= $5)"
    " AND ($6 = 0 OR submission_counts.recipients + EXCLUDED.recipients <= $6)"
    " RETURNING 1"
)


class PostgresSubmission(PostgresEngine):
    async def submission_counts(
        self, account: str, hours: Sequence[int]
    ) -> dict[int, tuple[int, int]]:
        found = await self.db.fetch(
            "SELECT hour, messages, recipients FROM submission_counts"
            " WHERE account = $1 AND hour = ANY($2::bigint[])",
            account,
            list(hours),
        )
        return {int(r[0]): (int(r[1]), int(r[2])) for r in found}

    async def take_submission(
        self,
        account: str,
        hour: int,
        messages: int,
        recipients: int,
        *,
        max_messages: int,
        max_recipients: int,
    ) -> bool:
        async def fn(c: Conn) -> bool:
            await c.execute(
                "DELETE FROM submission_counts WHERE account = $1 AND hour < $2", account, hour - 1
            )
            done = await c.fetchval(
                _TAKE, account, hour, messages, recipients, max_messages, max_recipients
            )
            return done is not None

        return bool(await self.db.run(fn))

    async def return_submission(
        self, account: str, hour: int, messages: int, recipients: int
    ) -> None:
        async def fn(c: Conn) -> None:
            await c.execute(
                "UPDATE submission_counts SET messages = greatest(0, messages - $3),"
                " recipients = greatest(0, recipients - $4) WHERE account = $1 AND hour = $2",
                account,
                hour,
                messages,
                recipients,
            )

        await self.db.run(fn)
