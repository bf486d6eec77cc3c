"""A stolen account races its hourly submission bound from many connections at once: the bound
is taken by one atomic store upsert per message, so the race passes it by nothing at all."""

from __future__ import annotations

import contextlib
import smtplib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.nodeproc import NodeProcess
from tests.submission_support import connect, message, running_node, transaction

THIEF = "stolen@example.test"
OWNER = "owner@example.test"
CONNECTIONS = 20
BOUND = 5


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    extra = f"\n[submission]\nmessages_per_hour = {BOUND}\nrecipients_per_hour = 0\n"
    with running_node(tmp_path_factory.mktemp("race"), [THIEF, OWNER], extra_config=extra) as node:
        yield node


def test_connections_that_all_passed_mail_and_rcpt_cannot_overshoot_at_data(
    node: NodeProcess,
) -> None:
    """Every connection is checked at MAIL and RCPT while the count is still 0; then all end
    their DATA together. Only the bound's worth is stored."""
    port = node.ports["submissions"]
    ready = threading.Barrier(CONNECTIONS)
    # Logged in one after another: one network may hold only a share of the node's waiting
    # password checks, and this test is about the bound, not about that one.
    clients = [connect(port, THIEF) for _ in range(CONNECTIONS)]

    def one(client: smtplib.SMTP) -> int:
        try:
            assert client.mail(THIEF)[0] == 250
            assert client.rcpt(OWNER)[0] == 250
            ready.wait(timeout=60)
            try:
                return client.data(message(THIEF, [OWNER]))[0]
            except smtplib.SMTPResponseException as exc:
                return exc.smtp_code
        finally:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()
            client.close()

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        codes = list(pool.map(one, clients))
    assert codes.count(250) == BOUND, codes
    assert codes.count(451) == CONNECTIONS - BOUND, codes
    assert len(node.inbox(OWNER)) == BOUND
    # Whatever the thief does next is refused at MAIL, without a message sent.
    with contextlib.closing(connect(port, THIEF)) as client:
        code, text = transaction(client, THIEF, [OWNER])
    assert code == 451 and b"4.7.1" in text
    # The owner of the other account sends as ever.
    with contextlib.closing(connect(port, OWNER)) as client:
        assert transaction(client, OWNER, [THIEF])[0] == 250
