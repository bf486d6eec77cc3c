"""The PostgreSQL engine's plumbing: the pool, migrations at open, change announcements.

Each operation is one transaction on a pooled asyncpg connection (`connection.Database`),
committed with `synchronous_commit=on` before the coroutine returns. Mailbox changes are published
to this node's `ChangeHub` after commit and, through the `Announcer`, to every other node, whose
`Listener` publishes them to its own hub. The role classes beside it hold the SQL.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailfort.store.api import Store
from mailfort.store.notify import ChangeHub
from mailfort.store.postgres.connection import Announcer, Database, Listener, translate
from mailfort.store.postgres.migrate import apply_migrations, schema_version


class PostgresEngine(Store):
    def __init__(self, dsn: str, *, pool_size: int = 20, listen: bool = True) -> None:
        self.dsn = dsn
        self.hub = ChangeHub()
        self.db = Database(dsn, max_size=pool_size)
        self.db.on_commit = self._commit_done
        self._listen = listen
        self.listener: Listener | None = None
        self.announcer = Announcer(self.db)

    @property
    def pending_commits(self) -> int:
        return self.db.writing

    def _changed(self, mailbox_ids: Iterable[int]) -> None:
        """After a commit: wake this node's sessions now, and tell the other nodes."""
        ids = list(mailbox_ids)
        self.hub.publish(ids)
        self.announcer.announce(ids)

    async def open(self) -> None:
        conn = await self.db.connect_one()
        try:
            await apply_migrations(conn)
        except Exception as exc:
            raise translate(exc) from exc
        finally:
            await conn.close()
        await self.db.open()
        if self._listen:
            self.listener = Listener(self.db, self.hub)
            await self.listener.start()

    async def close(self) -> None:
        await self.announcer.close()
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None
        await self.db.close()

    @property
    def commits(self) -> int:
        return self.db.commits

    async def schema_version(self) -> int:
        return await self.db.read(schema_version)
