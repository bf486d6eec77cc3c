"""The per-user submission bound ([submission] messages_per_hour, recipients_per_hour) on real
nodes over smtplib: a user past it gets 451 4.7.1 while others send on, the refusal is logged
with the account and counted in /metrics, and the nodes of a cluster share one count."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster_support import PgSchema, base_dsn, cluster_node
from tests.nodeproc import NodeProcess
from tests.submission_support import PASSWORD, running_node, submit

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"
LIMITS = "\n[submission]\nmessages_per_hour = 3\nrecipients_per_hour = 5\n"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    root = tmp_path_factory.mktemp("limit")
    with running_node(root, [ALICE, BOB, CAROL], extra_config=LIMITS, http=True) as node:
        yield node


def limited(node: NodeProcess, limit: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{node.ports['http']}/metrics", trust_env=False).text
    found = re.search(
        rf'^mailfort_submission_rate_limited_total{{limit="{limit}"}} (\S+)$', text, re.M
    )
    return float(found[1]) if found else 0.0


def test_a_user_past_the_message_bound_gets_451_and_others_send_on(node: NodeProcess) -> None:
    port = node.ports["submissions"]
    for _ in range(3):
        assert submit(port, ALICE, [BOB])[0] == 250
    code, text = submit(port, ALICE, [BOB])
    assert (code, text) == (451, b"4.7.1 Sending rate for this account exceeded, try again later")
    assert submit(port, ALICE, [CAROL])[0] == 451
    # Another account is not touched by alice's bound.
    assert submit(port, BOB, [ALICE])[0] == 250
    assert len(node.inbox(BOB)) == 3
    assert re.search(
        r"event=submission_rate_limited user=alice@example.test limit=messages", node.log()
    )
    assert limited(node, "messages") >= 2


def test_the_recipient_bound_refuses_at_rcpt(node: NodeProcess) -> None:
    port = node.ports["submissions"]
    assert submit(port, CAROL, [ALICE, BOB, "x@remote.test", "y@remote.test"])[0] == 250
    # One more recipient fits the bound of 5; a second one does not.
    code, text = submit(port, CAROL, [ALICE, BOB])
    assert code == 451 and text.startswith(b"4.7.1"), (code, text)
    assert submit(port, CAROL, [ALICE])[0] == 250
    assert submit(port, CAROL, [BOB])[0] == 451
    assert limited(node, "recipients") >= 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, ...]]:
    schema = PgSchema.create(base_dsn())
    root: Path = tmp_path_factory.mktemp("limit-cluster")
    extra = "\n[submission]\nmessages_per_hour = 4\nrecipients_per_hour = 0\n"
    nodes = tuple(cluster_node(root, name, schema.url, extra_config=extra) for name in "ab")
    try:
        schema.provision(users={ALICE: PASSWORD, BOB: PASSWORD})
        for n in nodes:
            n.start()
        yield nodes
    finally:
        for n in nodes:
            n.stop()
        schema.drop()


def test_the_nodes_of_a_cluster_share_one_count(cluster: tuple[NodeProcess, ...]) -> None:
    a, b = (n.ports["submissions"] for n in cluster)
    assert [submit(port, ALICE, [BOB])[0] for port in (a, b, a, b)] == [250] * 4
    assert submit(a, ALICE, [BOB])[0] == 451
    assert submit(b, ALICE, [BOB])[0] == 451
    assert submit(b, BOB, [ALICE])[0] == 250
