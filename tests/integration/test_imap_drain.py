"""Draining a node: IMAP sessions hear BYE, idle or idling, and the node exits 0."""

from __future__ import annotations

import imaplib
import time
from pathlib import Path

from tests.conftest import PASSWORD, client_tls
from tests.nodeproc import NodeProcess


def test_sigterm_says_bye_to_imap_sessions(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path)
    node.provision(users={"alice@example.test": PASSWORD})
    node.start()
    try:
        quiet = imaplib.IMAP4_SSL("127.0.0.1", node.ports["imaps"], ssl_context=client_tls())
        quiet.login("alice@example.test", PASSWORD)
        idling = imaplib.IMAP4_SSL("127.0.0.1", node.ports["imaps"], ssl_context=client_tls())
        idling.login("alice@example.test", PASSWORD)
        idling.select("INBOX")
        tag = idling._new_tag().decode()
        idling.send(f"{tag} IDLE\r\n".encode())
        assert idling.readline().startswith(b"+")
        started = time.monotonic()
        assert node.stop() == 0
        assert time.monotonic() - started < 8, "draining waited for idle sessions"
        assert b"* BYE [UNAVAILABLE]" in idling.readline()
        assert quiet.readline().startswith(b"* BYE [UNAVAILABLE]")
    finally:
        node.stop()
    assert "Traceback" not in node.log()
