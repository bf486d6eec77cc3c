"""Bad input and abuse against a real node: each gets its proper reply or a clean close, and
the node goes on serving everyone else (every test ends with a normal delivery).

Raw sockets where smtplib would tidy the abuse away (it fixes line endings and refuses long lines).
Two nodes: `limited` (small size, recipient and login limits) and `tight` (few connections, short
timeouts); tests that need a client address of their own bind to another 127.0.0.x.
"""

from __future__ import annotations

import base64
import contextlib
import re
import select
import smtplib
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, client_tls, start_node
from tests.nodeproc import NodeProcess
from tests.polling import wait_for

MAX_SIZE = 8_000_000
MAX_RECIPIENTS = 3
AUTH_FAILURES = 3
AUTH_DELAY = 0.1
IDLE = 1.0
SESSION = 3.0

LIMITED = f"""[limits]
max_message_size = {MAX_SIZE}
max_recipients = {MAX_RECIPIENTS}
auth_failures_per_ip = {AUTH_FAILURES}
auth_failure_window = 60.0
auth_failure_delay = {AUTH_DELAY}
"""
TIGHT = f"""[limits]
max_connections = 3
max_connections_per_ip = 2
max_network_share = 1.0
smtp_idle_timeout = {IDLE}
smtp_session_timeout = {SESSION}
"""

_REPLY = re.compile(rb"^(\d{3})([ -])(.*)$")


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = start_node(tmp_path_factory, extra_config=LIMITED)
    yield proc
    proc.stop()
    assert "Traceback" not in proc.log()


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = start_node(tmp_path_factory, extra_config=TIGHT)
    yield proc
    proc.stop()
    assert "Traceback" not in proc.log()


class Raw:
    """A byte-level SMTP client: sends exactly what it is given, parses replies strictly."""

    def __init__(self, port: int, source: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
        )
        self.buffer = b""

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buffer)
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def reply(self) -> tuple[int, bytes]:
        """One (possibly multi-line) reply; the text of its last line."""
        while True:
            line = self._line()
            match = _REPLY.match(line)
            assert match, f"not an SMTP reply line: {line!r}"
            assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", line), line
            assert b"Traceback" not in line and b"Error: (" not in line, line
            if match[2] == b" ":
                return int(match[1]), match[3]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, line: bytes) -> tuple[int, bytes]:
        self.send(line + b"\r\n")
        return self.reply()

    def closed(self, within: float = 5.0) -> bool:
        """True when the server closes the connection (after any replies already queued).

        A reset counts: a server that drops a client with unread input in its buffer sends RST."""
        self.sock.settimeout(within)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return True

    def greeting(self) -> None:
        code, _ = self.reply()
        assert code == 220

    def start(self, helo: bytes = b"client.test") -> None:
        self.greeting()
        assert self.cmd(b"EHLO " + helo)[0] == 250


def delivered(node: NodeProcess, source: str = "127.0.0.1") -> None:
    """A normal client still gets a normal message through, on a new connection."""
    subject = f"still serving {uuid.uuid4()}".encode()
    with smtplib.SMTP(
        "127.0.0.1", node.ports["smtp"], timeout=10, source_address=(source, 0)
    ) as client:
        body = b"Subject: " + subject + b"\r\n\r\nfine\r\n"
        assert client.sendmail("ok@remote.test", ["bob@example.test"], body) == {}
    assert any(subject in m for m in node.inbox("bob@example.test"))


def enhanced(text: bytes, code: bytes) -> bool:
    return text.startswith(code + b" ")


# -- line lengths ---------------------------------------------------------------------------


@pytest.mark.parametrize("length", [513, 1200, 70_000])
def test_command_line_too_long(limited: NodeProcess, length: int) -> None:
    with Raw(limited.ports["smtp"]) as c:
        c.start()
        code, text = c.cmd(b"NOOP " + b"x" * (length - 5))
        assert code == 500 and enhanced(text, b"5.5.2"), text
        code, text = c.cmd(b"MAIL FROM:<" + b"a" * max(length, 600) + b"@remote.test>")
        assert code == 500 and enhanced(text, b"5.5.2"), text
        # The session survives, and the rest of the long line was not taken for a command.
        assert c.cmd(b"MAIL FROM:<s@remote.test>")[0] == 250
        assert c.cmd(b"RCPT TO:<alice@example.test>")[0] == 250
    delivered(limited)


def test_mail_line_limit_does_not_grow_with_ehlo(limited: NodeProcess) -> None:
    """EHLO allows MAIL room for SIZE and SMTPUTF8 parameters once, not once per EHLO."""
    mail = b"MAIL FROM:<" + b"a" * 560 + b"@remote.test>"
    with Raw(limited.ports["smtp"]) as c:
        c.start()
        for _ in range(15):
            assert c.cmd(b"EHLO client.test")[0] == 250
        code, text = c.cmd(mail)
        assert code == 500, text


def test_text_line_too_long_in_data(limited: NodeProcess) -> None:
    before = len(limited.inbox("alice@example.test"))
    queued = len(limited.queue())
    with Raw(limited.ports["smtp"]) as c:
        c.start()
        assert c.cmd(b"MAIL FROM:<s@remote.test>")[0] == 250
        assert c.cmd(b"RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd(b"DATA")[0] == 354
        c.send(b"Subject: long\r\n\r\nshort\r\n" + b"y" * 1200 + b"\r\nafter\r\n")
        # The reply waits for the end of the data: a client reads no replies in mid-DATA.
        c.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            c.sock.recv(100)
        c.sock.settimeout(10)
        code, text = c.cmd(b".")
        assert code == 500 and enhanced(text, b"5.5.2"), text
        # The transaction is gone: DATA needs a new MAIL and RCPT.
        assert c.cmd(b"DATA")[0] == 503
    assert len(limited.inbox("alice@example.test")) == before
    assert len(limited.queue()) == queued
    delivered(limited)


def test_longest_allowed_text_line_is_accepted(limited: NodeProcess) -> None:
    """998 octets and CRLF (RFC 5321 4.5.3.1.6) are fine, and stored as sent."""
    line = b"z" * 998
    body = b"Subject: longest\r\n\r\n" + line + b"\r\n"
    with smtplib.SMTP("127.0.0.1", limited.ports["smtp"], timeout=10) as client:
        assert client.sendmail("s@remote.test", ["alice@example.test"], body) == {}
    assert limited.inbox("alice@example.test")[-1].endswith(body)


# -- garbage and sequence -------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x00\x00\x00",
        b"\xff\xfe\xfd\xfc",
        b"\x00MAIL FROM:<x@y.test>",
        b"HELO\x00evil.test",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello on the clear port
        b"GET / HTTP/1.1",
        bytes(range(1, 32)).replace(b"\n", b""),
    ],
    ids=["nul", "ff", "nul-mail", "helo-nul", "tls-hello", "http", "controls"],
)
def test_binary_garbage(limited: NodeProcess, garbage: bytes) -> None:
    with Raw(limited.ports["smtp"]) as c:
        c.greeting()
        code, text = c.cmd(garbage)
        assert 500 <= code <= 503, (code, text)
        assert re.match(rb"5\.5\.\d ", text), text
        # Still a working session afterwards.
        assert c.cmd(b"EHLO client.test")[0] == 250
        assert c.cmd(b"QUIT")[0] == 221
        assert c.closed()
    delivered(limited)


def test_garbage_flood_is_cut_off(limited: NodeProcess) -> None:
    with Raw(limited.ports["smtp"]) as c:
        c.start()
        codes = []
        for i in range(10):
            try:
                codes.append(c.cmd(b"XYZZY%d \x00\xff" % i)[0])
            except (EOFError, ConnectionResetError, BrokenPipeError):
                break
        assert codes[0] == 500
        assert codes[-1] == 502  # aiosmtpd's "too many unrecognized commands, goodbye"
        assert len(codes) < 10
        assert c.closed()
    delivered(limited)


def test_random_bytes_without_line_end(limited: NodeProcess) -> None:
    """Junk that never ends a line is bounded by the line limit, not buffered."""
    junk = bytes((i * 151 + 7) % 256 for i in range(200_000)).replace(b"\n", b"")
    with Raw(limited.ports["smtp"]) as c:
        c.greeting()
        c.send(junk + b"\r\n")
        code, text = c.reply()
        assert code == 500, text
        assert c.cmd(b"EHLO client.test")[0] == 250
    delivered(limited)


def test_commands_out_of_order(limited: NodeProcess) -> None:
    with Raw(limited.ports["smtp"]) as c:
        c.greeting()
        code, text = c.cmd(b"MAIL FROM:<s@remote.test>")
        assert code == 503 and enhanced(text, b"5.5.1"), text  # before EHLO
        assert c.cmd(b"EHLO client.test")[0] == 250
        for line in (b"RCPT TO:<alice@example.test>", b"DATA"):
            code, text = c.cmd(line)
            assert code == 503 and enhanced(text, b"5.5.1"), (line, text)
        assert c.cmd(b"MAIL FROM:<s@remote.test>")[0] == 250
        code, text = c.cmd(b"MAIL FROM:<s@remote.test>")
        assert code == 503 and enhanced(text, b"5.5.1"), text  # nested MAIL
        code, text = c.cmd(b"DATA")
        assert code == 503 and enhanced(text, b"5.5.1"), text  # no recipient yet
        assert c.cmd(b"RSET")[0] == 250
        code, text = c.cmd(b"RCPT TO:<alice@example.test>")
        assert code == 503, text  # RSET forgot the sender
        # No AUTH on the MX port (aiosmtpd refuses it in clear text before asking us).
        code, text = c.cmd(b"AUTH PLAIN AGFAYgBj")
        assert code in (503, 538), text
    delivered(limited)


def test_pipelined_session_with_errors(limited: NodeProcess) -> None:
    """Pipelined commands are answered in order, one reply each, bad ones included."""
    before = len(limited.inbox("alice@example.test"))
    with Raw(limited.ports["smtp"]) as c:
        c.greeting()
        c.send(
            b"EHLO client.test\r\nRCPT TO:<alice@example.test>\r\nMAIL FROM:<s@remote.test>\r\n"
            b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<x@elsewhere.test>\r\n"
            b"RCPT TO:<alice@example.test>\r\nDATA\r\n"
        )
        codes = [c.reply()[0] for _ in range(7)]
        assert codes == [250, 503, 250, 550, 550, 250, 354]
        assert c.cmd(b"Subject: piped\r\n\r\nbody\r\n.")[0] == 250
    assert len(limited.inbox("alice@example.test")) == before + 1


def test_pipelined_transactions_back_to_back(limited: NodeProcess) -> None:
    """RFC 2920: a client may send the next transaction right after the final dot, in one
    write; the bytes after the dot are commands, never part of the message."""
    before = len(limited.inbox("alice@example.test"))
    subjects = [f"back to back {i} {uuid.uuid4()}".encode() for i in range(3)]
    head = b"MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
    with Raw(limited.ports["smtp"]) as c:
        c.start()
        c.send(head)
        assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
        for i, subject in enumerate(subjects):
            body = b"Subject: " + subject + b"\r\n\r\n..dot\r\n.\r\n"
            last = i == len(subjects) - 1
            c.send(body + (b"NOOP\r\nQUIT\r\n" if last else head))
            expected = [250, 250, 221] if last else [250, 250, 250, 354]
            assert [c.reply()[0] for _ in expected] == expected
        assert c.closed()
    stored = limited.inbox("alice@example.test")[before:]
    assert [m for m in stored if any(s in m for s in subjects)] == stored
    assert len(stored) == 3 and all(m.endswith(b"\r\n\r\n.dot\r\n") for m in stored)


@pytest.mark.parametrize("path", [b"<@", b"<", b".@[", b"<@[ x"])
def test_paths_that_break_the_address_parser(limited: NodeProcess, path: bytes) -> None:
    with Raw(limited.ports["smtp"]) as c:
        c.start()
        code, text = c.cmd(b"MAIL FROM:" + path)
        assert code == 553 and enhanced(text, b"5.1.3"), text
        assert c.cmd(b"MAIL FROM:<s@remote.test>")[0] == 250
        code, text = c.cmd(b"RCPT TO:" + path)
        assert code == 553 and enhanced(text, b"5.1.3"), text
    assert "Traceback" not in limited.log()
    delivered(limited)


# -- recipients and size --------------------------------------------------------------------


def test_too_many_recipients(limited: NodeProcess) -> None:
    wanted = ["alice@example.test", "bob@example.test", "carol@other.test"]
    extra = ["alice+1@example.test", "postmaster@example.test"]
    before = {a: len(limited.inbox(a)) for a in wanted}
    subject = f"recipients {uuid.uuid4()}".encode()
    with Raw(limited.ports["smtp"]) as c:
        c.start()
        assert c.cmd(b"MAIL FROM:<s@remote.test>")[0] == 250
        for address in wanted:
            assert c.cmd(f"RCPT TO:<{address}>".encode())[0] == 250
        for address in extra:
            code, text = c.cmd(f"RCPT TO:<{address}>".encode())
            assert code == 452 and enhanced(text, b"4.5.3"), text
        assert c.cmd(b"DATA")[0] == 354
        assert c.cmd(b"Subject: " + subject + b"\r\n\r\nx\r\n.")[0] == 250
    for address in wanted:
        stored = limited.inbox(address)
        assert len(stored) == before[address] + 1
        assert subject in stored[-1]
    delivered(limited)


def test_declared_size_over_limit(limited: NodeProcess) -> None:
    with Raw(limited.ports["smtp"]) as c:
        c.start()
        code, text = c.cmd(b"MAIL FROM:<s@remote.test> SIZE=%d" % (MAX_SIZE + 1))
        assert code == 552 and enhanced(text, b"5.3.4"), text
        assert c.cmd(b"MAIL FROM:<s@remote.test> SIZE=%d" % MAX_SIZE)[0] == 250
    delivered(limited)


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def test_message_over_size_while_streaming(limited: NodeProcess) -> None:
    """3x the limit streamed without SIZE: 552 after the data, and the node never holds it.

    The node's peak RSS (VmHWM, reset first) may grow by about one limit (aiosmtpd collects data
    until it passes the limit), never by the three it was sent."""
    assert limited.proc is not None
    pid = limited.proc.pid
    before = len(limited.inbox("alice@example.test"))
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    baseline = _status_kb(pid, "VmRSS")
    line = b"0123456789" * 99 + b"\r\n"
    chunk = line * 1000
    with Raw(limited.ports["smtp"], timeout=60) as c:
        c.start()
        assert c.cmd(b"MAIL FROM:<s@remote.test>")[0] == 250
        assert c.cmd(b"RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd(b"DATA")[0] == 354
        c.send(b"Subject: huge\r\n\r\n")
        sent = 0
        while sent < 3 * MAX_SIZE:
            c.send(chunk)
            sent += len(chunk)
            if sent == len(chunk) * 12:
                delivered(limited)  # others are served while this one streams
        code, text = c.cmd(b".")
        assert code == 552 and enhanced(text, b"5.3.4"), text
        assert c.cmd(b"NOOP")[0] == 250
    peak_growth = (_status_kb(pid, "VmHWM") - baseline) * 1024
    assert peak_growth < 2 * MAX_SIZE, f"node peak RSS grew by {peak_growth} bytes"
    assert not [m for m in limited.inbox("alice@example.test")[before:] if b"huge" in m]
    delivered(limited)


# -- smuggling (RFC 5321 4.1.1.4: only CRLF.CRLF ends DATA) ---------------------------------


@pytest.mark.parametrize(
    ("fake_end", "kept"),
    [
        (b"\n.\n", b"\n.\n"),
        (b"\r.\r", b"\r.\r"),
        (b"\n.\r\n", b"\n.\r\n"),
        (b"\r\n.\n", b"\r\n\n"),  # a line ".<LF>MAIL..." loses its leading dot (4.5.2)
        (b"\r\n.\r", b"\r\n\r"),
        (b"\r.\r\n", b"\r.\r\n"),
    ],
    ids=["lf.lf", "cr.cr", "lf.crlf", "crlf.lf", "crlf.cr", "cr.crlf"],
)
def test_smuggling(limited: NodeProcess, fake_end: bytes, kept: bytes) -> None:
    smuggled = (
        b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
        b"From: admin@example.test\r\nSubject: smuggled\r\n\r\nevil\r\n"
    )
    head = b"From: s@remote.test\r\nSubject: carrier " + fake_end[:2].hex().encode() + b"\r\n\r\nhi"
    alice = len(limited.inbox("alice@example.test"))
    bob = len(limited.inbox("bob@example.test"))
    with Raw(limited.ports["smtp"]) as c:
        c.start()
        assert c.cmd(b"MAIL FROM:<s@remote.test>")[0] == 250
        assert c.cmd(b"RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd(b"DATA")[0] == 354
        c.send(head + fake_end + smuggled + b".\r\nQUIT\r\n")
        replies = []
        while True:
            try:
                replies.append(c.reply()[0])
            except EOFError:
                break
    assert replies == [250, 221]
    stored = limited.inbox("alice@example.test")[alice:]
    assert len(stored) == 1
    assert stored[0][stored[0].index(b"From: s@remote.test") :] == head + kept + smuggled
    assert len(limited.inbox("bob@example.test")) == bob


# -- failed logins --------------------------------------------------------------------------


def _auth_plain(client: smtplib.SMTP, password: str) -> tuple[int, bytes, float]:
    token = base64.b64encode(f"\0alice@example.test\0{password}".encode()).decode()
    started = time.monotonic()
    code, text = client.docmd("AUTH", f"PLAIN {token}")
    return code, text, time.monotonic() - started


def _submission(node: NodeProcess, source: str) -> smtplib.SMTP:
    client = smtplib.SMTP(
        "127.0.0.1", node.ports["submission"], timeout=10, source_address=(source, 0)
    )
    client.ehlo("client.test")
    client.starttls(context=client_tls())
    client.ehlo("client.test")
    return client


def test_auth_failures_delayed_then_refused(limited: NodeProcess) -> None:
    attacker, bystander = "127.0.0.5", "127.0.0.6"
    with _submission(limited, attacker) as client:
        for n in range(1, AUTH_FAILURES + 1):
            code, text, elapsed = _auth_plain(client, f"guess {n}")
            assert (code, text[:5]) == (535, b"5.7.8")
            assert elapsed >= AUTH_DELAY * n * 0.9, (n, elapsed)
        code, text, _ = _auth_plain(client, PASSWORD)
        assert (code, text[:5]) == (454, b"4.7.0")
    # A new connection from the same address is refused too, even with the right password...
    with _submission(limited, attacker) as client:
        code, text, elapsed = _auth_plain(client, PASSWORD)
        assert (code, text[:5]) == (454, b"4.7.0")
    # ...while another address logs in and sends at once.
    with _submission(limited, bystander) as client:
        code, _, elapsed = _auth_plain(client, PASSWORD)
        assert code == 235
        body = b"From: alice@example.test\r\nSubject: ok\r\n\r\n"
        assert client.sendmail("alice@example.test", ["bob@example.test"], body) == {}
    delivered(limited)


def test_auth_call_limit_per_session(limited: NodeProcess) -> None:
    """One session cannot try AUTH without end: past its AUTH budget it is closed.

    Malformed credentials cost no password check and are not counted by the per-address
    throttle, so only the per-session budget stops them."""
    with _submission(limited, "127.0.0.7") as client:
        codes = []
        for _ in range(12):
            try:
                codes.append(client.docmd("AUTH", "PLAIN =")[0])
            except smtplib.SMTPServerDisconnected:
                break
        assert codes == [501] * 10 + [421]
    delivered(limited, source="127.0.0.7")


def test_auth_exchange_line_too_long(limited: NodeProcess) -> None:
    with Raw(limited.ports["submission"], source="127.0.0.8") as c:
        c.start()
        assert c.cmd(b"STARTTLS")[0] == 220
        c.sock = client_tls().wrap_socket(c.sock)
        assert c.cmd(b"EHLO client.test")[0] == 250
        assert c.cmd(b"AUTH LOGIN")[0] == 334
        code, text = c.cmd(base64.b64encode(b"u" * 3000))
        assert code == 500 and enhanced(text, b"5.5.6"), text
        # Still a session: the next command gets its answer (after, at most, one more 500 for
        # the tail of the long line if it arrived late).
        c.send(b"NOOP\r\n")
        code, text = c.reply()
        if code == 500:
            code, text = c.reply()
        assert code == 250, text
    assert "Traceback" not in limited.log()
    delivered(limited)


def test_starttls_then_garbage(limited: NodeProcess) -> None:
    with Raw(limited.ports["submission"], source="127.0.0.9") as c:
        c.start()
        assert c.cmd(b"STARTTLS")[0] == 220
        c.send(b"EHLO this is not a TLS handshake\r\n" * 3)
        assert c.closed()
    assert "Traceback" not in limited.log()
    delivered(limited)


# -- timeouts and connection limits ----------------------------------------------------------


def test_idle_client_is_closed(tight: NodeProcess) -> None:
    with Raw(tight.ports["smtp"]) as c:
        c.start()
        started = time.monotonic()
        code, text = c.reply()
        waited = time.monotonic() - started
        assert code == 421 and enhanced(text, b"4.4.2"), text
        assert c.closed()
    assert IDLE * 0.8 <= waited < IDLE + 2
    delivered(tight)


def test_session_time_limit(tight: NodeProcess) -> None:
    with Raw(tight.ports["smtp"]) as c:
        started = time.monotonic()
        c.start()
        code = 250
        while code == 250 and time.monotonic() - started < SESSION + 3:
            # Busy, never idle: a NOOP every third of the idle timeout, unless the server spoke.
            if select.select([c.sock], [], [], IDLE / 3)[0]:
                code, text = c.reply()
                break
            try:
                code, text = c.cmd(b"NOOP")
            except (EOFError, ConnectionResetError, BrokenPipeError):
                pytest.fail("closed without a reply")
        assert code == 421 and enhanced(text, b"4.4.2"), text
        assert c.closed()
    assert SESSION * 0.9 <= time.monotonic() - started < SESSION + 2
    delivered(tight)


def test_slow_data_is_not_idle(tight: NodeProcess) -> None:
    """Bytes arriving during DATA are activity: a slow upload outlives the idle timeout."""
    before = len(tight.inbox("alice@example.test"))
    with Raw(tight.ports["smtp"]) as c:
        c.start()
        assert c.cmd(b"MAIL FROM:<s@remote.test>")[0] == 250
        assert c.cmd(b"RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd(b"DATA")[0] == 354
        c.send(b"Subject: slow\r\n\r\n")
        for i in range(5):  # 2 idle periods in all, at ~1,000 octets/s: above the minimum rate
            time.sleep(IDLE * 0.4)
            c.send(b"part %d " % i + b"x" * 390 + b"\r\n")
        assert c.cmd(b".")[0] == 250
    assert len(tight.inbox("alice@example.test")) == before + 1


def test_data_slower_than_the_minimum_rate_is_cut_off(tight: NodeProcess) -> None:
    """Postfix's smtpd_min_data_rate: DATA may take the idle time plus a second per 500 octets;
    a client that trickles its message (to hold a connection) is told so and closed, and nothing
    of its message is kept."""
    before = len(tight.inbox("alice@example.test"))
    with Raw(tight.ports["smtp"]) as c:
        c.start()
        assert c.cmd(b"MAIL FROM:<s@remote.test>")[0] == 250
        assert c.cmd(b"RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd(b"DATA")[0] == 354
        started = time.monotonic()
        c.send(b"Subject: trickle\r\n\r\n")
        with contextlib.suppress(OSError):
            for _ in range(int(IDLE * 10)):  # a byte every 0.2 s: never idle, far too slow
                time.sleep(0.2)
                c.send(b"x")
        code, text = c.reply()
        # Cut off for its rate: the idle timer never fired (a byte every 0.2 s) and the session
        # time (SESSION) would end it with another text.
        assert code == 421 and b"4.4.2" in text and b"slowly" in text, text
        assert time.monotonic() - started < SESSION
        assert c.closed()
    assert len(tight.inbox("alice@example.test")) == before
    wait_for(lambda: "event=data_too_slow" in tight.log(), 5, "the log line")


def _hold(port: int, source: str, patience: float = 3.0) -> Raw:
    """A connection past EHLO; waits for slots that earlier tests are still releasing."""
    deadline = time.monotonic() + patience
    while True:
        c = Raw(port, source=source)
        code, text = c.reply()
        if code == 220:
            assert c.cmd(b"EHLO client.test")[0] == 250
            return c
        c.sock.close()
        assert time.monotonic() < deadline, text
        time.sleep(0.1)


def _refused(port: int, source: str) -> bytes:
    with Raw(port, source=source) as c:
        code, text = c.reply()
        assert code == 421, text
        assert c.closed()
        return text


def test_connection_limits(tight: NodeProcess) -> None:
    port = tight.ports["smtp"]
    held = [_hold(port, "127.0.0.1"), _hold(port, "127.0.0.1")]
    try:
        assert enhanced(_refused(port, "127.0.0.1"), b"4.7.0")
        # The submission listeners count against the same per-address bound.
        assert enhanced(_refused(tight.ports["submission"], "127.0.0.1"), b"4.7.0")
        held.append(_hold(port, "127.0.0.2"))
        assert enhanced(_refused(port, "127.0.0.3"), b"4.3.2")
        # Held sessions keep working while others are turned away.
        for c in held:
            assert c.cmd(b"NOOP")[0] == 250
    finally:
        for c in held:
            c.sock.close()
    deadline = time.monotonic() + 3
    while True:
        try:
            delivered(tight)
            break
        except smtplib.SMTPConnectError:
            assert time.monotonic() < deadline, "slots were not released"
            time.sleep(0.1)


def test_one_network_holds_at_most_its_share_of_the_connections(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A machine with a whole /24 cannot take every slot by using many addresses: past its
    network's share it is refused (421 4.7.0, its own doing), and everyone else still gets in."""
    node = start_node(
        tmp_path_factory,
        extra_config="[limits]\nmax_connections = 8\nmax_connections_per_ip = 8\n"
        "max_network_share = 0.25\n",
    )
    port = node.ports["smtp"]
    held: list[Raw] = []
    try:
        held = [_hold(port, "127.0.5.1"), _hold(port, "127.0.5.2")]  # 2 of 8: the share
        text = _refused(port, "127.0.5.3")
        assert enhanced(text, b"4.7.0"), text
        assert enhanced(_refused(node.ports["submission"], "127.0.5.4"), b"4.7.0")
        held.append(_hold(port, "127.0.6.1"))  # another network is served
        for c in held:
            assert c.cmd(b"NOOP")[0] == 250
    finally:
        for c in held:
            c.sock.close()
        node.stop()
    assert "reason=network client=127.0.5.3" in node.log()


def test_idle_sessions_make_room_when_the_node_fills_up(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Postfix's stress mode: while most connection slots are taken, an idle session is closed
    after the short stress timeout, not the usual 300 s, so idle clients cannot hold a node full."""
    node = start_node(
        tmp_path_factory,
        extra_config="[limits]\nmax_connections = 5\nmax_connections_per_ip = 5\n"
        "max_network_share = 1.0\nsmtp_idle_timeout = 300.0\nsmtp_stress_idle_timeout = 1.0\n",
    )
    port = node.ports["smtp"]
    held: list[Raw] = []
    try:
        held = [_hold(port, "127.0.0.1") for _ in range(3)]  # 3 of 5: no stress
        time.sleep(2.5)
        for c in held:
            assert c.cmd(b"NOOP")[0] == 250  # idle for over twice the stress timeout: kept
        idle = list(held)
        newcomer = _hold(port, "127.0.0.1")  # 4 of 5: 80 %, stress
        held.append(newcomer)
        # Idle sessions are closed until the node is below the stress share again: at least
        # one, within a stress period of its last command (plus one of the timer's checks).
        # (All three when their timers fire in one loop turn, before any close is counted.)
        # The newcomer stays busy meanwhile: it is not idle, and a sweep that closes the idle
        # ones in the same loop turn as its own stress timer would otherwise close it too.
        ready: list[socket.socket] = []
        deadline = time.monotonic() + 4.0
        while not ready and time.monotonic() < deadline:
            assert newcomer.cmd(b"NOOP")[0] == 250
            ready, _, _ = select.select([c.sock for c in idle], [], [], 0.3)
        assert ready, "no idle session was closed under stress"
        for c in idle:
            if c.sock in ready:
                code, text = c.reply()
                assert code == 421 and enhanced(text, b"4.4.2"), text
                assert c.closed()
        # Below the share the stress is over: the newcomer keeps its usual timeout.
        time.sleep(1.5)
        assert newcomer.cmd(b"NOOP")[0] == 250
        delivered(node)  # the node takes mail again
    finally:
        for c in held:
            c.sock.close()
        node.stop()
    assert "event=stress_idle_timeout" in node.log()
