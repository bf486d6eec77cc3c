"""Helpers for cluster tests: mailfort nodes sharing one PostgreSQL schema.

`MAILFORT_TEST_PG_DSN` names the test database (`make test` starts a private cluster and sets it);
without it the cluster tests skip. Each test module gets a schema of its own (`PgSchema`), nodes
reach it through `search_path` in their store URL, and accounts are provisioned through the store
API as `NodeProcess.provision` does for SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import smtplib
import subprocess
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailfort.auth.passwords import hash_password
from mailfort.store.postgres import PostgresStore
from mailfort.store.records import QueueItem
from tests.nodeproc import NodeProcess, free_ports

PG_DSN_ENV = "MAILFORT_TEST_PG_DSN"
ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def base_dsn() -> str:
    dsn = os.environ.get(PG_DSN_ENV)
    if not dsn:
        pytest.skip(f"{PG_DSN_ENV} is not set (make test starts PostgreSQL and sets it)")
    return dsn


def run_async(coro_factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, inside or outside an event loop."""

    async def main() -> T:
        return await coro_factory()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def pg_exec(dsn: str, sql: str) -> Any:
    import asyncpg

    async def run() -> Any:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            return await conn.execute(sql)
        finally:
            await conn.close()

    return run_async(run)


def with_search_path(dsn: str, schema: str) -> str:
    sep = "&" if urllib.parse.urlsplit(dsn).query else "?"
    return f"{dsn}{sep}search_path={schema}"


@dataclass
class PgSchema:
    """A schema of its own in the test database; `url` is what a node's `[store] url` says."""

    admin_dsn: str
    name: str

    @classmethod
    def create(cls, admin_dsn: str) -> PgSchema:
        name = f"mf_cluster_{secrets.token_hex(5)}"
        pg_exec(admin_dsn, f"CREATE SCHEMA {name}")
        return cls(admin_dsn, name)

    @property
    def url(self) -> str:
        return with_search_path(self.admin_dsn, self.name)

    def drop(self) -> None:
        # The database may be gone already (the outage test stops its own cluster).
        with contextlib.suppress(Exception):
            pg_exec(self.admin_dsn, f"DROP SCHEMA IF EXISTS {self.name} CASCADE")

    # -- the store, from the outside ------------------------------------------------------
    def query(self, fn: Callable[[PostgresStore], Awaitable[T]]) -> T:
        async def run() -> T:
            store = PostgresStore(self.url, pool_size=2, listen=False)
            await store.open()
            try:
                return await fn(store)
            finally:
                await store.close()

        return run_async(run)

    def provision(
        self,
        *,
        domains: tuple[str, ...] = ("example.test",),
        users: dict[str, str] | None = None,
        aliases: tuple[tuple[str, str], ...] = (),
    ) -> None:
        async def fn(store: PostgresStore) -> None:
            existing = set(await store.list_domains())
            for domain in domains:
                if domain not in existing:
                    await store.add_domain(domain)
            for address, password in (users or {}).items():
                if await store.get_account(address) is None:
                    await store.add_account(address, hash_password(password))
            for source, target in aliases:
                await store.add_alias(source, target)

        self.query(fn)

    def mailboxes(self, addresses: list[str], mailbox: str = "INBOX") -> dict[str, list[bytes]]:
        """Every message of each user's mailbox, as the bytes IMAP/POP3 serve."""

        async def fn(store: PostgresStore) -> dict[str, list[bytes]]:
            found: dict[str, list[bytes]] = {}
            for address in addresses:
                account = await store.get_account(address)
                assert account is not None, address
                box = await store.get_mailbox(account.id, mailbox)
                assert box is not None
                rows = await store.messages(account.id, box.id)
                bodies = await store.bodies(account.id, box.id, [r.uid for r in rows])
                found[address] = [bodies[r.uid] for r in rows]
            return found

        return self.query(fn)

    def uids(self, address: str, mailbox: str = "INBOX") -> list[int]:
        async def fn(store: PostgresStore) -> list[int]:
            account = await store.get_account(address)
            assert account is not None
            box = await store.get_mailbox(account.id, mailbox)
            assert box is not None
            return [r.uid for r in await store.messages(account.id, box.id)]

        return self.query(fn)

    def queue(self) -> list[QueueItem]:
        return self.query(lambda store: store.queue_items())


LISTENERS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")


def cluster_node(
    root: Path,
    name: str,
    url: str,
    *,
    fixed: bool = False,
    lease_seconds: float = 5.0,
    delivery: str | None = None,
    extra_config: str = "",
) -> NodeProcess:
    """A node (not started) on the schema `url`, with its own name and data dir; `fixed` gives it
    fixed ports, so it can be restarted where its clients expect it."""
    kwargs: dict[str, Any] = {}
    if delivery is not None:
        kwargs["delivery"] = delivery
    node = NodeProcess(
        root / name,
        name=name,
        store_url=url,
        lease_seconds=lease_seconds,
        extra_config=extra_config,
        fixed_ports=dict(zip(LISTENERS, free_ports(len(LISTENERS)), strict=True)) if fixed else {},
        **kwargs,
    )
    node.write_config()
    return node


def send(
    port: int,
    recipients: list[str],
    body: bytes,
    sender: str = "sender@remote.test",
    timeout: float = 15.0,
) -> tuple[int, bytes]:
    """One SMTP transaction on the MX port: the reply to DATA, or the first refusal (a 421
    greeting included); 0 when the connection failed without an answer."""
    client = smtplib.SMTP(timeout=timeout)
    try:
        code, text = client.connect("127.0.0.1", port)
        if code != 220:
            return code, text
        code, text = client.ehlo("client.test")
        if code != 250:
            return code, text
        code, text = client.mail(sender)
        if code != 250:
            return code, text
        for rcpt in recipients:
            code, text = client.rcpt(rcpt)
            if code not in (250, 251):
                return code, text
        code, text = client.data(body)
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()
        return code, text
    except smtplib.SMTPResponseException as exc:
        return exc.smtp_code, exc.smtp_error
    except (smtplib.SMTPException, OSError) as exc:
        return 0, repr(exc).encode()
    finally:
        client.close()


def second_postgres(directory: Path, port: int) -> str:
    """Start (or reuse) another private PostgreSQL cluster through scripts/ensure-postgres."""
    env = dict(os.environ, MAILFORT_PG_DIR=str(directory), MAILFORT_PG_PORT=str(port))
    out = subprocess.run(
        [str(ROOT / "scripts" / "ensure-postgres")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if out.returncode != 0:
        raise RuntimeError(f"ensure-postgres failed: {out.stderr}")
    return out.stdout.strip()


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    return found[-1]


def pg_ctl(directory: Path, *args: str) -> None:
    """pg_ctl on a cluster started by `second_postgres`, as its owner (root runs it as postgres)."""
    cmd = [str(_pg_bin() / "pg_ctl"), "-D", str(directory / "data"), *args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


# asyncpg's pool logs its own reconnect attempts with a traceback while the database is down;
# that is the library's noise, not an unhandled error of ours.
_TOLERATED = ("asyncpg.pool Failed to restore the pool connection floor",)


def unexpected_tracebacks(log: str) -> list[str]:
    """The log lines that introduce each traceback the node logged, except tolerated ones."""
    lines = log.splitlines()
    found = []
    for n, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            before = lines[n - 1] if n else ""
            if not any(t in before for t in _TOLERATED):
                found.append(before)
    return found
