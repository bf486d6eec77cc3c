"""`mailfort node drain NAME` on a running node, and `mailfort cluster status` (SQLite store)."""

from __future__ import annotations

import imaplib
import smtplib
import socket
import time
from pathlib import Path

from mailfort.store.sqlite import SqliteStore
from tests.conftest import PASSWORD, client_tls
from tests.nodeproc import NodeProcess
from tests.store.helpers import request

CLUSTER = "\n[cluster]\nheartbeat_seconds = 0.3\ndrain_seconds = 8.0\n"


def _leased_item(node: NodeProcess) -> None:
    """A remote item leased by the node itself for a long while (as if its worker held it)."""

    async def run(store: SqliteStore) -> None:
        await store.accept(request(remote=("far@remote.test",), received=time.time() - 10))
        claimed = await store.claim_remote(node.name, time.time(), 600.0, 10)
        assert len(claimed) == 1

    node._query(run)


def _status(node: NodeProcess) -> dict[str, list[str]]:
    out = node.cli("cluster", "status")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["NODE", "STATE", "LAST-HEARTBEAT", "LEASES"]
    return {line.split()[0]: line.split() for line in lines[1:]}


def _wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_drain_a_running_node(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path, extra_config=CLUSTER)
    node.provision(users={"alice@example.test": PASSWORD})
    _leased_item(node)
    node.start()
    assert node.proc is not None
    try:
        imap = imaplib.IMAP4_SSL("127.0.0.1", node.ports["imaps"], ssl_context=client_tls())
        imap.login("alice@example.test", PASSWORD)
        held_smtp = smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=10)
        held_smtp.ehlo("client.test")

        # Load (connections per protocol, deliveries in flight) arrives with the next heartbeat.
        load = "deliveries=0,imap=1,pop3=0,smtp=1"
        assert _wait_for(lambda: _status(node)["node1"][4] == load, 5)
        row = _status(node)["node1"]
        assert row[1] == "active"
        assert row[3] == "1"  # the lease it holds
        assert f"smtp=127.0.0.1:{node.ports['smtp']}" in row[-1]

        out = node.cli("node", "drain", "node1")
        assert out.returncode == 0, out.stderr
        assert "told to drain" in out.stdout
        assert node.cli("node", "drain", "nobody").returncode == 1

        # The node hears it at its next heartbeat: IMAP sessions get BYE ...
        imap.sock.settimeout(5)
        assert imap.readline().startswith(b"* BYE [UNAVAILABLE]")
        # ... and new clients are told to come back later: the listeners stay open while the
        # held sessions finish, so SMTP says 421 4.3.2, IMAP BYE, POP3 -ERR [SYS/TEMP].
        with socket.create_connection(("127.0.0.1", node.ports["smtp"]), timeout=5) as s:
            assert s.recv(200).startswith(b"421 4.3.2")
        with socket.create_connection(("127.0.0.1", node.ports["imap"]), timeout=5) as s:
            assert s.recv(200).startswith(b"* BYE [UNAVAILABLE]")
        with socket.create_connection(("127.0.0.1", node.ports["pop3"]), timeout=5) as s:
            assert s.recv(200).startswith(b"-ERR [SYS/TEMP]")
        # The held SMTP session may finish; meanwhile the node shows as draining.
        assert _status(node)["node1"][1] == "draining"
        assert node.proc.poll() is None
        assert held_smtp.noop()[0] == 250
        held_smtp.quit()

        assert _wait_for(lambda: node.proc.poll() is not None, 10), "node did not exit"
        assert node.proc.returncode == 0
    finally:
        node.stop()
    log = node.log()
    assert "Traceback" not in log
    assert "event=leases_released node=node1 count=1" in log
    (item,) = node.queue()
    assert item.lease_owner is None and item.lease_until is None
    row = _status(node)["node1"]
    assert row[1] == "gone" and row[3] == "0"


def test_cluster_status_shows_dead_and_restarted_nodes(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path, extra_config=CLUSTER)
    node.provision()
    out = node.cli("cluster", "status")
    assert out.returncode == 0 and out.stdout.strip() == "no nodes registered"
    node.start()
    try:
        assert _status(node)["node1"][1] == "active"
        node.kill()
        # Nobody marks a killed node; three missed heartbeats make it dead.
        assert _wait_for(lambda: _status(node)["node1"][1] == "dead", 5)
        node.start()
        assert _status(node)["node1"][1] == "active"
        assert node.stop() == 0
        assert _status(node)["node1"][1] == "gone"
    finally:
        node.stop()


def test_sigterm_marks_the_node_gone(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path, extra_config=CLUSTER)
    node.provision()
    node.start()
    try:
        assert node.stop() == 0
    finally:
        node.stop()

    async def nodes(store: SqliteStore) -> list[str]:
        return [n.state for n in await store.list_nodes()]

    assert node._query(nodes) == ["gone"]


def test_forget_a_dead_node_but_never_a_live_one(tmp_path: Path) -> None:
    """A node that died and will not come back stops counting as expected (`live nodes` on the
    status page) once an operator forgets it; a live one must be drained instead."""
    node = NodeProcess(tmp_path, extra_config=CLUSTER)
    node.provision(users={"alice@example.test": PASSWORD})
    node.start()
    assert node.proc is not None
    try:
        out = node.cli("node", "forget", "node1")
        assert out.returncode == 1
        assert "only a dead node can be forgotten" in out.stderr
        assert "mailfort node drain node1" in out.stderr
        assert node.cli("node", "forget", "nobody").returncode == 1
        node.proc.kill()
        node.proc.wait()
        assert _wait_for(lambda: _status(node)["node1"][1] == "dead", 10)
        out = node.cli("node", "forget", "node1")
        assert out.returncode == 0, out.stderr
        assert "marked gone" in out.stdout
        assert _status(node)["node1"][1] == "gone"
        assert "gone already" in node.cli("node", "forget", "node1").stdout
        node.start()  # started again, it rejoins
        assert _status(node)["node1"][1] == "active"
    finally:
        node.stop()
