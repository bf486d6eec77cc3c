"""The suite's witnesses can tell a served customer from a harmed one (else every attack test
would pass by default)."""

from __future__ import annotations

import time

from tests.adversarial.conftest import assert_served, assert_unharmed, served


def test_a_quiet_node_serves_the_customer(hostile_node) -> None:  # type: ignore[no-untyped-def]
    with served(hostile_node) as report:
        time.sleep(3)
    assert_unharmed(hostile_node, report)
    assert {o.operation for o in report.outcomes} == {"smtp", "imap", "pop3", "http"}
    assert len(hostile_node.inbox("alice@example.test")) >= report.count("smtp")


def test_the_customer_notices_a_node_that_stops_answering(fresh_node) -> None:  # type: ignore[no-untyped-def]
    node = fresh_node()
    with served(node, timeout=2.0) as report:
        time.sleep(1.5)
        node.proc.send_signal(19)  # SIGSTOP: every connection now waits for nothing
        time.sleep(3)
        node.proc.send_signal(18)  # SIGCONT
    try:
        assert_served(report)
    except AssertionError:
        return
    raise AssertionError(f"a stopped node went unnoticed: {report.summary()}")
