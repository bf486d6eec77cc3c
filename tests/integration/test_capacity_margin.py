"""The live margin of a running node: `/metrics`, `mailfort cluster status`, the log line.

The profile prices one small message at 10 CPU-seconds, so three accepted messages in the 30-s
window are a CPU's worth of work: two nodes needed, one live, the margin gone. With k=0 the idle
node is fine (one node, one needed) and the mail makes it LOW. On PostgreSQL two nodes share the
demand and the count of live nodes.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.capacity_support import profile
from tests.cluster_support import PgSchema, base_dsn, cluster_node, send
from tests.nodeproc import NodeProcess
from tests.polling import wait_for

ALICE = "alice@example.test"


def config(root: Path, k: int, **capacity: str) -> str:
    root.mkdir(parents=True, exist_ok=True)
    data = profile(
        accept=[
            {"name": "small", "max_bytes": 16384, "measured_bytes": 5000, "cpu_seconds": 10.0},
            {"name": "large", "max_bytes": 0, "measured_bytes": 2000000, "cpu_seconds": 20.0},
        ]
    )
    (root / "profile.json").write_text(json.dumps(data))
    lines = "".join(f"{key} = {value}\n" for key, value in capacity.items())
    return (
        "[cluster]\nheartbeat_seconds = 0.5\n"
        "[status]\nevaluate_seconds = 0.5\nwindow_seconds = 30\n"
        f'[capacity]\nprofile = "profile.json"\nspare_nodes = {k}\n{lines}'
    )


def spare_gauge(node: NodeProcess) -> tuple[float, float] | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{node.ports['http']}/metrics") as answer:
        text = answer.read().decode()
    spare = re.search(r"^mailfort_cluster_spare_nodes (\S+)$", text, re.M)
    low = re.search(r"^mailfort_cluster_margin_low (\S+)$", text, re.M)
    if spare is None or low is None or spare.group(1) == "NaN":
        return None
    return float(spare.group(1)), float(low.group(1))


def margin_line(node: NodeProcess) -> str:
    done = node.cli("cluster", "status")
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1]


def message(n: int) -> bytes:
    return f"From: a@remote.test\r\nTo: {ALICE}\r\nSubject: {n}\r\n\r\nhello\r\n".encode()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path, http=True, extra_config=config(tmp_path, k=0))
    proc.write_config()
    proc.cli("domain", "add", "example.test")
    proc.add_user(ALICE)
    proc.start()
    yield proc
    proc.stop()


def test_load_beyond_the_margin_shows_everywhere(node: NodeProcess) -> None:
    assert wait_for(lambda: spare_gauge(node), what="a margin on /metrics") == (0.0, 0.0)
    assert margin_line(node).startswith("margin: 0 spare nodes at current load (needs 1 of 1;")
    for n in range(3):
        assert send(node.ports["smtp"], [ALICE], message(n))[0] == 250
    wait_for(lambda: spare_gauge(node) == (-1.0, 1.0), what="the margin gone on /metrics")
    assert margin_line(node).startswith(
        "margin: LOW — -1 spare node at current load (needs 2 of 1;"
    )
    wait_for(lambda: "event=capacity_margin_low spare=-1 k=0" in node.log(), what="the log line")
    assert node.log().count("event=capacity_margin_low") == 1
    shown = node.cli("status", "show").stdout
    assert "capacity margin: LOW" in shown and "operator only" in shown


def test_without_a_profile_the_margin_is_unknown(tmp_path: Path) -> None:
    proc = NodeProcess(tmp_path)
    proc.write_config()
    # No node, no cluster, no margin line; a node and no profile: unknown, never an error.
    assert proc.cli("cluster", "status").stdout.strip() == "no nodes registered"
    proc.start()
    try:
        assert margin_line(proc) == "margin: unknown (no [capacity] profile)"
        shown = proc.cli("status", "show").stdout
        assert "capacity margin: unknown (no [capacity] profile)" in shown
    finally:
        proc.stop()


def test_a_bad_profile_is_said_and_the_node_serves(tmp_path: Path) -> None:
    proc = NodeProcess(tmp_path, http=True, extra_config=config(tmp_path, k=1))
    proc.write_config()
    (tmp_path / "profile.json").write_text("{not json")
    proc.start()
    try:
        lines = [x for x in proc.log().splitlines() if "capacity_profile_unusable" in x]
        assert len(lines) == 1 and "not JSON" in lines[0]
        assert margin_line(proc).startswith("margin: unknown (profile unusable:")
        assert send(proc.ports["smtp"], ["postmaster@config-domain.test"], message(0))[0] != 0
    finally:
        proc.stop()


def test_two_nodes_on_postgresql_share_the_margin(tmp_path: Path) -> None:
    schema = PgSchema.create(base_dsn())
    schema.provision(users={ALICE: "x"})
    extra = config(tmp_path, k=1, max_utilisation="1.0")
    nodes = [cluster_node(tmp_path, name, schema.url, extra_config=extra) for name in ("a", "b")]
    for n in nodes:
        n.http = True
        n.write_config()
        (n.root / "profile.json").write_text((tmp_path / "profile.json").read_text())
        n.start()
    try:
        # Idle: two live nodes, one needed, one spare (= k: not low).
        wait_for(lambda: margin_line(nodes[0]).startswith("margin: 1 spare node "), what="idle")
        # Six messages of 10 CPU-s in 30 s: 2 CPU-s/s, two nodes of 1 CPU at 1.0 needed.
        for n in range(6):
            assert send(nodes[n % 2].ports["smtp"], [ALICE], message(n))[0] == 250
        wait_for(lambda: spare_gauge(nodes[1]) == (0.0, 1.0), what="the margin down to 0")
        assert margin_line(nodes[1]).startswith("margin: LOW — 0 spare nodes at current load")
    finally:
        for n in nodes:
            n.stop()
        schema.drop()
