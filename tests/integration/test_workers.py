"""`mailfort serve --workers N`: one node served by several processes on the same ports.

Real processes on a real PostgreSQL schema: both workers join the cluster under their own names,
mail sent to the shared SMTP port lands once, IMAP sessions on the shared port spread over both
workers, `/metrics` adds up every worker, a killed worker is started again while the other one
serves, and SIGTERM or a drain of the node's name stops them all with exit status 0. On SQLite
more than one worker is refused with one line that says why.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailfort.store.postgres import PostgresStore
from tests.cluster_support import PgSchema, base_dsn, cluster_node, send, wait_until
from tests.conftest import PASSWORD, RawImap
from tests.nodeproc import NodeProcess

ALICE = "alice@example.test"
NAME = "multi"
WORKERS = (f"{NAME}-w0", f"{NAME}-w1")
# Heartbeats every half second: a restarted worker and its load show in the store quickly.
FAST = "\n[cluster]\nheartbeat_seconds = 0.5\ndrain_seconds = 5\n"
WORKERS_2 = ("--workers", "2")
STARTED = re.compile(r"event=worker_started worker=(\S+) pid=(\d+)")


@dataclass
class Multi:
    schema: PgSchema
    node: NodeProcess

    def pids(self) -> dict[str, int]:
        """The latest pid of each worker, from the supervisor's log."""
        return {name: int(pid) for name, pid in STARTED.findall(self.node.log())}

    def starts(self, worker: str) -> int:
        return sum(1 for name, _ in STARTED.findall(self.node.log()) if name == worker)

    def nodes(self) -> dict[str, tuple[str, float, dict[str, object]]]:
        """Each cluster member: (state, seconds since its heartbeat, its load)."""

        async def fn(store: PostgresStore) -> dict[str, tuple[str, float, dict[str, object]]]:
            now = await store.clock()
            return {n.name: (n.state, now - n.heartbeat, n.load) for n in await store.list_nodes()}

        return self.schema.query(fn)

    def imap_sessions(self) -> list[int]:
        """Open IMAP connections per worker, as their heartbeats say."""
        nodes = self.nodes()
        return [int(str(nodes[w][2].get("imap", 0))) if w in nodes else 0 for w in WORKERS]

    def serving(self, worker: str) -> bool:
        found = self.nodes().get(worker)
        return found is not None and found[0] == "active" and found[1] < 2


def start_multi(root: Path, *, http: bool = False) -> Multi:
    schema = PgSchema.create(base_dsn())
    schema.provision(users={ALICE: PASSWORD})
    node = cluster_node(root, NAME, schema.url, extra_config=FAST)
    node.workers = 2
    node.http = http
    node.write_config()
    node.start(timeout=60)
    return Multi(schema, node)


@pytest.fixture
def multi(tmp_path: Path) -> Iterator[Multi]:
    started = start_multi(tmp_path, http=True)
    try:
        yield started
    finally:
        started.node.stop()
        started.schema.drop()


def running(pid: int) -> bool:
    """Whether `pid` runs (not gone, not a zombie its new parent has yet to reap)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def message(subject: str) -> bytes:
    return f"From: x@remote.test\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()


def test_both_workers_serve_the_shared_ports_and_every_message_lands_once(multi: Multi) -> None:
    node = multi.node
    assert (
        f"mailfort node '{NAME}' is running as 2 workers ({', '.join(WORKERS)})"
        in (node.root / f"{node.name}.out").read_text()
    )
    found = wait_until(
        lambda: (nodes := multi.nodes()) and all(w in nodes for w in WORKERS) and nodes,
        20,
        "both workers registered",
    )
    assert {name: found[name][0] for name in WORKERS} == {w: "active" for w in WORKERS}
    assert NAME not in found  # the node's own name is not a member: its workers are

    subjects = [f"shared {n}" for n in range(20)]
    for subject in subjects:
        code, text = send(node.ports["smtp"], [ALICE], message(subject))
        assert code == 250, text
    stored = multi.schema.mailboxes([ALICE])[ALICE]
    assert sorted(re.findall(rb"Subject: (.*)\r\n", b"".join(stored))) == sorted(
        s.encode() for s in subjects
    )

    # Sixteen sessions at once on the shared IMAP port: the kernel spreads them over both
    # workers (all on one would happen once in 2^15), and each sees the same mailbox.
    sessions = [RawImap(node.ports["imaps"]) for _ in range(16)]
    try:
        for raw in sessions:
            raw.login(ALICE)
            untagged, done = raw.command("SELECT INBOX")
            assert done.startswith(b"a OK"), done
            assert b"* 20 EXISTS\r\n" in untagged, untagged
        spread = wait_until(
            lambda: sum(counts := multi.imap_sessions()) == 16 and counts,
            10,
            "sixteen IMAP sessions in the workers' heartbeats",
        )
        assert min(spread) > 0, spread
        _, done = sessions[0].command("FETCH 1 BODY[]")
        assert done.startswith(b"a OK"), done
    finally:
        for raw in sessions:
            raw.sock.close()

    # One /metrics for the node, counting what every worker accepted.
    with urllib.request.urlopen(f"http://127.0.0.1:{node.ports['http']}/metrics") as response:
        text = response.read().decode()
    accepted = re.search(r'^mailfort_messages_accepted_total\{listener="smtp"\} (\S+)$', text, re.M)
    assert accepted is not None and float(accepted[1]) == 20, text[:2000]


def test_a_killed_worker_is_restarted_while_the_other_serves(multi: Multi) -> None:
    node = multi.node
    wait_until(lambda: len(multi.pids()) == 2, 20, "two workers started")
    survivor, victim = (multi.pids()[w] for w in WORKERS)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: "event=worker_died worker=multi-w1" in node.log(), 10, "the death logged")
    # Its socket closed with it: every connection now goes to the worker that lives.
    for n in range(10):
        code, text = send(node.ports["smtp"], [ALICE], message(f"during {n}"))
        assert code == 250, text
    wait_until(lambda: multi.starts(WORKERS[1]) == 2, 20, "the worker started again")
    assert multi.pids()[WORKERS[1]] != victim
    wait_until(lambda: multi.serving(WORKERS[1]), 20, "the restarted worker heartbeating")
    assert multi.pids()[WORKERS[0]] == survivor
    assert multi.starts(WORKERS[0]) == 1
    assert len(multi.schema.mailboxes([ALICE])[ALICE]) == 10
    assert node.stop() == 0


def test_sigterm_drains_every_worker_and_exits_0(multi: Multi) -> None:
    wait_until(lambda: all(w in multi.nodes() for w in WORKERS), 20, "both workers registered")
    assert multi.node.stop() == 0
    assert {name: state for name, (state, _, _) in multi.nodes().items()} == {
        w: "gone" for w in WORKERS
    }
    assert "event=worker_died" not in multi.node.log()


def test_draining_the_node_name_drains_every_worker(multi: Multi) -> None:
    wait_until(lambda: all(w in multi.nodes() for w in WORKERS), 20, "both workers registered")
    drained = multi.node.cli("node", "drain", NAME)
    assert drained.returncode == 0, drained.stderr
    assert "2 workers" in drained.stdout, drained.stdout
    assert multi.node.proc is not None
    assert multi.node.proc.wait(timeout=30) == 0
    assert {name: state for name, (state, _, _) in multi.nodes().items()} == {
        w: "gone" for w in WORKERS
    }


def test_a_worker_drained_alone_stays_down_while_the_other_serves(multi: Multi) -> None:
    wait_until(lambda: all(w in multi.nodes() for w in WORKERS), 20, "both workers registered")
    drained = multi.node.cli("node", "drain", WORKERS[1])
    assert drained.returncode == 0, drained.stderr
    wait_until(lambda: "event=worker_drained worker=multi-w1" in multi.node.log(), 20, "drained")
    for n in range(5):
        code, text = send(multi.node.ports["smtp"], [ALICE], message(f"after {n}"))
        assert code == 250, text
    assert multi.starts(WORKERS[1]) == 1
    assert multi.nodes()[WORKERS[1]][0] == "gone"
    assert multi.node.stop() == 0


def test_workers_whose_supervisor_is_killed_drain_themselves(multi: Multi) -> None:
    wait_until(lambda: all(w in multi.nodes() for w in WORKERS), 20, "both workers registered")
    pids = list(multi.pids().values())
    multi.node.kill()
    wait_until(lambda: not any(running(pid) for pid in pids), 30, "the workers gone")
    assert {name: state for name, (state, _, _) in multi.nodes().items()} == {
        w: "gone" for w in WORKERS
    }
    assert multi.node.log().count("event=supervisor_gone") == 2


def test_a_crash_looping_worker_stops_the_node_with_status_1(tmp_path: Path) -> None:
    multi = start_multi(tmp_path)
    try:
        for attempt in range(1, 6):
            wait_until(lambda a=attempt: multi.starts(WORKERS[1]) == a, 60, f"start {attempt}")
            wait_until(lambda: multi.serving(WORKERS[1]), 30, "the worker serving")
            os.kill(multi.pids()[WORKERS[1]], signal.SIGKILL)
        assert multi.node.proc is not None
        assert multi.node.proc.wait(timeout=60) == 1
        assert "event=workers_crash_loop worker=multi-w1" in multi.node.log()
        # The worker that did not crash was drained, not abandoned.
        assert multi.nodes()[WORKERS[0]][0] == "gone"
    finally:
        multi.node.stop()
        multi.schema.drop()


def test_sqlite_refuses_more_than_one_worker_and_serves_with_one(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path, workers=0)  # the default: one per CPU, which is 1 on SQLite
    node.provision()
    refused = subprocess.run(
        [sys.executable, "-m", "mailfort", "--config", str(node.config_path), "serve", *WORKERS_2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "--workers 2 needs PostgreSQL" in refused.stderr
    assert "SQLite has one writer" in refused.stderr
    node.start()
    try:
        text = (node.root / f"{node.name}.out").read_text()
        assert f"mailfort node '{node.name}' is running (data" in text
        code, reply = send(node.ports["smtp"], ["nobody@example.test"], message("x"))
        assert code == 550, reply  # served, by the one node process
    finally:
        assert node.stop() == 0
