"""Per-user submission counts on SQLite (role `SubmissionCounts`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from mailfort.store.sqlite.engine import SqliteEngine

# The new row must fit the maxima by itself (0: no bound); an existing row takes the addition
# only when its sum does. SQLite needs the WHERE on the SELECT of an upsert anyway.
_TAKE = (
    "INSERT INTO submission_counts(account, hour, messages, recipients)"
    " SELECT :account, :hour, :messages, :recipients"
    " WHERE (:max_m = 0 OR :messages <= :max_m) AND (:max_r = 0 OR :recipients <= :max_r)"
    " ON CONFLICT(account, hour) DO UPDATE SET"
    " messages = messages + excluded.messages, recipients = recipients + excluded.recipients"
    " WHERE (:max_m = 0 OR messages + excluded.messages <= :max_m)"
    " AND (:max_r = 0 OR recipients + excluded.recipients <= :max_r)"
)


class SqliteSubmission(SqliteEngine):
    async def submission_counts(
        self, account: str, hours: Sequence[int]
    ) -> dict[int, tuple[int, int]]:
        def fn(c: sqlite3.Connection) -> dict[int, tuple[int, int]]:
            marks = ",".join("?" * len(hours))
            found = c.execute(
                "SELECT hour, messages, recipients FROM submission_counts"
                f" WHERE account = ? AND hour IN ({marks})",
                (account, *hours),
            ).fetchall()
            return {int(r[0]): (int(r[1]), int(r[2])) for r in found}

        return await self._read(fn) if hours else {}

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
        def fn(c: sqlite3.Connection) -> bool:
            c.execute(
                "DELETE FROM submission_counts WHERE account = ? AND hour < ?", (account, hour - 1)
            )
            done = c.execute(
                _TAKE,
                {
                    "account": account,
                    "hour": hour,
                    "messages": messages,
                    "recipients": recipients,
                    "max_m": max_messages,
                    "max_r": max_recipients,
                },
            )
            return done.rowcount > 0

        return await self._write(fn)

    async def return_submission(
        self, account: str, hour: int, messages: int, recipients: int
    ) -> None:
        def fn(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE submission_counts SET messages = max(0, messages - ?),"
                " recipients = max(0, recipients - ?) WHERE account = ? AND hour = ?",
                (messages, recipients, account, hour),
            )

        await self._write(fn)
