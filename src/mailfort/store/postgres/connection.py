"""Connections to PostgreSQL: a pool for work, one listening connection, errors translated.

Every operation runs as one transaction on a pooled connection. Durability is PostgreSQL's:
each connection starts with `synchronous_commit=on`, so COMMIT returns only after the WAL is
flushed; concurrent transactions on other connections share those flushes (PostgreSQL's own group
commit). Deadlocks and serialization failures are retried: the transaction was rolled back, so
running it again cannot apply it twice. A lost connection is not retried for writes (the commit may
have happened); it becomes `StoreUnavailable`, the pool drops its stale connections, and the next
operation reconnects.

Failover: the url may name several servers (`postgresql://u@h1:p1,h2:p2/db`), and every connection
asks for one that takes writes (`target_session_attrs=read-write` unless the url says otherwise), so
after the operator promotes a standby new connections find it, while the old primary, rebuilt as a
standby, is passed over. A node never works on a standby: its reads could be stale. A server that
refuses a write as read-only (a primary fenced read-only, a url that reached a standby) committed
nothing, so the pool drops its connections and the operation is tried once more on a fresh one;
if no server takes writes yet, the operation fails as `StoreUnavailable` (SMTP 451, IMAP NO).

Change notification: after a commit the store publishes the changed mailboxes to its local
`ChangeHub` and hands them to the `Announcer`, which sends them to every other node with one
`pg_notify('mailfort_mailbox:SCHEMA', 'id,id,…')` per batch, outside the transaction: a NOTIFY
inside a transaction takes a database-wide lock until that commit is flushed, which serialized
every delivery's commit (measured: 800–930 commits/s with it, 1,550–1,700 without, 20 writers).
`Listener` feeds the local `ChangeHub` from other nodes' notifications and reconnects by itself.
A node that dies between its commit and its announcement leaves other nodes to notice the change
at their next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeAlias, TypeVar

import asyncpg

from mailfort.errors import (
    AlreadyExists,
    CommitInDoubt,
    NotFound,
    StoreError,
    StoreUnavailable,
)
from mailfort.store.notify import ChangeHub

log = logging.getLogger(__name__)

T = TypeVar("T")
Conn: TypeAlias = asyncpg.Connection
TxFn = Callable[[Conn], Awaitable[T]]

# One channel per schema, so stores in different schemas of one database never wake each other.
CHANNEL = "mailfort_mailbox:"
# Settings every connection starts with; durability must not depend on the server's defaults.
SERVER_SETTINGS = {"synchronous_commit": "on", "application_name": "mailfort"}
_RETRIED = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
# "cannot execute ... in a read-only transaction" / "... during recovery": the server is (or became)
# read-only, e.g. a fenced old primary; no write of the transaction happened.
_READ_ONLY = asyncpg.ReadOnlySQLTransactionError
# How long a write whose COMMIT lost its answer keeps asking whether it committed. An SMTP client
# waits 10 minutes for the answer to the final dot (RFC 5321 4.5.3.2.6); a restart or failover
# is over in seconds.
DOUBT_SECONDS = 30.0
# Which servers a connection accepts when the url does not say (see the module's docstring).
_SESSION_ATTRS = "read-write"
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # A connection the server dropped mid-operation can be left "busy" on the client side:
    # "cannot switch to state N; another operation is in progress" (seen when PostgreSQL stops).
    asyncpg.InternalClientError,
)


def translate(exc: BaseException) -> BaseException:
    """Map driver errors to store errors; leave our own errors alone."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, asyncpg.UniqueViolationError):
        return AlreadyExists(exc.detail or str(exc))
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return NotFound(exc.detail or str(exc))
    if isinstance(exc, _CONNECTION_ERRORS):
        return StoreUnavailable(f"postgresql: {type(exc).__name__}: {exc}")
    if isinstance(exc, asyncpg.PostgresError):
        return StoreUnavailable(f"postgresql: {exc}")
    return exc


# pg_notify payloads are limited to 8000 bytes: this many ids keeps a batch well below it.
_IDS_PER_NOTIFY = 500


def session_attrs(dsn: str) -> str | None:
    """`read-write` unless the url or the environment (libpq's PGTARGETSESSIONATTRS) chose."""
    if "target_session_attrs=" in dsn or os.environ.get("PGTARGETSESSIONATTRS"):
        return None
    return _SESSION_ATTRS


class _Connection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg ships no types
    """Pooled connections hold no session state (no LISTEN, no session locks or settings), so
    handing one back needs no reset query: one round trip less per operation. An open
    transaction is still rolled back by asyncpg itself."""

    def get_reset_query(self) -> str:
        return ""


class Database:
    """A pool of connections running one transaction per call."""

    def __init__(self, dsn: str, *, min_size: int = 2, max_size: int = 20, timeout: float = 10.0):
        self.dsn = dsn
        self._min = min_size
        self._max = max_size
        self.timeout = timeout
        self._pool: asyncpg.Pool | None = None
        self.own_pids: set[int] = set()  # backends of our pool: their NOTIFYs are already published
        self.commits = 0
        self.writing = 0  # write transactions begun and not yet ended (the overload gate reads it)
        self.on_commit: Callable[[float], None] | None = None  # seconds per committed write

    async def connect_one(self) -> Conn:
        try:
            conn: Conn = await asyncpg.connect(
                self.dsn,
                timeout=self.timeout,
                server_settings=dict(SERVER_SETTINGS),
                target_session_attrs=session_attrs(self.dsn),
            )
        except Exception as exc:
            raise translate(exc) from exc
        return conn

    async def open(self) -> None:
        async def init(conn: Conn) -> None:
            pid = conn.get_server_pid()
            self.own_pids.add(pid)
            # Forget it when it closes: the server may give the number to another node's backend.
            conn.add_termination_listener(lambda _c: self.own_pids.discard(pid))

        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self._min,
                max_size=self._max,
                timeout=self.timeout,
                command_timeout=60,
                server_settings=dict(SERVER_SETTINGS),
                init=init,
                connection_class=_Connection,
                max_inactive_connection_lifetime=300,
                target_session_attrs=session_attrs(self.dsn),
            )
        except Exception as exc:
            raise translate(exc) from exc

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 10)
            except (TimeoutError, asyncpg.PostgresError, OSError):
                pool.terminate()

    @property
    def closed(self) -> bool:
        return self._pool is None

    def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreUnavailable("store is closed")
        return self._pool

    async def run(
        self,
        fn: TxFn[T],
        *,
        write: bool = True,
        snapshot: bool = False,
        transaction: bool = True,
        attempts: int = 5,
        confirm: TxFn[bool] | None = None,
    ) -> T:
        """Run `fn` in one transaction; `snapshot`: every statement sees the same commit.

        `transaction=False` is for one read statement, which is a transaction by itself.
        `confirm` answers, on a fresh connection, whether the transaction committed: it is asked
        when the connection broke during COMMIT (a restart or failover can end a session after
        the commit and before its answer), so that a write that happened is not reported as
        failed. Without `confirm`, or without an answer within `DOUBT_SECONDS`, the error is
        `CommitInDoubt`: the caller must not tell its client the write failed."""
        isolation = "repeatable_read" if snapshot else "read_committed"
        for attempt in range(attempts):
            pool = self._get_pool()
            # Waiting for a pooled connection counts: a saturated pool is a slow database.
            started = asyncio.get_running_loop().time()
            self.writing += write
            committing = False
            try:
                async with pool.acquire(timeout=self.timeout) as conn:
                    if not transaction:
                        return await fn(conn)
                    async with conn.transaction(isolation=isolation, readonly=not write):
                        result = await fn(conn)
                        committing = True
                if write:
                    self.commits += 1
                    if self.on_commit is not None:
                        try:
                            self.on_commit(asyncio.get_running_loop().time() - started)
                        except Exception:  # a measuring hook must never fail a commit
                            log.exception("event=commit_observer_failed")
                return result
            except _RETRIED as exc:
                if attempt + 1 == attempts:
                    raise StoreUnavailable(f"postgresql: {exc}") from exc
                await asyncio.sleep(0.005 * (attempt + 1))
            except Exception as exc:
                error = translate(exc)
                stale = isinstance(exc, (*_CONNECTION_ERRORS, _READ_ONLY))
                if stale and self._pool is not None:
                    # The server went away (restart, failover) or takes no writes any more (a
                    # fenced or demoted primary): every pooled connection is stale.
                    await self._pool.expire_connections()
                    # A read is safe to try again on a fresh connection, and so is a write the
                    # server refused as read-only: it committed nothing.
                    again = attempt == 0 and attempt + 1 < attempts
                    if again and (not write or isinstance(exc, _READ_ONLY)):
                        continue
                if committing and isinstance(exc, _CONNECTION_ERRORS):
                    if confirm is None:
                        raise CommitInDoubt(f"postgresql: commit in doubt: {exc!r}") from exc
                    if await self._committed(confirm, exc):
                        return result
                if error is exc:
                    raise
                raise error from exc
            finally:
                self.writing -= write
        raise AssertionError("unreachable")

    async def _committed(self, confirm: TxFn[bool], exc: BaseException) -> bool:
        """Whether a transaction whose COMMIT lost its answer is there; False when it is not
        (it was never committed: the error stands); CommitInDoubt when nobody can tell."""
        deadline = asyncio.get_running_loop().time() + DOUBT_SECONDS
        while True:
            try:
                found = await self.run(confirm, write=False, transaction=False, attempts=1)
            except StoreUnavailable:
                if asyncio.get_running_loop().time() > deadline:
                    raise CommitInDoubt(f"postgresql: commit in doubt after {exc!r}") from exc
                await asyncio.sleep(0.5)
                continue
            log.warning("event=commit_in_doubt committed=%s error=%r", found, exc)
            return found

    async def read(self, fn: TxFn[T], *, snapshot: bool = False) -> T:
        """Several reads in one transaction (one snapshot when asked)."""
        return await self.run(fn, write=False, snapshot=snapshot)

    async def read_one(self, fn: TxFn[T]) -> T:
        """A read that is one statement: no BEGIN/COMMIT round trips around it."""
        return await self.run(fn, write=False, transaction=False)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def fn(c: Conn) -> list[asyncpg.Record]:
            return list(await c.fetch(sql, *args))

        return await self.read_one(fn)


class Listener:
    """One connection that LISTENs for mailbox changes made anywhere and wakes local sessions."""

    def __init__(self, db: Database, hub: ChangeHub) -> None:
        self._db = db
        self._hub = hub
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.received = 0  # notifications from other stores
        self.backend_pids: set[int] = set()  # the listening backend, while connected

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mailfort-pg-listener")
        # Best effort: sessions also poll, so a slow first connection must not block open().
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), self._db.timeout)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_notify(self, conn: object, pid: int, channel: str, payload: object) -> None:
        if pid in self._db.own_pids:
            return  # our own commit: the store published it already
        try:
            mailbox_ids = [int(part) for part in str(payload).split(",")]
        except ValueError:
            return
        self.received += 1
        self._hub.publish(mailbox_ids)

    async def _run(self) -> None:
        delay = 0.1
        while True:
            conn: Conn | None = None
            try:
                conn = await self._db.connect_one()
                self.backend_pids = {conn.get_server_pid()}
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                schema = await conn.fetchval("SELECT current_schema()")
                await conn.add_listener(f"{CHANNEL}{schema}", self._on_notify)
                self._connected.set()
                delay = 0.1
                while not lost.is_set() and not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), 5)
                    if not lost.is_set():
                        # A dead peer does not always close the socket: ask it something.
                        await asyncio.wait_for(conn.execute("SELECT 1"), self._db.timeout)
                log.warning("event=store_listener_lost")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event=store_listener_error error=%r retry_in=%.1f", exc, delay)
            finally:
                self.backend_pids = set()
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class Announcer:
    """Tells other nodes, after commit and in batches, which mailboxes changed."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    def announce(self, mailbox_ids: Iterable[int]) -> None:
        self._pending.update(mailbox_ids)
        if self._pending and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._flush(), name="mailfort-pg-announcer")

    async def _flush(self) -> None:
        # One loop turn: commits completing together go out in one NOTIFY.
        await asyncio.sleep(0)
        while self._pending:
            ids = sorted(self._pending)
            self._pending.clear()
            for i in range(0, len(ids), _IDS_PER_NOTIFY):
                payload = ",".join(str(x) for x in ids[i : i + _IDS_PER_NOTIFY])
                await self._send(payload)

    async def _send(self, payload: str) -> None:
        async def fn(c: Conn) -> None:
            await c.execute(f"SELECT pg_notify('{CHANNEL}' || current_schema(), $1)", payload)

        try:
            await self._db.run(fn, write=False, transaction=False)
        except StoreError as exc:
            # Only a wake-up is lost: other nodes' sessions still poll.
            log.warning("event=store_announce_failed error=%s", exc)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 2)
