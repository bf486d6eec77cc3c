"""Attacks through submission and on mailbox quotas, while the customer (alice) is served.

The attacker is a customer of the provider too: bob@example.test, logged in correctly from
attacker addresses. He tries to send as alice (header From:/Sender: tricks, an AUTH PLAIN
authorization identity), to start TLS inside TLS, and to stuff a small mailbox past its quota
from the MX, with and without declaring the size, one connection after another and many at once.
"""

from __future__ import annotations

import base64
import smtplib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from tests.adversarial.conftest import PASSWORD, assert_unharmed, attacker, served
from tests.adversarial.customer import client_tls
from tests.nodeproc import NodeProcess

KB = 1024
ATTACKER = "bob@example.test"
CUSTOMER = "alice@example.test"


# Long enough for the customer to do a few rounds of everything while the attack runs.
ATTACK_SECONDS = 3.0


def submission(node: NodeProcess, n: int, *, login: bool = True) -> smtplib.SMTP_SSL:
    client = smtplib.SMTP_SSL(
        "127.0.0.1",
        node.ports["submissions"],
        context=client_tls(),
        timeout=10,
        source_address=(attacker(n), 0),
    )
    client.ehlo("attacker.test")
    if login:
        client.login(ATTACKER, PASSWORD)
    return client


def forged(head: bytes) -> tuple[bytes, str]:
    subject = f"forged {uuid.uuid4()}"
    return head + f"\r\nSubject: {subject}\r\n\r\nyour account is locked\r\n".encode(), subject


# The header lines bob tries, each with the reply he must get.
FORGERIES = [
    (b"From: Alice <alice@example.test>", b"5.7.1 From: <alice@example.test>"),
    (b"From: alice+billing@example.test", b"5.7.1 From: <alice+billing@example.test>"),
    (b"From: bob@example.test\r\nSender: alice@example.test", b"5.7.1 Sender:"),
    (b"From: alice@example.test, bob@example.test\r\nSender: bob@example.test", b"5.7.1 From:"),
    (b"From: bob@example.test, alice@example.test", b"5.6.0 A From: header with several"),
    (b"From: bob@example.test\r\nFrom: alice@example.test", b"5.6.0 Message has more"),
    (b"From: bob@example.test\r\nFrom : alice@example.test", b"5.6.0 Malformed"),
    (b"From: bob@example.test\nFrom: alice@example.test", b"5.6.0 Malformed"),
    (b"From: bob@example.test <alice@example.test>", b"5.6.0 Cannot parse"),
    (b"From: =?us-ascii?q?alice?=@example.test", b"5.6.0 Cannot parse"),
    (b"From: Team:;", b"5.6.0 Cannot parse"),
    (b"Subject: who wrote this?", b"5.6.0 Message has no From:"),
]


def test_a_customer_cannot_send_as_another(hostile_node: NodeProcess) -> None:
    node = hostile_node
    subjects = []
    with served(node) as report:
        for n, (head, reply) in enumerate(FORGERIES, start=1):
            data, subject = forged(head)
            subjects.append(subject)
            with submission(node, n) as client:
                assert client.mail(ATTACKER)[0] == 250
                assert client.rcpt(CUSTOMER)[0] == 250
                code, text = client.data(data)
                assert (code, text[: len(reply)]) == (550, reply), (head, text)
                # His own name still works in the same session.
                own, _ = forged(b"From: Bob <bob@example.test>")
                assert client.sendmail(ATTACKER, [CUSTOMER], own) == {}
    stored = node.inbox(CUSTOMER)
    assert not any(s.encode() in m for s in subjects for m in stored)
    assert_unharmed(node, report)


def test_an_authorization_identity_gives_no_one_elses_rights(hostile_node: NodeProcess) -> None:
    node = hostile_node
    with served(node) as report:
        deadline = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < deadline:
            with submission(node, 21, login=False) as client:
                token = f"{CUSTOMER}\0{ATTACKER}\0{PASSWORD}".encode()
                code, text = client.docmd("AUTH", "PLAIN " + base64.b64encode(token).decode())
                assert (code, text[:5]) == (535, b"5.7.8"), text
                code, text = client.mail(CUSTOMER)
                assert (code, text[:5]) == (530, b"5.7.0"), text
        # Refused before the password is checked, it is no failed login: bob is not throttled.
        with submission(node, 21) as client:
            assert client.mail(ATTACKER)[0] == 250
    assert_unharmed(node, report)


def test_starttls_inside_tls_starts_no_second_handshake(hostile_node: NodeProcess) -> None:
    node = hostile_node
    with served(node) as report:
        deadline = time.monotonic() + ATTACK_SECONDS
        ports = ("submission", "submissions", "smtp")
        n = 0
        while time.monotonic() < deadline or n < len(ports):
            port = ports[n % len(ports)]
            n += 1
            if port == "submissions":
                client: smtplib.SMTP = submission(node, 40, login=False)
            else:
                client = smtplib.SMTP(
                    "127.0.0.1", node.ports[port], timeout=10, source_address=(attacker(40), 0)
                )
                client.ehlo("attacker.test")
                assert client.starttls(context=client_tls())[0] == 220
            with client:
                code, text = client.docmd("STARTTLS")
                assert (code, text[:5]) == (503, b"5.5.1"), (port, text)
                assert client.noop()[0] == 250  # the same TLS session goes on
    assert_unharmed(node, report)


def small_mailbox(node: NodeProcess, quota: int) -> str:
    return node.add_user(f"small-{uuid.uuid4().hex[:8]}@example.test", quota)


def stuffing(size: int) -> bytes:
    line = b"x" * 76 + b"\r\n"
    return b"From: junk@remote.test\r\nSubject: stuffing\r\n\r\n" + line * (size // len(line))


def stuff(node: NodeProcess, n: int, victim: str, data: bytes, *, declare: bool) -> list[int]:
    """One connection, three messages to `victim` over the MX; each final reply code."""
    codes = []
    with smtplib.SMTP(
        "127.0.0.1", node.ports["smtp"], timeout=10, source_address=(attacker(n), 0)
    ) as client:
        client.ehlo("attacker.test")
        for _ in range(3):
            options = [f"SIZE={len(data)}"] if declare else []
            assert client.mail("junk@remote.test", options)[0] == 250
            code, _ = client.rcpt(victim)
            if code == 250:
                code, _ = client.data(data)
            codes.append(code)
            if code != 250:
                client.rset()
    return codes


def test_quota_stuffing_stops_at_the_quota(hostile_node: NodeProcess) -> None:
    """64 KB quota. Before, every message was taken while the mailbox was below its quota: a
    200 KB one into the last 20 KB, and many at once past it. Now at most the quota is stored,
    whether the size is declared or not, one connection or twelve at once."""
    node = hostile_node
    quota = 64 * KB
    with served(node) as report:
        # Without SIZE: one 200 KB message into a nearly full mailbox.
        victim = small_mailbox(node, 300 * KB)
        assert stuff(node, 60, victim, stuffing(280 * KB), declare=False)[0] == 250
        codes = stuff(node, 60, victim, stuffing(200 * KB), declare=False)
        assert codes == [452, 452, 452], codes
        assert node.used_bytes(victim) <= 300 * KB
        # Many at once, without and with SIZE: 12 connections x 3 messages of 10 KB.
        for declare in (False, True):
            victim = small_mailbox(node, quota)
            data = stuffing(10 * KB)
            with ThreadPoolExecutor(12) as pool:
                runs = [
                    pool.submit(stuff, node, 70 + n, victim, data, declare=declare)
                    for n in range(12)
                ]
                codes = [code for run in runs for code in run.result()]
            taken = codes.count(250)
            assert 1 <= taken <= quota // (10 * KB), codes
            assert set(codes) <= {250, 452}, codes
            assert node.used_bytes(victim) <= quota
            assert len(node.inbox(victim)) == taken
    assert_unharmed(node, report)
