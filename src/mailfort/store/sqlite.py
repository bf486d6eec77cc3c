"""The embedded SQLite engine: one file, WAL, one group-committing writer, pooled readers."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from mailfort.errors import AlreadyExists, NotFound, StoreUnavailable
from mailfort.store import sqlite_cluster as cluster
from mailfort.store import sqlite_imap as imap
from mailfort.store import sqlite_queue as q
from mailfort.store import sqlite_status as status
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
from mailfort.store.migrate import apply_sqlite_migrations, sqlite_schema_version
from mailfort.store.notify import ChangeHub
from mailfort.store.sqlite_imap import insert_mailbox
from mailfort.store.sqlite_writer import GroupCommitWriter, connect, translate

T = TypeVar("T")

_ACCOUNT_COLS = "id, address, password_hash, quota_bytes, used_bytes, created"
_MAILBOX_COLS = (
    "id, account_id, name, special_use,"
    " EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = mailboxes.account_id"
    " AND s.name = mailboxes.name), uidvalidity, uidnext, highestmodseq,"
    " (SELECT count(*) FROM messages m WHERE m.mailbox_id = mailboxes.id)"
)


def _account(row: tuple) -> Account:  # type: ignore[type-arg]
    return Account(
        id=row[0],
        address=row[1],
        password_hash=row[2],
        quota_bytes=row[3],
        used_bytes=row[4],
        created=row[5],
    )


def _mailbox(row: tuple) -> Mailbox:  # type: ignore[type-arg]
    return Mailbox(
        id=row[0],
        account_id=row[1],
        name=row[2],
        special_use=row[3],
        subscribed=bool(row[4]),
        uidvalidity=row[5],
        uidnext=row[6],
        highestmodseq=row[7],
        messages=row[8],
    )


def next_account_id(conn: sqlite3.Connection) -> int:
    """An account id never handed out before in this store.

    SQLite reuses the highest rowid once its row is deleted; a queue item, a cached session or a log
    line that still names the deleted account must never come to mean its successor."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'account_id'").fetchone()
    highest = conn.execute("SELECT coalesce(max(id), 0) FROM accounts").fetchone()[0]
    value = max(int(row[0]) if row else 0, int(highest)) + 1
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('account_id', ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (str(value),),
    )
    return value


def _snapshot(c: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run several reads in one read transaction, so they all see the same commit."""
    c.execute("BEGIN")
    try:
        return fn(c)
    finally:
        c.execute("COMMIT")


def _exists(conn: sqlite3.Connection, sql: str, *args: object) -> bool:
    return conn.execute(sql, args).fetchone() is not None


class SqliteStore(Store):
    def __init__(self, path: Path, *, readers: int = 4) -> None:
        self.path = path
        self.hub = ChangeHub()
        self._writer = GroupCommitWriter(path, on_commit=self._commit_done)
        self._readers = readers
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    # -- plumbing ----------------------------------------------------------------------------
    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._writer.start, apply_sqlite_migrations)
        self._pool = ThreadPoolExecutor(self._readers, thread_name_prefix="sqlite-reader")

    async def close(self) -> None:
        await asyncio.to_thread(self._writer.stop)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()

    @property
    def pending_writes(self) -> int:
        return self._writer.pending

    @property
    def pending_commits(self) -> int:
        return self._writer.waiting

    @property
    def writer(self) -> GroupCommitWriter:
        """The group-committing writer, for its counters (commits, committed_jobs)."""
        return self._writer

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._writer.run(fn)

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._read_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._pool is None:
            raise StoreUnavailable("store is closed")

        def call() -> T:
            try:
                return fn(self._reader())
            except Exception as exc:
                raise translate(exc) from exc

        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def schema_version(self) -> int:
        return await self._read(sqlite_schema_version)

    # -- domains -----------------------------------------------------------------------------
    async def add_domain(self, name: str) -> None:
        def fn(c: sqlite3.Connection) -> None:
            if _exists(c, "SELECT 1 FROM domains WHERE name = ?", name):
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
            if _exists(c, "SELECT 1 FROM accounts WHERE address = ?", address):
                raise AlreadyExists(f"user {address} already exists")
            now = time.time()
            account_id = next_account_id(c)
            c.execute(
                "INSERT INTO accounts(id, address, domain, password_hash, quota_bytes, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (account_id, address, address.rpartition("@")[2], password_hash, quota_bytes, now),
            )
            for name, special in DEFAULT_MAILBOXES:
                insert_mailbox(c, account_id, name, special)
            return Account(
                id=account_id,
                address=address,
                password_hash=password_hash,
                quota_bytes=quota_bytes,
                used_bytes=0,
                created=now,
            )

        return await self._write(fn)

    async def get_account(self, address: str) -> Account | None:
        def fn(c: sqlite3.Connection) -> Account | None:
            row = c.execute(
                f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE address = ?", (address,)
            ).fetchone()
            return _account(row) if row else None

        return await self._read(fn)

    async def get_account_by_id(self, account_id: int) -> Account | None:
        def fn(c: sqlite3.Connection) -> Account | None:
            row = c.execute(
                f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
            return _account(row) if row else None

        return await self._read(fn)

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        def fn(c: sqlite3.Connection) -> list[Account]:
            if domain is None:
                rows = c.execute(f"SELECT {_ACCOUNT_COLS} FROM accounts ORDER BY address")
            else:
                rows = c.execute(
                    f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE domain = ? ORDER BY address",
                    (domain,),
                )
            return [_account(r) for r in rows]

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
            q.drop_account_items(c, row[0])
            c.execute("DELETE FROM accounts WHERE id = ?", (row[0],))
            q.collect_blobs(c)

        await self._write(fn)

    # -- aliases -----------------------------------------------------------------------------
    async def add_alias(self, source: str, target: str) -> None:
        def fn(c: sqlite3.Connection) -> None:
            sql = "SELECT 1 FROM aliases WHERE source = ? AND target = ?"
            if _exists(c, sql, source, target):
                raise AlreadyExists(f"alias {source} -> {target} already exists")
            c.execute(
                "INSERT INTO aliases(source, target, created) VALUES (?, ?, ?)",
                (source, target, time.time()),
            )

        await self._write(fn)

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        def fn(c: sqlite3.Connection) -> list[Alias]:
            rows = c.execute("SELECT source, target FROM aliases ORDER BY source, target")
            return [
                Alias(source=s, target=t)
                for s, t in rows
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

    # -- mailboxes ---------------------------------------------------------------------------
    async def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        return await self._read(
            lambda c: [
                _mailbox(r)
                for r in c.execute(
                    f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE account_id = ? ORDER BY id",
                    (account_id,),
                )
            ]
        )

    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None:
        def fn(c: sqlite3.Connection) -> Mailbox | None:
            row = c.execute(
                f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE account_id = ? AND name = ?",
                (account_id, name),
            ).fetchone()
            return _mailbox(row) if row else None

        return await self._read(fn)

    async def create_mailbox(
        self, account_id: int, name: str, special_use: str | None = None
    ) -> Mailbox:
        def fn(c: sqlite3.Connection) -> Mailbox:
            if not _exists(c, "SELECT 1 FROM accounts WHERE id = ?", account_id):
                raise NotFound(f"no account with id {account_id}")
            sql = "SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?"
            if _exists(c, sql, account_id, name):
                raise AlreadyExists(f"mailbox {name} already exists")
            mailbox_id = insert_mailbox(c, account_id, name, special_use)
            row = c.execute(
                f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            return _mailbox(row)

        return await self._write(fn)

    # -- messages ----------------------------------------------------------------------------
    async def accept(self, request: AcceptRequest) -> AcceptResult:
        result = await self._write(lambda c: q.accept(c, request))
        self.hub.publish(result.mailboxes)
        return result

    async def list_messages(self, account_id: int, mailbox: str) -> list[StoredMessage]:
        def fn(c: sqlite3.Connection) -> list[StoredMessage]:
            rows = c.execute(
                "SELECT m.uid, m.modseq, m.flags, m.internal_date, m.size FROM messages m"
                " JOIN mailboxes b ON b.id = m.mailbox_id"
                " WHERE b.account_id = ? AND b.name = ? ORDER BY m.uid",
                (account_id, mailbox),
            )
            return [
                StoredMessage(
                    uid=r[0],
                    modseq=r[1],
                    flags=frozenset(r[2].split()),
                    internal_date=r[3],
                    size=r[4],
                )
                for r in rows
            ]

        return await self._read(fn)

    async def message_bytes(self, account_id: int, mailbox: str, uid: int) -> bytes | None:
        def fn(c: sqlite3.Connection) -> bytes | None:
            row = c.execute(
                "SELECT m.prefix, bl.data FROM messages m"
                " JOIN mailboxes b ON b.id = m.mailbox_id JOIN blobs bl ON bl.id = m.blob_id"
                " WHERE b.account_id = ? AND b.name = ? AND m.uid = ?",
                (account_id, mailbox, uid),
            ).fetchone()
            return bytes(row[0]) + bytes(row[1]) if row else None

        return await self._read(fn)

    # -- queue -------------------------------------------------------------------------------
    async def queue_items(self, queue_id: str | None = None) -> list[QueueItem]:
        return await self._read(lambda c: q.items(c, queue_id))

    async def queue_body(self, queue_id: str) -> bytes | None:
        def fn(c: sqlite3.Connection) -> bytes | None:
            row = c.execute(
                "SELECT bl.data FROM envelopes e JOIN blobs bl ON bl.id = e.blob_id"
                " WHERE e.queue_id = ?",
                (queue_id,),
            ).fetchone()
            return bytes(row[0]) if row else None

        return await self._read(fn)

    async def claim_queue(
        self, owner: str, now: float, lease_seconds: float, limit: int, local_only: bool
    ) -> list[QueueItem]:
        return await self._write(lambda c: q.claim(c, owner, now, lease_seconds, limit, local_only))

    async def deliver_queued(self, item: QueueItem, owner: str, prefix: bytes) -> bool:
        mailbox_id = await self._write(
            lambda c: q.deliver(c, item, owner, prefix, self.delay_threshold)
        )
        if mailbox_id is None:
            return False
        self.hub.publish((mailbox_id,))
        return True

    # -- IMAP --------------------------------------------------------------------------------
    async def messages(self, account_id: int, mailbox_id: int) -> list[MessageRow]:
        return await self._read(lambda c: imap.messages(c, account_id, mailbox_id))

    async def changes(self, account_id: int, mailbox_id: int, since: int) -> MailboxChanges | None:
        def fn(c: sqlite3.Connection) -> MailboxChanges | None:
            r = c.execute(
                f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE id = ? AND account_id = ?",
                (mailbox_id, account_id),
            ).fetchone()
            if r is None:
                return None
            box = _mailbox(r)
            if box.highestmodseq <= since:
                return MailboxChanges(mailbox=box, changed=[], expunged=[])
            changed, expunged = imap.changed_since(c, mailbox_id, since)
            return MailboxChanges(mailbox=box, changed=changed, expunged=expunged)

        # One read transaction, so the mailbox row and the changes agree.
        return await self._read(lambda c: _snapshot(c, fn))

    async def mailbox_status(self, account_id: int, mailbox_id: int) -> MailboxStatus | None:
        # One read transaction, so UIDNEXT and MESSAGES describe the same commit.
        def fn(c: sqlite3.Connection) -> MailboxStatus | None:
            return imap.status(c, account_id, mailbox_id)

        return await self._read(lambda c: _snapshot(c, fn))

    async def append(
        self, account_id: int, mailbox: str, items: Sequence[AppendItem]
    ) -> AppendResult:
        result = await self._write(lambda c: imap.append(c, account_id, mailbox, items))
        self.hub.publish((result.mailbox_id,))
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
        result = await self._write(
            lambda c: imap.set_flags(c, account_id, mailbox_id, uids, mode, flags, unchanged_since)
        )
        if result[0]:
            self.hub.publish((mailbox_id,))
        return result

    async def expunge(self, account_id: int, mailbox_id: int, uids: list[int] | None) -> list[int]:
        result = await self._write(lambda c: imap.expunge(c, account_id, mailbox_id, uids))
        if result:
            self.hub.publish((mailbox_id,))
        return result

    async def delete_messages(self, account_id: int, mailbox_id: int, uids: list[int]) -> list[int]:
        result = await self._write(lambda c: imap.delete_messages(c, account_id, mailbox_id, uids))
        if result:
            self.hub.publish((mailbox_id,))
        return result

    async def copy(
        self, account_id: int, mailbox_id: int, uids: list[int], target: str, *, move: bool
    ) -> CopyResult:
        result = await self._write(
            lambda c: imap.copy(c, account_id, mailbox_id, uids, target, move)
        )
        self.hub.publish((result.mailbox_id, mailbox_id) if move else (result.mailbox_id,))
        return result

    async def bodies(self, account_id: int, mailbox_id: int, uids: list[int]) -> dict[int, bytes]:
        return await self._read(lambda c: imap.bodies(c, account_id, mailbox_id, uids))

    async def rename_mailbox(self, account_id: int, old: str, new: str, delimiter: str) -> None:
        changed = await self._write(lambda c: imap.rename(c, account_id, old, new, delimiter))
        self.hub.publish(changed)

    async def delete_mailbox(self, account_id: int, name: str) -> None:
        mailbox_id = await self._write(lambda c: imap.delete(c, account_id, name))
        self.hub.publish((mailbox_id,))

    async def subscriptions(self, account_id: int) -> set[str]:
        return await self._read(
            lambda c: {
                r[0]
                for r in c.execute(
                    "SELECT name FROM subscriptions WHERE account_id = ?", (account_id,)
                )
            }
        )

    async def subscribe(self, account_id: int, name: str, subscribed: bool) -> None:
        def fn(c: sqlite3.Connection) -> None:
            if subscribed:
                c.execute(
                    "INSERT OR IGNORE INTO subscriptions(account_id, name) VALUES (?, ?)",
                    (account_id, name),
                )
            else:
                c.execute(
                    "DELETE FROM subscriptions WHERE account_id = ? AND name = ?",
                    (account_id, name),
                )

        await self._write(fn)

    async def defer_queued(
        self, item: QueueItem, owner: str, next_attempt: float, error: str
    ) -> bool:
        return await self._write(lambda c: q.defer(c, item, owner, next_attempt, error))

    async def claim_remote(
        self, owner: str, now: float, lease_seconds: float, limit: int
    ) -> list[QueueItem]:
        return await self._write(
            lambda c: q.claim(c, owner, now, lease_seconds, limit, False, remote_only=True)
        )

    async def renew_lease(self, item_ids: Sequence[int], owner: str, until: float) -> int:
        if not item_ids:
            return 0
        return await self._write(lambda c: q.renew(c, item_ids, owner, until))

    async def settle_queued(self, settlement: Settlement, owner: str) -> bool:
        mailboxes = await self._write(
            lambda c: q.settle(c, settlement, owner, self.delay_threshold)
        )
        if mailboxes is None:
            return False
        if mailboxes:
            self.hub.publish(mailboxes)
        return True

    async def retry_queue(self, queue_id: str | None, now: float) -> int:
        return await self._write(lambda c: q.retry(c, queue_id, now))

    async def delete_queue(self, queue_id: str) -> int:
        return await self._write(lambda c: q.delete(c, queue_id))

    # -- cluster -----------------------------------------------------------------------------
    async def register_node(
        self, name: str, listeners: Sequence[Mapping[str, object]], now: float
    ) -> None:
        await self._write(lambda c: cluster.register_node(c, name, listeners, now))

    async def heartbeat(self, name: str, load: Mapping[str, object], now: float) -> str | None:
        return await self._write(lambda c: cluster.heartbeat(c, name, load, now))

    async def set_node_state(self, name: str, state: str) -> bool:
        return await self._write(lambda c: cluster.set_node_state(c, name, state))

    async def list_nodes(self) -> list[NodeInfo]:
        return await self._read(cluster.list_nodes)

    async def lease_counts(self, now: float) -> dict[str, int]:
        return await self._read(lambda c: cluster.lease_counts(c, now))

    async def release_leases(self, owner: str) -> int:
        return await self._write(lambda c: cluster.release_leases(c, owner))

    async def login_networks(self, account_id: int, since: float) -> dict[str, float]:
        def fn(c: sqlite3.Connection) -> dict[str, float]:
            rows = c.execute(
                "SELECT network, last_seen FROM login_networks"
                " WHERE account_id = ? AND last_seen >= ? ORDER BY last_seen DESC LIMIT ?",
                (account_id, since, MAX_LOGIN_NETWORKS),
            ).fetchall()
            return {str(r[0]): float(r[1]) for r in rows}

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

    async def acquire_maildrop(self, account_id: int, owner: str, until: float, now: float) -> bool:
        return await self._write(
            lambda c: cluster.acquire_maildrop(c, account_id, owner, until, now)
        )

    async def renew_maildrop(self, account_id: int, owner: str, until: float) -> bool:
        return await self._write(lambda c: cluster.renew_maildrop(c, account_id, owner, until))

    async def release_maildrop(self, account_id: int, owner: str) -> None:
        await self._write(lambda c: cluster.release_maildrop(c, account_id, owner))

    # -- status records ----------------------------------------------------------------------------
    async def status_components(self) -> list[ComponentRow]:
        return await self._read(status.components)

    async def save_status_components(self, rows: Sequence[ComponentRow]) -> None:
        await self._write(lambda c: status.save_components(c, rows))

    async def status_history(self, first_day: str) -> list[HistoryRow]:
        return await self._read(lambda c: status.history(c, first_day))

    async def add_status_history(self, rows: Sequence[HistoryRow], keep_from: str) -> None:
        await self._write(lambda c: status.add_history(c, rows, keep_from))

    async def put_status_incident(self, row: RecordRow, expect: int | None = None) -> int | None:
        return await self._write(lambda c: status.put_incident(c, row, expect))

    async def status_incident(self, incident_id: str) -> RecordRow | None:
        return await self._read(lambda c: status.incident(c, incident_id))

    async def status_incidents(
        self,
        *,
        open_only: bool = False,
        since: float | None = None,
        resolved_since: float | None = None,
        limit: int = 50,
    ) -> list[RecordRow]:
        return await self._read(
            lambda c: status.incidents(c, open_only, since, resolved_since, limit)
        )

    async def put_status_maintenance(self, row: RecordRow, expect: int | None = None) -> int | None:
        return await self._write(lambda c: status.put_maintenance(c, row, expect))

    async def status_maintenance_window(self, maintenance_id: str) -> RecordRow | None:
        return await self._read(lambda c: status.maintenance_window(c, maintenance_id))

    async def status_maintenance(self, ends_after: float | None) -> list[RecordRow]:
        return await self._read(lambda c: status.maintenance(c, ends_after))

    async def add_status_webhook(
        self,
        row: WebhookRow,
        *,
        max_total: int | None = None,
        max_per_network: int | None = None,
    ) -> WebhookAdded:
        return await self._write(lambda c: status.add_webhook(c, row, max_total, max_per_network))

    async def remove_status_webhook(self, webhook_id: str) -> bool:
        return await self._write(lambda c: status.remove_webhook(c, webhook_id))

    async def status_webhooks(self) -> list[WebhookRow]:
        return await self._read(status.webhooks)

    async def new_id(self, prefix: str) -> str:
        return await self._write(lambda c: status.new_id(c, prefix))

    async def acquire_lease(self, name: str, owner: str, until: float, now: float) -> bool:
        return await self._write(lambda c: status.acquire_lease(c, name, owner, until, now))

    async def release_lease(self, name: str, owner: str) -> None:
        await self._write(lambda c: status.release_lease(c, name, owner))

    async def lease_holder(self, name: str, now: float) -> str | None:
        return await self._read(lambda c: status.lease_holder(c, name, now))

    async def delayed_mail(
        self, since: float, until: float, now: float, threshold: float
    ) -> list[DelayedMail]:
        return await self._read(
            lambda c: _snapshot(c, lambda c: status.delayed_mail(c, since, until, now, threshold))
        )

    async def queue_health(self, now: float) -> tuple[int, float | None]:
        return await self._read(lambda c: status.queue_health(c, now))

    async def account_queue(self, account_id: int, address: str) -> AccountQueue:
        return await self._read(
            lambda c: _snapshot(c, lambda c: status.account_queue(c, account_id, address))
        )

    async def deliver_status_notice(
        self, key: str, account_id: int, message: bytes, now: float
    ) -> bool:
        mailbox_id = await self._write(
            lambda c: status.deliver_notice(c, key, account_id, message, now)
        )
        if mailbox_id is None:
            return False
        self.hub.publish((mailbox_id,))
        return True
