"""PostgreSQL failed over to its synchronous standby, and mailfort nodes that follow it.

The database is a `PgPair` of this module's own: a primary and a synchronous streaming standby.
What must hold: every commit the primary acknowledged is on the standby it fails over to; a store
on the multi-host url finds whichever server takes writes, also when the first one named is a
standby and when the server its pooled connections are on turns read-only; and two nodes under
continuous MX load ride through two failovers and a database restart with `250` or `4xx` answers
only, every `250` stored exactly once and no traceback in their logs.
"""

from __future__ import annotations

import asyncio
import functools
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from mailfort.store.postgres import PostgresStore
from tests.chaos.pgha import PgPair, unavailable_reason
from tests.cluster_support import (
    PgSchema,
    cluster_node,
    pg_exec,
    run_async,
    send,
    unexpected_tracebacks,
    wait_until,
    with_search_path,
)
from tests.conftest import PASSWORD, RawImap
from tests.nodeproc import NodeProcess, free_ports

pytestmark = [pytest.mark.slow]

USERS = ["alice@example.test", "bob@example.test"]
_MID = re.compile(rb"^Message-ID: <([^@>]+)@failover\.test>", re.M)


@pytest.fixture(scope="module")
def pair() -> Iterator[PgPair]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    # Under /tmp: the servers run as the postgres user, who cannot enter pytest's 0700 tmp_path.
    root = Path(tempfile.mkdtemp(prefix="mailfort-pgha-"))
    first, second = free_ports(2)
    pg = PgPair(root, (first, second))
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- the database alone ----------------------------------------------------------------------


@dataclass
class RowWriter:
    """Inserts numbered rows one commit each through the multi-host url; remembers the ones whose
    COMMIT returned."""

    dsn: str
    acked: list[int] = field(default_factory=list)
    failed: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        n = 0
        conn: asyncpg.Connection | None = None
        while not self.stopping.is_set():
            n += 1
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(self.dsn, timeout=5)
                await conn.execute("INSERT INTO acked(n) VALUES ($1)", n)
                self.acked.append(n)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                self.failed += 1
                conn = None
                await asyncio.sleep(0.02)
        if conn is not None:
            await conn.close()


def test_commits_acknowledged_before_a_failover_are_on_the_promoted_server(pair: PgPair) -> None:
    pg_exec(pair.dsn, "CREATE TABLE acked (n INTEGER PRIMARY KEY)")
    writer = RowWriter(pair.dsn)
    thread = threading.Thread(target=writer.run)
    thread.start()
    try:
        before: list[int] = []
        for _ in range(2):
            wait_until(lambda: len(writer.acked) > sum(before) + 50, 20, "commits before the fault")
            before.append(len(writer.acked) - sum(before))
            pair.failover()
        wait_until(lambda: len(writer.acked) > sum(before) + 50, 20, "commits after failing over")
    finally:
        writer.stopping.set()
        thread.join(30)
    stored = {
        int(n)
        for n in pair.sql(pair.primary, "SELECT n FROM acked", database="mailfort_test").split()
    }
    lost = sorted(set(writer.acked) - stored)
    print(
        f"pg pair: {len(writer.acked)} commits acknowledged, {writer.failed} failed;"
        f" failovers: {pair.failovers}"
    )
    assert not lost, f"acknowledged, then lost in a failover: {lost[:20]} ({len(lost)})"


# -- the store on a pair ---------------------------------------------------------------------


def store_url(dsn: str, schema: str) -> str:
    return with_search_path(dsn, schema)


def add_domain(url: str, domain: str, store: PostgresStore | None = None) -> None:
    async def run() -> None:
        own = store or PostgresStore(url, pool_size=2, listen=False)
        if store is None:
            await own.open()
        try:
            await own.add_domain(domain)
        finally:
            if store is None:
                await own.close()

    run_async(run)


def test_a_store_passes_over_a_standby_named_first_in_its_url(pair: PgPair) -> None:
    """A plain multi-host url (no target_session_attrs): the store still works on the primary, not
    on the standby that answers first."""
    schema = PgSchema.create(pair.dsn)
    hosts = f"{pair.host}:{pair.standby.port},{pair.host}:{pair.primary.port}"
    url = store_url(f"postgresql://mailfort@{hosts}/mailfort_test", schema.name)
    add_domain(url, "standby-first.test")
    assert "standby-first.test" in pair.sql(
        pair.primary, f"SELECT name FROM {schema.name}.domains", database="mailfort_test"
    )


def test_a_store_leaves_a_primary_fenced_read_only_for_the_promoted_one(pair: PgPair) -> None:
    """Pooled connections to a server that stopped taking writes are dropped, and the write goes
    to the promoted standby instead of failing until the pool recycles them."""
    schema = PgSchema.create(pair.dsn)
    url = store_url(pair.dsn, schema.name)

    async def run() -> None:
        store = PostgresStore(url, pool_size=2, listen=False)
        await store.open()
        try:
            await store.add_domain("before.test")
            await asyncio.to_thread(pair.fence_read_only)
            await asyncio.to_thread(pair.promote)
            await store.add_domain("after.test")
        finally:
            await store.close()

    try:
        run_async(run)
    finally:
        pair.rebuild_standby()
    names = pair.sql(pair.primary, f"SELECT name FROM {schema.name}.domains", "mailfort_test")
    assert set(names.split()) == {"before.test", "after.test"}


# -- nodes under load ------------------------------------------------------------------------


def message(mid: str, to: str) -> bytes:
    return (
        f"From: x@remote.test\r\nTo: {to}\r\nMessage-ID: <{mid}@failover.test>\r\n"
        f"Subject: {mid}\r\n\r\nbody {mid}\r\n"
    ).encode()


@dataclass
class Senders:
    """Threads sending one message per SMTP transaction to alternating nodes' MX."""

    nodes: list[NodeProcess]
    threads: int = 4
    answers: dict[str, tuple[int, bytes, float, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    workers: list[threading.Thread] = field(default_factory=list)

    def run(self, number: int) -> None:
        n = 0
        while not self.stopping.is_set():
            node = self.nodes[(number + n) % len(self.nodes)]
            to = USERS[n % len(USERS)]
            mid = f"t{number}-{n}"
            code, text = send(node.ports["smtp"], [to], message(mid, to), timeout=20)
            with self.lock:
                self.answers[mid] = (code, text, time.monotonic(), to)
            n += 1
            time.sleep(0.02)

    def __enter__(self) -> Senders:
        self.workers = [threading.Thread(target=self.run, args=(n,)) for n in range(self.threads)]
        for t in self.workers:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for t in self.workers:
            t.join(60)

    def snapshot(self) -> list[tuple[int, bytes, float]]:
        with self.lock:
            return [(c, x, at) for c, x, at, _ in self.answers.values()]

    def first_250_after(self, t0: float) -> float | None:
        return min((at for c, _, at in self.snapshot() if c == 250 and at > t0), default=None)


@dataclass
class Fault:
    name: str
    began: float
    ended: float = 0.0
    writable: float = 0.0  # when a server took writes again
    detail: str = ""


def test_nodes_follow_failovers_and_a_restart_under_mx_load(pair: PgPair, tmp_path: Path) -> None:
    schema = PgSchema.create(pair.dsn)
    schema.provision(users={u: PASSWORD for u in USERS})
    a = cluster_node(tmp_path, "node-a", schema.url)
    b = cluster_node(tmp_path, "node-b", schema.url)
    faults: list[Fault] = []
    try:
        a.start()
        b.start()
        with Senders([a, b]) as senders:
            wait_until(lambda: len(senders.snapshot()) >= 20, 20, "mail before the faults")
            for name in ("failover", "restart", "failover"):
                fault = Fault(name, time.monotonic())
                if name == "failover":
                    record = pair.failover()
                    fault.writable = fault.began + record.writable_after
                    fault.detail = (
                        f"writable after {record.writable_after:.2f} s,"
                        f" synchronous after {record.synchronous_after:.2f} s"
                    )
                else:
                    pair.restart_primary(down_seconds=1.0)
                fault.ended = time.monotonic()
                fault.writable = fault.writable or fault.ended
                faults.append(fault)
                wait_until(
                    functools.partial(senders.first_250_after, fault.ended),
                    20,
                    f"a 250 after {name}",
                )
                time.sleep(1.5)
        answers = senders.snapshot()
        for n, fault in enumerate(faults):
            until = faults[n + 1].began if n + 1 < len(faults) else float("inf")
            refused = [(at, t) for c, t, at in answers if c != 250 and fault.began <= at < until]
            late = Counter(t[:24].decode() for at, t in refused if at > fault.writable)
            last = max((at for at, _ in refused), default=fault.began)
            first = senders.first_250_after(fault.writable) or fault.writable
            print(
                f"{fault.name}: took {fault.ended - fault.began:.2f} s"
                f" ({fault.detail or 'fast stop, 1 s down, start, in sync'});"
                f" {len(refused)} refusals, the last {last - fault.began:.2f} s after it began;"
                f" first 250 {first - fault.writable:.2f} s after the database took writes again,"
                f" refusals after that: {dict(late)}"
            )
        codes = Counter(c for c, _, _ in answers)
        texts = Counter(f"{c} {t[:40].decode(errors='replace')}" for c, t, _ in answers if c != 250)
        print(f"answers: {dict(codes)}; refusals: {dict(texts)}")
        bad = [(c, t) for c, t, _ in answers if not (c == 250 or 400 <= c < 500)]
        assert not bad, f"answers other than 250 or 4xx: {bad[:10]}"
        assert codes[250] > 40

        # Both nodes work on the new primary: IMAP logins and mailboxes answer.
        for node in (a, b):
            assert node.proc is not None and node.proc.poll() is None, node.name
            with RawImap(node.ports["imaps"], timeout=30) as imap:
                imap.login(USERS[0])
                _, done = imap.command("SELECT INBOX")
                assert done.startswith(b"a OK"), done

        # Every 250 stored exactly once.
        wait_until(lambda: not schema.queue(), 30, "an empty queue")
        stored = schema.mailboxes(USERS)
        counts = Counter(
            m.decode() for data in stored.values() for data1 in data for m in _MID.findall(data1)
        )
        with senders.lock:
            sent = dict(senders.answers)
        accepted = [mid for mid, (c, _, _, _) in sent.items() if c == 250]
        missing = [m for m in accepted if counts[m] == 0]
        twice = [m for m in accepted if counts[m] > 1]
        assert not missing, f"250 but not stored: {missing}"
        assert not twice, f"250 and stored more than once: {twice}"
        for node in (a, b):
            found = unexpected_tracebacks(node.log())
            assert not found, f"{node.name} logged tracebacks: {found}"
    finally:
        a.stop()
        b.stop()
