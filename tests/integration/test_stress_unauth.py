"""Stress mode for IMAP and POP3 logins on a real node: while most of a listener's connection
slots are taken, a client that has not logged in is sent away after the short stress timeout
instead of the usual minute, so strangers cannot keep a full node from its users; sessions of
logged-in users are never touched by it (an IMAP IDLE sits idle for half an hour by design)."""

from __future__ import annotations

import imaplib
import poplib
import select
import socket
import time
from collections.abc import Callable

import pytest

from tests.conftest import PASSWORD, client_tls, start_node
from tests.nodeproc import NodeProcess

ALICE = "alice@example.test"
STRESS = 1.0


def _stranger(port: int, greeting: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    assert sock.recv(1000).startswith(greeting)
    return sock


def _sent_away(strangers: list[socket.socket], farewell: bytes) -> int:
    """How many strangers were told `farewell` and closed (waiting up to 4 s for the first)."""
    ready, _, _ = select.select(strangers, [], [], 4.0)
    for sock in ready:
        data = sock.recv(1000)
        assert data.startswith(farewell), data
        assert b"autologout" in data
        assert sock.recv(1000) == b""  # closed
    return len(ready)


def _stress(
    node: NodeProcess,
    port: int,
    greeting: bytes,
    farewell: bytes,
    user_is_served: Callable[[], None],
) -> None:
    strangers = [_stranger(port, greeting) for _ in range(2)]  # + the user's: 3 of 5, no stress
    try:
        time.sleep(STRESS * 2.5)
        # Without stress they keep the usual minute: nothing has been said to them.
        assert select.select(strangers, [], [], 0)[0] == []
        strangers.append(_stranger(port, greeting))  # 4 of 5: 80 %, stress
        # The two old strangers go (at least one: the node is below the share once one left).
        assert _sent_away(strangers[:2], farewell) >= 1
        user_is_served()
    finally:
        for sock in strangers:
            sock.close()
        node.stop()
    assert "event=stress_unauth_timeout" in node.log()


@pytest.mark.timeout(60)
def test_imap_strangers_make_room_but_logged_in_users_stay(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    node = start_node(
        tmp_path_factory,
        extra_config="[limits]\nmax_network_share = 1.0\n"
        f"imap_max_connections = 5\nimap_max_connections_per_ip = 5\n"
        f"imap_stress_unauth_timeout = {STRESS}\n",
    )
    user = imaplib.IMAP4_SSL("127.0.0.1", node.ports["imaps"], ssl_context=client_tls(), timeout=10)
    user.login(ALICE, PASSWORD)

    def served() -> None:
        time.sleep(STRESS * 1.5)  # idle through more than a stress period, logged in
        assert user.noop()[0] == "OK"
        user.logout()

    _stress(node, node.ports["imap"], b"* OK", b"* BYE", served)


@pytest.mark.timeout(60)
def test_pop3_strangers_make_room_but_logged_in_users_stay(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    node = start_node(
        tmp_path_factory,
        extra_config="[limits]\nmax_network_share = 1.0\n"
        f"pop3_max_connections = 5\npop3_max_connections_per_ip = 5\n"
        f"pop3_stress_unauth_timeout = {STRESS}\n",
    )
    user = poplib.POP3_SSL("127.0.0.1", node.ports["pop3s"], context=client_tls(), timeout=10)
    user.user(ALICE)
    user.pass_(PASSWORD)

    def served() -> None:
        time.sleep(STRESS * 1.5)
        assert user.noop().startswith(b"+OK")
        user.quit()

    _stress(node, node.ports["pop3"], b"+OK", b"-ERR", served)
