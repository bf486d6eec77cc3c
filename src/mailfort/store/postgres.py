"""The PostgreSQL engine: many nodes share one database; the same interface as SQLite.

Each operation is one transaction on a pooled asyncpg connection (`postgres_conn`), committed with
`synchronous_commit=on` before the coroutine returns. Mailbox changes are published to this node's
`ChangeHub` after commit and, through `pg_notify` inside the transaction, to every other node,
whose `Listener` publishes them to its own hub.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

import asyncpg

from mailfort.errors import AlreadyExists, NotFound
from mailfort.store import postgres_cluster as cluster
from mailfort.store import postgres_imap as imap
from mailfort.store import postgres_queue as q
from mailfort.store import postgres_status as status
from mailfort.store.api import (
    DEFAULT_MAILBOXES,
    MAX_LOGIN_NETWORKS,
    AcceptRequest,
    AcceptResult,
    Account,
    AccountQueue,
    Alias,
    AppendItem,
    AppendResult,
    ComponentRow,
    CopyResult,
    DelayedMail,
    FlagMode,
    HistoryRow,
    Mailbox,
    MailboxChanges,
    MailboxStatus,
    MessageRow,
    NodeInfo,
    QueueItem,
    RecordRow,
    Settlement,
    Store,
    StoredMessage,
    WebhookAdded,
    WebhookRow,
)
from mailfort.store.notify import ChangeHub
from mailfort.store.postgres_conn import Announcer, Conn, Database, Listener, translate
from mailfort.store.postgres_migrate import apply_migrations, schema_version

_ACCOUNT_COLS = "id, address, password_hash, quota_bytes, used_bytes, created"
_MAILBOX_COLS = (
    "id, account_id, name, special_use,"
    " EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = mailboxes.account_id"
    " AND s.name = mailboxes.name), uidvalidity, uidnext, highestmodseq,"
    " (SELECT count(*) FROM messages m WHERE m.mailbox_id = mailboxes.id)"
)


def _account(r: asyncpg.Record) -> Account:
    return Account(
        id=r[0],
        address=r[1],
        password_hash=r[2],
        quota_bytes=r[3],
        used_bytes=r[4],
        created=r[5],
    )


def _mailbox(r: asyncpg.Record) -> Mailbox:
    return Mailbox(
        id=r[0],
        account_id=r[1],
        name=r[2],
        special_use=r[3],
        subscribed=bool(r[4]),
        uidvalidity=r[5],
        uidnext=r[6],
        highestmodseq=r[7],
        messages=r[8],
    )


class PostgresStore(Store):
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

    # -- plumbing ----------------------------------------------------------------------------
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
                await imap.insert_mailbox(c, account_id, name, special)
            return Account(
                id=account_id,
                address=address,
                password_hash=password_hash,
                quota_bytes=quota_bytes,
                used_bytes=0,
                created=now,
            )

        return await self.db.run(fn)

    async def get_account(self, address: str) -> Account | None:
        rows = await self.db.fetch(
            f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE address = $1", address
        )
        return _account(rows[0]) if rows else None

    async def get_account_by_id(self, account_id: int) -> Account | None:
        rows = await self.db.fetch(
            f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE id = $1", account_id
        )
        return _account(rows[0]) if rows else None

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        if domain is None:
            rows = await self.db.fetch(f"SELECT {_ACCOUNT_COLS} FROM accounts ORDER BY address")
        else:
            rows = await self.db.fetch(
                f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE domain = $1 ORDER BY address", domain
            )
        return [_account(r) for r in rows]

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
            await q.drop_account_items(c, account_id)
            await c.execute("DELETE FROM accounts WHERE id = $1", account_id)
            await q.collect_blobs(c)

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
        rows = await self.db.fetch("SELECT source, target FROM aliases ORDER BY source, target")
        return [
            Alias(source=s, target=t)
            for s, t in rows
            if domain is None or s.rpartition("@")[2] == domain
        ]

    async def delete_alias(self, source: str, target: str | None = None) -> None:
        async def fn(c: Conn) -> None:
            if target is None:
                rows = await c.fetch("DELETE FROM aliases WHERE source = $1 RETURNING 1", source)
            else:
                rows = await c.fetch(
                    "DELETE FROM aliases WHERE source = $1 AND target = $2 RETURNING 1",
                    source,
                    target,
                )
            if not rows:
                raise NotFound(f"no alias {source}")

        await self.db.run(fn)

    async def alias_targets(self, source: str) -> list[str]:
        rows = await self.db.fetch(
            "SELECT target FROM aliases WHERE source = $1 ORDER BY target", source
        )
        return [r[0] for r in rows]

    # -- mailboxes ---------------------------------------------------------------------------
    async def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        rows = await self.db.fetch(
            f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE account_id = $1 ORDER BY id", account_id
        )
        return [_mailbox(r) for r in rows]

    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None:
        rows = await self.db.fetch(
            f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE account_id = $1 AND name = $2",
            account_id,
            name,
        )
        return _mailbox(rows[0]) if rows else None

    async def create_mailbox(
        self, account_id: int, name: str, special_use: str | None = None
    ) -> Mailbox:
        async def fn(c: Conn) -> Mailbox:
            # Locks the account: a concurrent delete_account cannot slip between check and insert.
            if (
                await c.fetchval("SELECT 1 FROM accounts WHERE id = $1 FOR SHARE", account_id)
                is None
            ):
                raise NotFound(f"no account with id {account_id}")
            if await c.fetchval(
                "SELECT 1 FROM mailboxes WHERE account_id = $1 AND name = $2", account_id, name
            ):
                raise AlreadyExists(f"mailbox {name} already exists")
            mailbox_id = await imap.insert_mailbox(c, account_id, name, special_use)
            r = await c.fetchrow(f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE id = $1", mailbox_id)
            return _mailbox(r)

        return await self.db.run(fn)

    # -- messages ----------------------------------------------------------------------------
    async def accept(self, request: AcceptRequest) -> AcceptResult:
        blob: list[int] = []

        async def committed(c: Conn) -> bool:
            # The message's blob id came from a sequence inside the transaction: it exists only
            # if that transaction committed.
            return bool(blob) and bool(
                await c.fetchval("SELECT EXISTS(SELECT 1 FROM blobs WHERE id = $1)", blob[0])
            )

        result = await self.db.run(lambda c: q.accept(c, request, blob), confirm=committed)
        self._changed(result.mailboxes)
        return result

    async def list_messages(self, account_id: int, mailbox: str) -> list[StoredMessage]:
        rows = await self.db.fetch(
            "SELECT m.uid, m.modseq, m.flags, m.internal_date, m.size FROM messages m"
            " JOIN mailboxes b ON b.id = m.mailbox_id"
            " WHERE b.account_id = $1 AND b.name = $2 ORDER BY m.uid",
            account_id,
            mailbox,
        )
        return [
            StoredMessage(
                uid=r[0], modseq=r[1], flags=frozenset(r[2].split()), internal_date=r[3], size=r[4]
            )
            for r in rows
        ]

    async def message_bytes(self, account_id: int, mailbox: str, uid: int) -> bytes | None:
        rows = await self.db.fetch(
            "SELECT m.prefix, bl.data FROM messages m"
            " JOIN mailboxes b ON b.id = m.mailbox_id JOIN blobs bl ON bl.id = m.blob_id"
            " WHERE b.account_id = $1 AND b.name = $2 AND m.uid = $3",
            account_id,
            mailbox,
            uid,
        )
        return bytes(rows[0][0]) + bytes(rows[0][1]) if rows else None

    # -- IMAP --------------------------------------------------------------------------------
    async def messages(self, account_id: int, mailbox_id: int) -> list[MessageRow]:
        return await self.db.read_one(lambda c: imap.messages(c, account_id, mailbox_id))

    async def changes(self, account_id: int, mailbox_id: int, since: int) -> MailboxChanges | None:
        async def fn(c: Conn) -> MailboxChanges | None:
            r = await c.fetchrow(
                f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE id = $1 AND account_id = $2",
                mailbox_id,
                account_id,
            )
            if r is None:
                return None
            box = _mailbox(r)
            if box.highestmodseq <= since:
                return MailboxChanges(mailbox=box, changed=[], expunged=[])
            changed, expunged = await imap.changed_since(c, mailbox_id, since)
            return MailboxChanges(mailbox=box, changed=changed, expunged=expunged)

        # One snapshot, so the mailbox row and the changes agree.
        return await self.db.read(fn, snapshot=True)

    async def mailbox_status(self, account_id: int, mailbox_id: int) -> MailboxStatus | None:
        # One snapshot, so UIDNEXT and MESSAGES describe the same commit.
        return await self.db.read(lambda c: imap.status(c, account_id, mailbox_id), snapshot=True)

    async def append(
        self, account_id: int, mailbox: str, items: Sequence[AppendItem]
    ) -> AppendResult:
        result = await self.db.run(lambda c: imap.append(c, account_id, mailbox, items))
        self._changed((result.mailbox_id,))
        return result

    async def set_flags(
        self,
        account_id: int,
        mailbox_id: int,
        uids: list[int],
        mode: FlagMode,
        flags: frozenset[str],
        unchanged_since: int | None = None,
    ) -> tuple[list[MessageRow], list[int]]:
        result = await self.db.run(
            lambda c: imap.set_flags(c, account_id, mailbox_id, uids, mode, flags, unchanged_since)
        )
        if result[0]:
            self._changed((mailbox_id,))
        return result

    async def expunge(self, account_id: int, mailbox_id: int, uids: list[int] | None) -> list[int]:
        result = await self.db.run(lambda c: imap.expunge(c, account_id, mailbox_id, uids))
        if result:
            self._changed((mailbox_id,))
        return result

    async def delete_messages(self, account_id: int, mailbox_id: int, uids: list[int]) -> list[int]:
        result = await self.db.run(lambda c: imap.delete_messages(c, account_id, mailbox_id, uids))
        if result:
            self._changed((mailbox_id,))
        return result

    async def copy(
        self, account_id: int, mailbox_id: int, uids: list[int], target: str, *, move: bool
    ) -> CopyResult:
        result = await self.db.run(
            lambda c: imap.copy(c, account_id, mailbox_id, uids, target, move)
        )
        self._changed((result.mailbox_id, mailbox_id) if move else (result.mailbox_id,))
        return result

    async def bodies(self, account_id: int, mailbox_id: int, uids: list[int]) -> dict[int, bytes]:
        return await self.db.read_one(lambda c: imap.bodies(c, account_id, mailbox_id, uids))

    async def rename_mailbox(self, account_id: int, old: str, new: str, delimiter: str) -> None:
        changed = await self.db.run(lambda c: imap.rename(c, account_id, old, new, delimiter))
        self._changed(changed)

    async def delete_mailbox(self, account_id: int, name: str) -> None:
        mailbox_id = await self.db.run(lambda c: imap.delete(c, account_id, name))
        self._changed((mailbox_id,))

    async def subscriptions(self, account_id: int) -> set[str]:
        rows = await self.db.fetch(
            "SELECT name FROM subscriptions WHERE account_id = $1", account_id
        )
        return {r[0] for r in rows}

    async def subscribe(self, account_id: int, name: str, subscribed: bool) -> None:
        async def fn(c: Conn) -> None:
            if subscribed:
                await c.execute(
                    "INSERT INTO subscriptions(account_id, name) VALUES ($1, $2)"
                    " ON CONFLICT DO NOTHING",
                    account_id,
                    name,
                )
            else:
                await c.execute(
                    "DELETE FROM subscriptions WHERE account_id = $1 AND name = $2",
                    account_id,
                    name,
                )

        await self.db.run(fn)

    # -- queue -------------------------------------------------------------------------------
    async def queue_items(self, queue_id: str | None = None) -> list[QueueItem]:
        return await self.db.read_one(lambda c: q.items(c, queue_id))

    async def queue_body(self, queue_id: str) -> bytes | None:
        rows = await self.db.fetch(
            "SELECT bl.data FROM envelopes e JOIN blobs bl ON bl.id = e.blob_id"
            " WHERE e.queue_id = $1",
            queue_id,
        )
        return bytes(rows[0][0]) if rows else None

    async def claim_queue(
        self, owner: str, now: float, lease_seconds: float, limit: int, local_only: bool
    ) -> list[QueueItem]:
        return await self.db.run(lambda c: q.claim(c, owner, now, lease_seconds, limit, local_only))

    async def deliver_queued(self, item: QueueItem, owner: str, prefix: bytes) -> bool:
        mailbox_id = await self.db.run(
            lambda c: q.deliver(c, item, owner, prefix, self.delay_threshold)
        )
        if mailbox_id is None:
            return False
        self._changed((mailbox_id,))
        return True

    async def defer_queued(
        self, item: QueueItem, owner: str, next_attempt: float, error: str
    ) -> bool:
        return await self.db.run(lambda c: q.defer(c, item, owner, next_attempt, error))

    async def claim_remote(
        self, owner: str, now: float, lease_seconds: float, limit: int
    ) -> list[QueueItem]:
        return await self.db.run(
            lambda c: q.claim(c, owner, now, lease_seconds, limit, False, remote_only=True)
        )

    async def renew_lease(self, item_ids: Sequence[int], owner: str, until: float) -> int:
        if not item_ids:
            return 0
        return await self.db.run(lambda c: q.renew(c, item_ids, owner, until))

    async def settle_queued(self, settlement: Settlement, owner: str) -> bool:
        mailboxes = await self.db.run(
            lambda c: q.settle(c, settlement, owner, self.delay_threshold)
        )
        if mailboxes is None:
            return False
        if mailboxes:
            self._changed(mailboxes)
        return True

    async def retry_queue(self, queue_id: str | None, now: float) -> int:
        return await self.db.run(lambda c: q.retry(c, queue_id, now))

    async def delete_queue(self, queue_id: str) -> int:
        return await self.db.run(lambda c: q.delete(c, queue_id))

    # -- cluster -----------------------------------------------------------------------------
    async def register_node(
        self, name: str, listeners: Sequence[Mapping[str, object]], now: float
    ) -> None:
        await self.db.run(lambda c: cluster.register_node(c, name, listeners, now))

    async def heartbeat(self, name: str, load: Mapping[str, object], now: float) -> str | None:
        return await self.db.run(lambda c: cluster.heartbeat(c, name, load, now))

    async def set_node_state(self, name: str, state: str) -> bool:
        return await self.db.run(lambda c: cluster.set_node_state(c, name, state))

    async def clock(self) -> float:
        # clock_timestamp(), not now(): the time of this reading, not of the transaction's start.
        return float(
            await self.db.read_one(
                lambda c: c.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
            )
        )

    async def list_nodes(self) -> list[NodeInfo]:
        return await self.db.read_one(cluster.list_nodes)

    async def lease_counts(self, now: float) -> dict[str, int]:
        return await self.db.read_one(lambda c: cluster.lease_counts(c, now))

    async def release_leases(self, owner: str) -> int:
        return await self.db.run(lambda c: cluster.release_leases(c, owner))

    async def login_networks(self, account_id: int, since: float) -> dict[str, float]:
        rows = await self.db.fetch(
            "SELECT network, last_seen FROM login_networks"
            " WHERE account_id = $1 AND last_seen >= $2 ORDER BY last_seen DESC LIMIT $3",
            account_id,
            since,
            MAX_LOGIN_NETWORKS,
        )
        return {str(r[0]): float(r[1]) for r in rows}

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

    async def acquire_maildrop(self, account_id: int, owner: str, until: float, now: float) -> bool:
        return await self.db.run(
            lambda c: cluster.acquire_maildrop(c, account_id, owner, until, now)
        )

    async def renew_maildrop(self, account_id: int, owner: str, until: float) -> bool:
        return await self.db.run(lambda c: cluster.renew_maildrop(c, account_id, owner, until))

    async def release_maildrop(self, account_id: int, owner: str) -> None:
        await self.db.run(lambda c: cluster.release_maildrop(c, account_id, owner))

    # -- status records ----------------------------------------------------------------------------
    async def status_components(self) -> list[ComponentRow]:
        return await self.db.read_one(status.components)

    async def save_status_components(self, rows: Sequence[ComponentRow]) -> None:
        await self.db.run(lambda c: status.save_components(c, rows))

    async def status_history(self, first_day: str) -> list[HistoryRow]:
        return await self.db.read_one(lambda c: status.history(c, first_day))

    async def add_status_history(self, rows: Sequence[HistoryRow], keep_from: str) -> None:
        await self.db.run(lambda c: status.add_history(c, rows, keep_from))

    async def put_status_incident(self, row: RecordRow, expect: int | None = None) -> int | None:
        return await self.db.run(lambda c: status.put_incident(c, row, expect))

    async def status_incident(self, incident_id: str) -> RecordRow | None:
        return await self.db.read_one(lambda c: status.incident(c, incident_id))

    async def status_incidents(
        self,
        *,
        open_only: bool = False,
        since: float | None = None,
        resolved_since: float | None = None,
        limit: int = 50,
    ) -> list[RecordRow]:
        return await self.db.read_one(
            lambda c: status.incidents(c, open_only, since, resolved_since, limit)
        )

    async def put_status_maintenance(self, row: RecordRow, expect: int | None = None) -> int | None:
        return await self.db.run(lambda c: status.put_maintenance(c, row, expect))

    async def status_maintenance_window(self, maintenance_id: str) -> RecordRow | None:
        return await self.db.read_one(lambda c: status.maintenance_window(c, maintenance_id))

    async def status_maintenance(self, ends_after: float | None) -> list[RecordRow]:
        return await self.db.read_one(lambda c: status.maintenance(c, ends_after))

    async def add_status_webhook(
        self,
        row: WebhookRow,
        *,
        max_total: int | None = None,
        max_per_network: int | None = None,
    ) -> WebhookAdded:
        return await self.db.run(lambda c: status.add_webhook(c, row, max_total, max_per_network))

    async def remove_status_webhook(self, webhook_id: str) -> bool:
        return await self.db.run(lambda c: status.remove_webhook(c, webhook_id))

    async def status_webhooks(self) -> list[WebhookRow]:
        return await self.db.read_one(status.webhooks)

    async def new_id(self, prefix: str) -> str:
        return await self.db.run(lambda c: status.new_id(c, prefix))

    async def acquire_lease(self, name: str, owner: str, until: float, now: float) -> bool:
        return await self.db.run(lambda c: status.acquire_lease(c, name, owner, until, now))

    async def release_lease(self, name: str, owner: str) -> None:
        await self.db.run(lambda c: status.release_lease(c, name, owner))

    async def lease_holder(self, name: str, now: float) -> str | None:
        return await self.db.read_one(lambda c: status.lease_holder(c, name, now))

    async def delayed_mail(
        self, since: float, until: float, now: float, threshold: float
    ) -> list[DelayedMail]:
        return await self.db.read(
            lambda c: status.delayed_mail(c, since, until, now, threshold), snapshot=True
        )

    async def queue_health(self, now: float) -> tuple[int, float | None]:
        return await self.db.read_one(lambda c: status.queue_health(c, now))

    async def account_queue(self, account_id: int, address: str) -> AccountQueue:
        return await self.db.read(
            lambda c: status.account_queue(c, account_id, address), snapshot=True
        )

    async def deliver_status_notice(
        self, key: str, account_id: int, message: bytes, now: float
    ) -> bool:
        mailbox_id = await self.db.run(
            lambda c: status.deliver_notice(c, key, account_id, message, now)
        )
        if mailbox_id is None:
            return False
        self._changed((mailbox_id,))
        return True
