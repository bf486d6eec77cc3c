"""What the servers record into the node's metrics: logins per protocol, accepted messages, local
delivery, refusals. A real node in this process (so the test can read `node.metrics`), real
listeners on loopback, real clients (smtplib, imaplib, poplib) in threads."""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import poplib
import smtplib
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailfort.config import load
from mailfort.node import Node
from tests.conftest import PASSWORD
from tests.nodeproc import NodeProcess

ALICE = "alice@example.test"


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def sample(node: Node, name: str, **labels: str) -> float:
    return node.metrics.registry.get_sample_value(name, labels) or 0.0


def test_logins_acceptance_delivery_and_refusals_are_recorded(tmp_path: Path) -> None:
    proc = NodeProcess(tmp_path)
    proc.provision(domains=("example.test",), users={ALICE: PASSWORD})

    async def run() -> None:
        node = Node(load(proc.config_path))
        ports = {x.name: x.port for x in await node.start()}
        call: Callable[..., Any] = asyncio.to_thread
        try:

            def submission() -> None:
                with smtplib.SMTP("127.0.0.1", ports["submission"], timeout=30) as smtp:
                    smtp.starttls(context=_tls())
                    # smtplib tries each mechanism offered (PLAIN, LOGIN): two failed logins.
                    with contextlib.suppress(smtplib.SMTPAuthenticationError):
                        smtp.login(ALICE, "wrong")
                    smtp.login(ALICE, PASSWORD)

            def mx() -> None:
                with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=30) as smtp:
                    smtp.sendmail("a@outside.test", [ALICE], b"Subject: hi\r\n\r\nhello\r\n")

            def imap() -> None:
                client = imaplib.IMAP4_SSL("127.0.0.1", ports["imaps"], ssl_context=_tls())
                client.login(ALICE, PASSWORD)
                client.logout()

            def pop3() -> None:
                client = poplib.POP3_SSL("127.0.0.1", ports["pop3s"], context=_tls())
                client.user(ALICE)
                client.pass_(PASSWORD)
                client.quit()

            for fn in (submission, mx, imap, pop3):
                await call(fn)
            logins = "mailfort_logins_total"
            assert sample(node, logins, protocol="submission", result="success") == 1
            assert sample(node, logins, protocol="submission", result="rejected") == 2
            assert sample(node, logins, protocol="imap", result="success") == 1
            assert sample(node, logins, protocol="pop3", result="success") == 1
            assert sample(node, "mailfort_login_duration_seconds_count", protocol="imap") == 1
            assert sample(node, "mailfort_messages_accepted_total", listener="smtp") == 1
            assert sample(node, "mailfort_accept_to_delivery_seconds_count", kind="local") == 1
            assert sample(node, "mailfort_store_commit_duration_seconds_count") > 0

            # Every slot taken: a new connection is refused at connect, and counted.
            held = [node.gate.try_acquire("smtp") for _ in range(node.gate.limit.limit)]
            assert node.gate.overloaded()

            def refused() -> int:
                try:
                    smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=30)
                except smtplib.SMTPConnectError as exc:
                    return exc.smtp_code
                return 0

            assert await call(refused) == 421
            for token in held:
                assert token is not None
                node.gate.release(token)
            # Refused connections are counted in bulk, a second at most after the refusal.
            refusals = "mailfort_admission_refusals_total"
            for _ in range(40):
                if sample(node, refusals, protocol="smtp", reason="overload"):
                    break
                await asyncio.sleep(0.1)
            assert sample(node, refusals, protocol="smtp", reason="overload") == 1
        finally:
            await node.stop(grace=0)

    asyncio.run(run())
