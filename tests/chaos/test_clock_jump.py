"""A node whose wall clock jumps (an NTP step, a VM resumed) takes no other node's work.

Two nodes share one PostgreSQL schema. Node B runs under libfaketime, its offset read from a file
the test rewrites while it runs: +10 minutes, then -10 minutes, then back. Only CLOCK_REALTIME
moves, as with a real step; the monotonic clock does not. Mail goes to both nodes under load,
each message to a local user and to an alias that forwards it to a slow SMTP sink, so that
deliveries are leased while B's clock is off. No node dies, so every remote message reaches the
sink exactly once and every local copy is stored once. Meanwhile a POP3 session on A holds a
maildrop that B must not hand to a second session, and B, its clock behind, still counts as a
live node for `mailfort cluster status`.
"""

from __future__ import annotations

import contextlib
import poplib
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cluster_support import (
    PgSchema,
    base_dsn,
    cluster_node,
    send,
    unexpected_tracebacks,
    wait_until,
)
from tests.conftest import PASSWORD, client_tls
from tests.nodeproc import NodeProcess
from tests.smtpsink import Sink

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
USERS = [f"u{n}@example.test" for n in range(2)]
FORWARDS = [(f"fwd{n}@example.test", f"far{n}@remote.test") for n in range(2)]
POP_USER = "pop@example.test"
LEASE = 3.0
JUMP = 600  # seconds
PHASE_SECONDS = 8.0  # > 2 leases: every lease A holds outlives B's view of it
_MID = re.compile(rb"^Message-ID: <([^@>]+)@clock\.test>", re.M)


def ensure_faketime() -> None:
    out = subprocess.run(
        [str(ROOT / "scripts" / "ensure-debian-packages"), "faketime"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0 or not LIBFAKETIME.exists():
        pytest.skip(f"libfaketime is not available: {out.stderr.strip()}")


@dataclass
class Skewed:
    """The offset of node B's wall clock, in a file libfaketime reads again every second."""

    path: Path

    def set(self, seconds: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{seconds:+d}\n")
        tmp.replace(self.path)

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_CACHE_DURATION": "1",
            # A real step moves CLOCK_REALTIME only.
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }


@dataclass
class Load:
    nodes: list[NodeProcess]
    accepted: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (user, remote)
    refused: list[tuple[int, bytes]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def run(self, worker: int) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            node = self.nodes[(worker + n) % len(self.nodes)]
            user = USERS[n % len(USERS)]
            alias, remote = FORWARDS[(worker + n) % len(FORWARDS)]
            mid = f"w{worker}n{n}"
            body = (
                f"From: sender@remote.test\r\nTo: {user}\r\nSubject: {mid}\r\n"
                f"Message-ID: <{mid}@clock.test>\r\n\r\nclock jump {mid}\r\n"
            ).encode()
            code, text = send(node.ports["smtp"], [user, alias], body)
            with self.lock:
                if code == 250:
                    self.accepted[mid] = (user, remote)
                else:
                    self.refused.append((code, text))
            time.sleep(0.2)

    def start(self, workers: int = 3) -> None:
        for w in range(workers):
            t = threading.Thread(target=self.run, args=(w,), daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=30)


@pytest.fixture
def faketime_ready() -> None:
    ensure_faketime()


def _pop3_login(node: NodeProcess) -> poplib.POP3 | bytes:
    """A logged-in POP3 session, or the server's refusal."""
    client = poplib.POP3_SSL("127.0.0.1", node.ports["pop3s"], timeout=15, context=client_tls())
    try:
        client.user(POP_USER)
        client.pass_(PASSWORD)
    except poplib.error_proto as exc:
        with contextlib.suppress(Exception):
            client.quit()
        return exc.args[0] if isinstance(exc.args[0], bytes) else str(exc).encode()
    return client


def _states(node: NodeProcess) -> dict[str, str]:
    out = node.cli("cluster", "status")
    assert out.returncode == 0, out.stderr
    return {
        line.split()[0]: line.split()[1] for line in out.stdout.splitlines()[1:] if line.strip()
    }


@dataclass
class Cluster:
    schema: PgSchema
    sink: Sink
    skew: Skewed
    a: NodeProcess
    b: NodeProcess


@pytest.fixture
def cluster(tmp_path: Path, faketime_ready: None) -> Iterator[Cluster]:
    schema = PgSchema.create(base_dsn())
    sink = Sink(delay=1.0, record_data=True).start()
    skew = Skewed(tmp_path / "offset")
    skew.set(0)
    nodes: list[NodeProcess] = []
    try:
        for name in ("node-a", "node-b"):
            delivery = (
                'dns_nameservers = ["127.0.0.1:9"]\ndns_timeout = 1.0\n'
                "retry_base = 0.3\nretry_max = 1.0\nconnect_timeout = 2.0\ncommand_timeout = 10.0\n"
                f'[delivery.transports]\n"*" = "127.0.0.1:{sink.port}"\n'
            )
            node = cluster_node(
                tmp_path,
                name,
                schema.url,
                lease_seconds=LEASE,
                delivery=delivery,
                extra_config="[cluster]\nheartbeat_seconds = 0.5\nmaildrop_lease_seconds = 3.0\n",
            )
            if name == "node-b":
                node.env = skew.env()
            nodes.append(node)
        schema.provision(users={u: PASSWORD for u in [*USERS, POP_USER]}, aliases=tuple(FORWARDS))
        for node in nodes:
            node.start()
        yield Cluster(schema, sink, skew, nodes[0], nodes[1])
        for node in nodes:
            log = node.log()
            found = unexpected_tracebacks(log)
            at = log.find("Traceback (most recent call last)")
            assert not found, f"{node.name} logged tracebacks: {found}\n{log[at : at + 3000]}"
    finally:
        for node in nodes:
            node.stop()
        sink.stop()
        schema.drop()


def test_a_jumping_clock_takes_no_other_nodes_work(cluster: Cluster) -> None:
    schema, sink, skew, a, b = cluster.schema, cluster.sink, cluster.skew, cluster.a, cluster.b
    load = Load([a, b])
    held = _pop3_login(a)
    assert isinstance(held, poplib.POP3), held
    in_use: list[bytes] = []
    states: list[dict[str, str]] = []
    load.start()
    try:
        wait_until(lambda: len(sink.received()) >= 3, 30, "the first remote deliveries")
        for offset in (JUMP, -JUMP):
            skew.set(offset)
            deadline = time.monotonic() + PHASE_SECONDS
            time.sleep(2.0)  # libfaketime reads the file again within a second
            held.noop()  # the session goes on; its lock is renewed meanwhile
            second = _pop3_login(b)
            if isinstance(second, poplib.POP3):
                second.quit()
                in_use.append(b"a second session got the maildrop")
            states.append(_states(a))
            time.sleep(max(0.0, deadline - time.monotonic()))
        skew.set(0)
        time.sleep(2.0)
    finally:
        load.stop()
        with contextlib.suppress(poplib.error_proto, OSError):
            held.quit()
    assert load.accepted, f"nothing accepted: {load.refused[:5]}"
    assert all(400 <= code < 500 for code, _ in load.refused), load.refused[:5]

    # Judged only after the duplicates: mail a clock-ahead node stamped would wait for its time.
    stuck: list[str] = []
    with contextlib.suppress(AssertionError):
        wait_until(lambda: not schema.queue(), 60, "an empty queue")
    stuck = [f"{i.queue_id}:{i.recipient}" for i in schema.queue()]
    arrived: Counter[str] = Counter()
    for t in sink.received():
        found = _MID.search(t.data or b"")
        if found:
            arrived[found.group(1).decode()] += 1
    twice = {mid: n for mid, n in arrived.items() if n > 1}
    missing = sorted(set(load.accepted) - set(arrived))
    stored: Counter[str] = Counter()
    for bodies in schema.mailboxes(USERS).values():
        for body in bodies:
            found = _MID.search(body)
            if found:
                stored[found.group(1).decode()] += 1
    assert not twice, f"{len(twice)} of {len(load.accepted)} remote messages sent twice: {twice}"
    assert not stuck, f"still queued a minute after the load: {stuck}"
    assert not missing, f"never reached the sink: {missing}"
    assert {m: n for m, n in stored.items() if n != 1} == {}
    assert set(stored) == set(load.accepted)
    assert not in_use, "node B gave a maildrop node A holds to a second session"
    assert all(s.get("node-b") == "active" for s in states), states
