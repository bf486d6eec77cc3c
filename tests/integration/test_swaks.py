"""A real mail client against a real node: swaks (plus smtplib where swaks has no option for it).

swaks exit codes (man swaks): 0 ok, 23 MAIL refused, 24 no RCPT accepted, 28 AUTH failed.
"""

from __future__ import annotations

import random
import smtplib
import subprocess
import uuid
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, require_command, start_node
from tests.nodeproc import NodeProcess

UTF8_USER = "jörg@example.test"
_addresses = count(40)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = start_node(
        tmp_path_factory,
        extra_config="[limits]\nauth_failure_delay = 0.05\n",
        users={UTF8_USER: PASSWORD},
    )
    yield proc
    proc.stop()


def swaks(node: NodeProcess, *args: str, listener: str = "smtp") -> tuple[int, str]:
    command = require_command("swaks")
    result = subprocess.run(
        [
            command,
            "--server",
            f"127.0.0.1:{node.ports[listener]}",
            "--helo",
            "client.test",
            "--timeout",
            "20",
            *args,
        ],
        capture_output=True,
        timeout=60,
    )
    return result.returncode, (result.stdout + result.stderr).decode("utf-8", "replace")


def after_trace(stored: bytes, first_header: bytes) -> bytes:
    """The message as the client sent it: everything from its first header on."""
    return stored[stored.index(first_header) :]


def test_plain_message_to_mx(node: NodeProcess) -> None:
    subject = f"swaks plain {uuid.uuid4()}"
    before = len(node.inbox("alice@example.test"))
    rc, out = swaks(
        node,
        "--from",
        "sender@remote.test",
        "--to",
        "alice@example.test",
        "--header",
        f"Subject: {subject}",
        "--body",
        "Hello from swaks.",
    )
    assert rc == 0, out
    assert "250 2.0.0 OK queued as" in out
    stored = node.inbox("alice@example.test")[before:]
    assert len(stored) == 1
    assert f"Subject: {subject}\r\n".encode() in stored[0]
    assert b"\r\n\r\nHello from swaks.\r\n" in stored[0]
    assert stored[0].startswith(b"Return-Path: <sender@remote.test>\r\nDelivered-To: alice@")
    assert b" with ESMTP id " in stored[0]


def test_pipelined_message(node: NodeProcess) -> None:
    before = len(node.inbox("bob@example.test"))
    rc, out = swaks(
        node, "--pipeline", "--from", "s@remote.test", "--to", "bob@example.test,team@example.test"
    )
    assert rc == 0, out
    # bob is named and is in team: one copy for him per transaction.
    assert len(node.inbox("bob@example.test")) == before + 1


def test_eight_bit_body(node: NodeProcess, tmp_path: Path) -> None:
    body = (
        "Grüße aus Köln, naïve café, 日本語のテキスト, emoji 📬\r\n".encode()
        + b"latin-1 byte \xe9 and a lone \xff stay as they are\r\n"
    )
    message = (
        b"From: s@remote.test\r\nTo: alice@example.test\r\nSubject: eight bit\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body
    )
    wire = tmp_path / "eight.wire"
    wire.write_bytes(message + b".")  # --no-data-fixup: we send the terminator; swaks adds CRLF
    before = len(node.inbox("alice@example.test"))
    rc, out = swaks(
        node,
        "--from",
        "s@remote.test",
        "--to",
        "alice@example.test",
        "--data",
        f"@{wire}",
        "--no-data-fixup",
    )
    assert rc == 0, out
    stored = node.inbox("alice@example.test")[before:]
    assert len(stored) == 1
    assert after_trace(stored[0], b"From: s@remote.test") == message


def test_eight_bit_mime_parameter(node: NodeProcess) -> None:
    """BODY=8BITMIME (RFC 6152) with smtplib: swaks has no option for the parameter."""
    message = b"Subject: 8bitmime\r\n\r\nD\xc3\xa9j\xc3\xa0 vu \xe2\x80\x94 fine\r\n"
    before = len(node.inbox("bob@example.test"))
    with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as client:
        client.ehlo("client.test")
        assert client.has_extn("8bitmime")
        refused = client.sendmail(
            "s@remote.test", ["bob@example.test"], message, mail_options=["BODY=8BITMIME"]
        )
    assert refused == {}
    stored = node.inbox("bob@example.test")[before:]
    assert len(stored) == 1
    assert after_trace(stored[0], b"Subject: 8bitmime") == message


def test_smtputf8_addresses(node: NodeProcess) -> None:
    """SMTPUTF8 (RFC 6531) with smtplib: swaks cannot send the MAIL parameter."""
    message = "From: sénder@rémote.test\r\nTo: JÖRG@example.test\r\nSubject: ünïcode\r\n\r\nhi\r\n"
    before = len(node.inbox(UTF8_USER))
    with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as client:
        client.ehlo("client.test")
        assert client.has_extn("smtputf8")
        refused = client.sendmail(
            "sénder@rémote.test",
            ["JÖRG@example.test"],
            message.encode(),
            mail_options=["SMTPUTF8", "BODY=8BITMIME"],
        )
    assert refused == {}
    stored = node.inbox(UTF8_USER)[before:]
    assert len(stored) == 1
    assert stored[0].startswith(
        "Return-Path: <sénder@rémote.test>\r\nDelivered-To: jörg@example.test\r\n".encode()
    )
    assert b" with UTF8SMTP id " in stored[0]
    assert after_trace(stored[0], "From: sénder".encode()) == message.encode()


def test_smtputf8_unknown_user(node: NodeProcess) -> None:
    with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as client:
        client.ehlo("client.test")
        assert client.mail("s@remote.test", ["SMTPUTF8"])[0] == 250
        code, text = client.rcpt("jürgen@example.test")
    assert (code, text[:5]) == (550, b"5.1.1")


def _ten_megabytes(seed: int = 12) -> bytes:
    """10 MiB of mail text that exercises transparency: dot lines, long lines, 8-bit bytes."""
    rng = random.Random(seed)
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 .,-"
    table = bytes(alphabet[i % len(alphabet)] for i in range(256))
    lines = [
        b"From: big@remote.test",
        b"To: alice@example.test",
        b"Subject: ten megabytes",
        b"",
    ]
    size = sum(len(line) + 2 for line in lines)
    n = 0
    while size < 10 * 1024 * 1024:
        n += 1
        if n % 997 == 0:
            line = b"." * (n % 3 + 1) + b" leading dots"
        elif n % 1009 == 0:
            line = b"x" * 998
        elif n % 1013 == 0:
            line = "8-bit: ümlaut €".encode()
        else:
            line = rng.randbytes(rng.randint(0, 120)).translate(table)
        lines.append(line)
        size += len(line) + 2
    return b"\r\n".join(lines) + b"\r\n"


def _dot_stuffed(message: bytes) -> bytes:
    """The DATA bytes for `message` (RFC 5321 4.5.2), without the final CRLF swaks adds."""
    lines = message.split(b"\r\n")[:-1]
    return b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines) + b"."


def test_ten_megabyte_message(node: NodeProcess, tmp_path: Path) -> None:
    message = _ten_megabytes()
    assert len(message) >= 10 * 1024 * 1024
    wire = tmp_path / "big.wire"
    wire.write_bytes(_dot_stuffed(message))
    before = len(node.inbox("alice@example.test"))
    rc, out = swaks(
        node,
        "--from",
        "big@remote.test",
        "--to",
        "alice@example.test",
        "--data",
        f"@{wire}",
        "--no-data-fixup",
        "--suppress-data",
    )
    assert rc == 0, out
    assert "221 2.0.0" in out  # the session ended cleanly: nothing left over after the data
    stored = node.inbox("alice@example.test")[before:]
    assert len(stored) == 1
    assert after_trace(stored[0], b"From: big@remote.test") == message


@pytest.mark.parametrize("listener", ["submission", "submissions"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_submission_right_password(node: NodeProcess, listener: str, mechanism: str) -> None:
    tls = "--tls" if listener == "submission" else "--tls-on-connect"
    subject = f"submitted {uuid.uuid4()}"
    before = len(node.inbox("bob@example.test"))
    rc, out = swaks(
        node,
        tls,
        "--auth",
        mechanism,
        "--auth-user",
        "alice@example.test",
        "--auth-password",
        PASSWORD,
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test,friend@remote.test",
        "--header",
        f"Subject: {subject}",
        listener=listener,
    )
    assert rc == 0, out
    assert "235 2.7.0" in out
    stored = node.inbox("bob@example.test")[before:]
    assert len(stored) == 1
    assert f"Subject: {subject}".encode() in stored[0]
    assert b" with ESMTPSA id " in stored[0]
    remote = [i for i in node.queue() if i.recipient == "friend@remote.test"]
    assert any(subject.encode() in node.queue_body(i.queue_id) for i in remote)


@pytest.mark.parametrize("listener", ["submission", "submissions"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_submission_wrong_password(node: NodeProcess, listener: str, mechanism: str) -> None:
    tls = "--tls" if listener == "submission" else "--tls-on-connect"
    rc, out = swaks(
        node,
        tls,
        "--local-interface",
        f"127.0.0.{next(_addresses)}",
        "--auth",
        mechanism,
        "--auth-user",
        "alice@example.test",
        "--auth-password",
        "not the password",
        "--from",
        "alice@example.test",
        "--to",
        "friend@remote.test",
        listener=listener,
    )
    assert rc == 28, out
    assert "535 5.7.8" in out
    assert "MAIL FROM" not in out


def test_submission_without_auth_refused(node: NodeProcess) -> None:
    rc, out = swaks(
        node,
        "--tls",
        "--from",
        "alice@example.test",
        "--to",
        "friend@remote.test",
        listener="submission",
    )
    assert rc == 23, out
    assert "530 5.7.0" in out


def test_submission_foreign_sender_refused(node: NodeProcess) -> None:
    rc, out = swaks(
        node,
        "--tls-on-connect",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@example.test",
        "--auth-password",
        PASSWORD,
        "--from",
        "bob@example.test",
        "--to",
        "friend@remote.test",
        listener="submissions",
    )
    assert rc == 23, out
    assert "553 5.7.1" in out


def test_relaying_refused(node: NodeProcess) -> None:
    rc, out = swaks(node, "--from", "spammer@remote.test", "--to", "victim@elsewhere.test")
    assert rc == 24, out
    assert "550 5.7.1" in out
    assert not [i for i in node.queue() if i.recipient == "victim@elsewhere.test"]


def test_unknown_user(node: NodeProcess) -> None:
    rc, out = swaks(node, "--from", "s@remote.test", "--to", "nobody@example.test")
    assert rc == 24, out
    assert "550 5.1.1" in out
