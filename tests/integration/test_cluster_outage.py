"""PostgreSQL goes away under two nodes and comes back.

The nodes run on a second private PostgreSQL cluster of this test's own (scripts/ensure-postgres
with MAILFORT_PG_DIR/MAILFORT_PG_PORT), so stopping it disturbs no other test. While it is down,
senders spread over both nodes get temporary refusals only (SMTP 4xx: `451 4.3.0` at DATA or a
`421`), never a `250` for a message that was not committed, and IMAP answers `NO [UNAVAILABLE]`.
When it returns the nodes recover by themselves: mail is accepted again, logins work, IDLE on one
node hears about deliveries on the other again, and every message that got `250` is stored
exactly once.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_support import (
    PgSchema,
    base_dsn,
    cluster_node,
    free_ports,
    pg_ctl,
    second_postgres,
    send,
    unexpected_tracebacks,
    wait_until,
)
from tests.conftest import PASSWORD, RawImap
from tests.nodeproc import NodeProcess

ALICE = "alice@example.test"
BOB = "bob@example.test"


@pytest.fixture
def outage_pg() -> Iterator[tuple[Path, int, str]]:
    base_dsn()  # skips without the test database: this test needs the same PostgreSQL install
    directory = Path(tempfile.mkdtemp(prefix="mailfort-pg-outage-"))
    (port,) = free_ports(1)
    try:
        dsn = second_postgres(directory, port)
        yield directory, port, dsn
    finally:
        with contextlib.suppress(Exception):  # stopped already
            pg_ctl(directory, "stop", "-m", "immediate")
        shutil.rmtree(directory, ignore_errors=True)


def message(mid: str, to: str = ALICE) -> bytes:
    return (
        f"From: x@remote.test\r\nTo: {to}\r\nMessage-ID: <{mid}@outage.test>\r\n"
        f"Subject: {mid}\r\n\r\nbody {mid}\r\n"
    ).encode()


class Senders:
    """Threads sending one message per transaction to alternating nodes, recording each answer."""

    def __init__(self, nodes: list[NodeProcess], threads: int = 4) -> None:
        self.nodes = nodes
        self.answers: dict[str, tuple[int, bytes, float]] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(n,)) for n in range(threads)]

    def run(self, number: int) -> None:
        n = 0
        while not self.stopping.is_set():
            node = self.nodes[(number + n) % len(self.nodes)]
            mid = f"t{number}-{n}"
            code, text = send(node.ports["smtp"], [ALICE], message(mid), timeout=20)
            with self.lock:
                self.answers[mid] = (code, text, time.monotonic())
            n += 1
            time.sleep(0.02)

    def __enter__(self) -> Senders:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(60)

    def since(self, t0: float) -> list[tuple[int, bytes]]:
        with self.lock:
            return [(c, x) for c, x, at in self.answers.values() if at >= t0]


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_nodes_answer_temporary_errors_while_postgres_is_down_and_recover(
    outage_pg: tuple[Path, int, str], tmp_path: Path
) -> None:
    directory, port, dsn = outage_pg
    schema = PgSchema.create(dsn)
    schema.provision(users={ALICE: PASSWORD, BOB: PASSWORD})
    a = cluster_node(tmp_path, "node-a", schema.url)
    b = cluster_node(tmp_path, "node-b", schema.url)
    imap: RawImap | None = None
    try:
        a.start()
        b.start()
        imap = RawImap(a.ports["imaps"], timeout=30)
        imap.login()
        _, done = imap.command("SELECT INBOX")
        assert done.startswith(b"a OK"), done

        with Senders([a, b]) as senders:
            wait_until(lambda: len(senders.since(0)) >= 20, 20, "mail before the outage")
            pg_ctl(directory, "stop", "-m", "fast")
            stopped = time.monotonic()
            time.sleep(1.0)  # sessions that were mid-commit finish failing
            # IMAP: a selected session and a new login both get NO [UNAVAILABLE].
            data = message("imap-append")
            imap.send(b"p APPEND INBOX {%d+}\r\n%s\r\n" % (len(data), data))
            _, done = imap.until_tagged("p")
            assert done.startswith(b"p NO [UNAVAILABLE]"), done
            _, done = imap.command("UID STORE 1 +FLAGS (\\Flagged)", tag="s")
            assert done.startswith(b"s NO [UNAVAILABLE]"), done
            with RawImap(b.ports["imaps"], timeout=30) as fresh:
                _, done = fresh.command(f'LOGIN "{BOB}" "{PASSWORD}"', tag="l")
                assert done.startswith(b"l NO [UNAVAILABLE]"), done
            time.sleep(2.0)
            during = senders.since(stopped + 1.0)
            restarting = time.monotonic()
            second_postgres(directory, port)  # starts the same cluster again
            restarted = time.monotonic()
            recovered = wait_until(
                lambda: next(
                    (
                        at
                        for c, _, at in list(senders.answers.values())
                        if c == 250 and at > restarted
                    ),
                    None,
                ),
                30,
                "a 250 after PostgreSQL came back",
            )
            time.sleep(1.0)
        print(
            f"outage: {restarting - stopped:.1f} s down, first 250 {recovered - restarted:.2f} s"
            f" after restart; {len(during)} answers while down:"
            f" {dict(Counter(c for c, _ in during))}"
        )
        assert a.proc is not None and a.proc.poll() is None
        assert b.proc is not None and b.proc.poll() is None
        # While down: temporary answers only, and at least some (the senders kept going).
        assert during, "no sender got an answer while PostgreSQL was down"
        for code, text in during:
            assert 400 <= code < 500, (code, text)
        assert any(code in (421, 451) for code, _ in during)
        assert any(t.startswith(b"4.3.0") for c, t in during if c == 451) or any(
            c == 421 for c, _ in during
        ), during
        permanent = [(m, c, t) for m, (c, t, _) in senders.answers.items() if c >= 500]
        assert not permanent, permanent

        # Recovered by themselves: sessions on both nodes, IMAP logins, IDLE across nodes.
        _, done = imap.command("NOOP", tag="n")
        assert done.startswith(b"n OK"), done
        with RawImap(b.ports["imaps"], timeout=30) as fresh:
            fresh.login(BOB)
        idle_after_outage(a, b)

        # Every message that got 250 is stored exactly once; the queue is empty.
        wait_until(lambda: not schema.queue(), 20, "an empty queue")
        (stored,) = schema.mailboxes([ALICE]).values()
        counts = Counter(
            m.decode()
            for data in stored
            for m in re.findall(rb"^Message-ID: <([^@>]+)@outage\.test>", data, re.M)
        )
        accepted = [m for m, (c, _, _) in senders.answers.items() if c == 250]
        assert len(accepted) > 20
        missing = [m for m in accepted if counts[m] == 0]
        twice = [m for m in accepted if counts[m] > 1]
        assert not missing, f"250 but not stored: {missing}"
        assert not twice, f"250 and stored more than once: {twice}"
        refused_but_stored = [
            m for m, (c, _, _) in senders.answers.items() if c != 250 and counts[m]
        ]
        print(
            f"outage: {len(accepted)} accepted, all stored once; refused but stored"
            f" (commit outcome unknown to the node): {refused_but_stored}"
        )
        for node in (a, b):
            assert not unexpected_tracebacks(node.log()), unexpected_tracebacks(node.log())
    finally:
        if imap is not None:
            imap.sock.close()
        a.stop()
        b.stop()


def idle_after_outage(a: NodeProcess, b: NodeProcess) -> None:
    """IDLE on A reports a delivery on B again once A's listening connection is back."""
    with RawImap(a.ports["imaps"], timeout=30) as raw:
        raw.login(BOB)
        untagged, _ = raw.command("SELECT INBOX")
        exists = int(next(r for r in untagged if r.endswith(b" EXISTS\r\n")).split()[1])
        deadline = time.monotonic() + 20
        n = 0
        while True:
            raw.send("i IDLE\r\n")
            assert raw.response().startswith(b"+ ")
            code, _ = send(b.ports["smtp"], [BOB], message(f"idle-{n}", BOB))
            assert code == 250
            exists += 1
            raw.sock.settimeout(1.0)
            try:
                line = raw.response()
                assert line == b"* %d EXISTS\r\n" % exists, line
                got = True
            except TimeoutError:
                got = False
            raw.sock.settimeout(30)
            raw.send("DONE\r\n")
            untagged, done = raw.until_tagged("i")
            assert done.startswith(b"i OK"), done
            if got:
                return
            assert time.monotonic() < deadline, "IDLE across nodes never came back after the outage"
            n += 1
