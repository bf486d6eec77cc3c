"""A node SIGKILLed while a remote server holds the reply to the final dot.

The remote server (the test's SMTP sink) has the whole message but has not answered; the node
dies with the item leased. After a restart, once the lease has expired, the item is claimed again
and delivered. The sink then holds the message at most twice (SMTP's known duplicate after a lost
reply, RFC 5321 6.1) and at least once, and the queue ends empty: nothing is lost.

Each lost lease may add one copy, and only one: a message whose deliverer dies twice in turn, each
time after sending it, reaches the server three times (the "third copy" the cluster chaos test
saw, where a survivor's takeover of a dead node's item was in flight when the next node was
killed), and no more.
"""

from __future__ import annotations

import smtplib
import time
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, client_tls
from tests.nodeproc import NodeProcess
from tests.smtpsink import Sink

ALICE = "alice@example.test"


def _sink_delivery(sink: Sink) -> str:
    return (
        'dns_nameservers = ["127.0.0.1:9"]\n'
        "retry_base = 0.3\nretry_max = 1.0\n"
        f'[delivery.transports]\n"*" = "127.0.0.1:{sink.port}"\n'
    )


def _submit(node: NodeProcess, body: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", node.ports["submission"], timeout=30) as client:
        client.starttls(context=client_tls())
        client.login(ALICE, PASSWORD)
        client.sendmail(ALICE, ["far@away.test"], body)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_killed_mid_delivery_is_delivered_after_the_lease_expires(tmp_path: Path) -> None:
    sink = Sink().start()
    node = NodeProcess(tmp_path, delivery=_sink_delivery(sink))
    try:
        node.provision(domains=("example.test",), users={ALICE: PASSWORD})
        node.start()
        sink.hold()
        body = (
            f"From: {ALICE}\r\nSubject: kill me\r\nMessage-ID: <kill@example.test>\r\n"
            "\r\nlast words\r\n"
        ).encode()
        _submit(node, body)
        (held,) = sink.wait_for(lambda: sink.received("far@away.test"), what="the held DATA")
        assert not held.answered
        time.sleep(2.0)  # the lease (5 s in test nodes) is renewed while the reply is held
        (item,) = node.queue()
        assert item.lease_owner == "node1" and item.lease_until is not None
        assert item.lease_until > item.received + 5.5  # renewed at least once
        node.kill()
        sink.release()  # its reply goes to a dead connection

        node.start()
        sink.wait_for(lambda: len(sink.received("far@away.test")) >= 2, what="the redelivery")
        # Not taken over before the dead worker's lease expired.
        assert time.time() >= item.lease_until
        deadline = time.monotonic() + 10
        while node.queue() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert node.queue() == []
        time.sleep(0.5)
        copies = sink.received("far@away.test")
        assert 1 <= len(copies) <= 2
        assert all(c.data.endswith(body) for c in copies)
        deadline = time.monotonic() + 10  # the node writes its log in batches
        while "event=remote_delivered" not in node.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "event=remote_delivered" in node.log()
    finally:
        sink.release()
        node.stop()
        sink.stop()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_each_lost_lease_adds_one_copy_and_no_more(tmp_path: Path) -> None:
    sink = Sink().start()
    node = NodeProcess(tmp_path, delivery=_sink_delivery(sink), lease_seconds=2.0)
    try:
        node.provision(domains=("example.test",), users={ALICE: PASSWORD})
        node.start()
        sink.hold()  # every copy stays unanswered until both deaths are over
        body = (
            f"From: {ALICE}\r\nSubject: twice orphaned\r\n"
            "Message-ID: <orphan@example.test>\r\n\r\nagain\r\n"
        ).encode()
        _submit(node, body)
        lost = 0

        def sent(n: int) -> None:
            sink.wait_for(lambda: len(sink.received("far@away.test")) == n, what=f"copy {n}")

        for copy in (1, 2):
            sent(copy)
            (item,) = node.queue()
            assert item.lease_owner == "node1" and (item.lease_until or 0) > time.time()
            node.kill()  # after the data, before the answer: this lease is lost
            lost += 1
            if copy == 1:
                node.start()  # claims the item again once the dead worker's lease expired
        sink.release()  # both answers go to dead connections
        node.start()
        sent(3)
        deadline = time.monotonic() + 10
        while node.queue() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert node.queue() == []
        time.sleep(1.0)  # nothing more arrives: a settled item is never sent again
        copies_at_sink = sink.received("far@away.test")
        assert len(copies_at_sink) == 1 + lost == 3
        assert all(c.data.endswith(body) for c in copies_at_sink)
    finally:
        sink.release()
        node.stop()
        sink.stop()
