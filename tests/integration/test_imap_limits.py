"""Bad input and abuse against a real IMAP node, with raw TLS sockets (imaplib would tidy the
abuse away): each gets its proper answer or a clean close, never a traceback, and the node goes
on serving everyone else.

One node with small limits. Tests of failed logins bind to another 127.0.0.x so that their
throttling does not touch the other tests' 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import random
import re
import socket
import time
from collections.abc import Iterator

import pytest

from tests.conftest import PASSWORD, RawImap, client_tls, start_node
from tests.nodeproc import NodeProcess
from tests.polling import wait_for

MAX_SIZE = 2_000_000
UNAUTH_TIMEOUT = 3.0
UNAUTH_COMMANDS = 20  # ImapLimits.unauth_commands
FAILURES_PER_IP = 3
FAILURES_PER_ACCOUNT = 4
FAILURE_DELAY = 0.1
MAX_LINE = 65536
LITERAL_GRACE = 1.0

LIMITS = f"""[limits]
max_message_size = {MAX_SIZE}
imap_unauth_timeout = {UNAUTH_TIMEOUT}
imap_max_line = {MAX_LINE}
auth_failures_per_ip = {FAILURES_PER_IP}
auth_failures_per_account = {FAILURES_PER_ACCOUNT}
auth_failure_window = 60.0
auth_failure_delay = {FAILURE_DELAY}
imap_literal_grace = {LITERAL_GRACE}
min_data_rate = 500.0
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = start_node(tmp_path_factory, extra_config=LIMITS)
    yield proc
    proc.stop()
    # Client-caused errors are answered, not logged as crashes.
    assert "Traceback" not in proc.log()


def clean(*responses: bytes) -> None:
    for r in responses:
        assert b"Traceback" not in r and b"Error:" not in r, r


def served(node: NodeProcess) -> None:
    """Someone else still gets a normal session."""
    with RawImap(node.ports["imaps"]) as raw:
        raw.login("bob@example.test")
        _, done = raw.command("SELECT INBOX")
        assert done.startswith(b"a OK"), done


def rss_kib(pid: int) -> int:
    status = open(f"/proc/{pid}/status").read()  # noqa: SIM115 (one read of a proc file)
    return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1])


# -- malformed input ---------------------------------------------------------------------------
MALFORMED = [
    b"a FOO",
    b"a FETCH",
    b"a FETCH 1:x FLAGS",
    b"a FETCH 1 (FLAGS",
    b"a FETCH 1 BODY[1.2.MIME",
    b"a FETCH 99999999999 FLAGS",
    b"a SELECT",
    b'a SELECT "unterminated',
    b"a NOOP extra",
    b"a  NOOP",
    b"a SEARCH (((FROM x",
    b"a SEARCH " + b"(" * 200 + b"ALL" + b")" * 200,
    b"a SEARCH NOT NOT NOT",
    b"a SEARCH SINCE 31-Foo-2020",
    b"a STORE 1 +FLAGS (\\Seen",
    b"a STORE 1 FROBNICATE (\\Seen)",
    b"a UID FOO 1",
    b"a UID",
    b"a COPY 1",
    b"a LIST",
    b"a STATUS INBOX (BOGUS)",
    b"a APPEND INBOX (\\Seen) notaliteral",
    b"a ENABLE",
    b'a ID ("a")',
    b"a FETCH 1 BINARY[TEXT]",
    b"a SEARCH CHARSET",
]
UNTAGGED = [b"", b"+plus NOOP", b"(paren NOOP", b"\x00\x01\x02", b"\xff\xfe NOOP", b"    "]


def test_malformed_commands_get_bad_with_a_reason(node: NodeProcess) -> None:
    with RawImap(node.ports["imaps"]) as raw:
        raw.login()
        raw.command("SELECT INBOX")
        for line in MALFORMED:
            untagged, done = raw.command(line[2:])
            clean(done, *untagged)
            m = re.match(rb"a BAD (?:\[[A-Z-]+\] )?(\S.{3,})\r\n$", done)
            assert m, (line, done)
        for line in UNTAGGED:
            raw.send(line + b"\r\n")
            answer = raw.response()
            clean(answer)
            assert re.match(rb"\* BAD (?:\[[A-Z-]+\] )?\S.{3,}\r\n$", answer), (line, answer)
        _, done = raw.command("NOOP")
        assert done.startswith(b"a OK"), done


def test_binary_garbage_is_answered_and_the_session_survives(node: NodeProcess) -> None:
    garbage = random.Random(3).randbytes(30_000).replace(b"{", b"(")  # no literal markers
    with RawImap(node.ports["imaps"]) as raw:
        raw.login()
        raw.send(garbage + b"\r\nz NOOP\r\n")
        answers = []
        while True:
            answer = raw.response()
            answers.append(answer)
            if answer.startswith(b"z "):
                break
        clean(*answers)
        assert answers[-1].startswith(b"z OK"), answers[-1]
        assert all(b" BAD " in a for a in answers[:-1]), [a for a in answers if b" BAD " not in a]
        assert len(answers) > 50
    served(node)


# -- literals and lines ------------------------------------------------------------------------
def test_literal_over_the_limit_is_refused_before_its_bytes(node: NodeProcess) -> None:
    with RawImap(node.ports["imaps"]) as raw:
        raw.login()
        raw.send(b"a APPEND INBOX {%d}\r\n" % (MAX_SIZE + 1))
        # No "+" continuation: the client must not send the octets (RFC 9051 7.5).
        assert raw.response().startswith(b"a NO [TOOBIG]")
        _, done = raw.command("NOOP", tag="b")
        assert done.startswith(b"b OK"), done
        # One at the limit is accepted (then refused as a message: it is not one).
        raw.send(b"c APPEND INBOX {%d}\r\n" % 1000)
        assert raw.response().startswith(b"+ ")
        raw.send(b"x" * 1000 + b"\r\n")
        _, done = raw.until_tagged("c")
        clean(done)
        # A non-synchronizing literal cannot be refused without losing the stream: BAD, BYE.
        raw.send(b"d APPEND INBOX {%d+}\r\n" % (MAX_SIZE + 1))
        assert raw.response().startswith(b"d BAD [TOOBIG]")
        assert raw.response().startswith(b"* BYE")
        assert raw.closed()
    served(node)


def test_literal_before_login_is_small(node: NodeProcess) -> None:
    """Before login only LOGIN/AUTHENTICATE take literals: no message-sized ones (8 KiB)."""
    with RawImap(node.ports["imaps"]) as raw:
        raw.send(b"a LOGIN {100000}\r\n")
        assert raw.response().startswith(b"a NO [TOOBIG]")
        raw.send(b"b LOGIN {18}\r\n")
        assert raw.response().startswith(b"+ ")
        raw.send(b'alice@example.test "%s"\r\n' % PASSWORD.encode())
        _, done = raw.until_tagged("b")
        assert done.startswith(b"b OK"), done
        # After login the message limit applies.
        raw.send(b"c APPEND INBOX {100000}\r\n")
        assert raw.response().startswith(b"+ ")


@pytest.mark.parametrize("newline", [True, False])
def test_over_long_line_is_refused_and_closed(node: NodeProcess, newline: bool) -> None:
    with RawImap(node.ports["imaps"]) as raw:
        raw.login()
        raw.send(b"a NOOP " + b"x" * (MAX_LINE + 100) + (b"\r\n" if newline else b""))
        answer = raw.response()
        assert answer.startswith(b"a BAD [TOOBIG]"), answer
        assert raw.response().startswith(b"* BYE")
        assert raw.closed()
    served(node)


@pytest.mark.parametrize("command", [b"a AUTHENTICATE PLAIN", b"i IDLE"])
def test_over_long_line_inside_authenticate_or_idle(node: NodeProcess, command: bytes) -> None:
    """The line after a continuation is bounded too, and ends the session instead of leaving
    it deaf to every command after it."""
    with RawImap(node.ports["imaps"]) as raw:
        if command.startswith(b"i "):
            raw.login()
            raw.command("SELECT INBOX")
        raw.send(command + b"\r\n")
        assert raw.response().startswith(b"+")
        raw.send(b"x" * (MAX_LINE + 100) + b"\r\nDONE\r\nb NOOP\r\n")
        answers = [raw.response() for _ in range(3)]
        clean(*answers)
        assert answers[0].startswith((b"a BAD", b"i NO", b"i BAD")), answers
        assert answers[1].startswith(b"* BAD [TOOBIG]"), answers
        assert answers[2].startswith(b"* BYE"), answers
        assert raw.closed()


# -- before login: time and commands -----------------------------------------------------------
def test_unauthenticated_session_is_limited_in_time(node: NodeProcess) -> None:
    authed = RawImap(node.ports["imaps"])
    authed.login()
    silent = RawImap(node.ports["imaps"])
    stranger = RawImap(node.ports["imaps"])
    start = time.monotonic()
    with stranger, silent, authed:
        # Busy is not enough: the limit is on the time to log in, not on silence.
        while time.monotonic() - start < UNAUTH_TIMEOUT + 3:
            try:
                _, done = stranger.command("NOOP")
            except (EOFError, ConnectionError):
                break
            assert done.startswith(b"a OK"), done
            time.sleep(0.3)
        elapsed = time.monotonic() - start
        assert UNAUTH_TIMEOUT - 0.5 < elapsed < UNAUTH_TIMEOUT + 2, elapsed
        clean(stranger.buffer)
        assert silent.response().startswith(b"* BYE")
        assert silent.closed()
        # A logged-in session outlives it (RFC 9051 5.4: at least 30 minutes idle).
        _, done = authed.command("NOOP")
        assert done.startswith(b"a OK"), done


def test_unauthenticated_session_is_limited_in_commands(node: NodeProcess) -> None:
    with RawImap(node.ports["imaps"]) as raw:
        raw.send(b"".join(b"n%d NOOP\r\n" % n for n in range(UNAUTH_COMMANDS + 5)))
        answers = []
        with pytest.raises(EOFError):
            while True:
                answers.append(raw.response())
        oks = [a for a in answers if re.match(rb"n\d+ OK", a)]
        assert len(oks) == UNAUTH_COMMANDS
        assert answers[-1].startswith(b"* BYE"), answers[-1]


def test_unauthenticated_garbage_counts_against_the_command_limit(node: NodeProcess) -> None:
    with RawImap(node.ports["imaps"]) as raw:
        raw.send(b"".join(b"g%d BOGUS\r\n" % n for n in range(UNAUTH_COMMANDS + 5)))
        answers = []
        with pytest.raises(EOFError):
            while True:
                answers.append(raw.response())
        clean(*answers)
        assert len([a for a in answers if b" BAD " in a]) == UNAUTH_COMMANDS
        assert answers[-1].startswith(b"* BYE"), answers[-1]


# -- failed logins -----------------------------------------------------------------------------
def timed_login(raw: RawImap, user: str, password: str) -> tuple[bytes, float]:
    start = time.monotonic()
    _, done = raw.command(f'LOGIN "{user}" "{password}"')
    return done, time.monotonic() - start


def test_failed_logins_are_delayed_then_refused_per_ip(node: NodeProcess) -> None:
    for n in range(FAILURES_PER_IP):
        # A new connection and a different account each time: this is the address's limit.
        with RawImap(node.ports["imaps"], source="127.0.0.2") as raw:
            done, took = timed_login(raw, f"nobody{n}@example.test", "wrong")
            assert done.startswith(b"a NO [AUTHENTICATIONFAILED]"), done
            assert took >= FAILURE_DELAY * (n + 1) * 0.9, (n, took)
    with RawImap(node.ports["imaps"], source="127.0.0.2") as raw:
        done, _ = timed_login(raw, "alice@example.test", PASSWORD)
        assert done.startswith(b"a NO [UNAVAILABLE]"), done
        plain = base64.b64encode(f"\0alice@example.test\0{PASSWORD}".encode())
        _, done = raw.command(b"AUTHENTICATE PLAIN " + plain)
        assert done.startswith(b"a NO [UNAVAILABLE]"), done
    # Another address is not affected.
    with RawImap(node.ports["imaps"], source="127.0.0.3") as raw:
        done, _ = timed_login(raw, "alice@example.test", PASSWORD)
        assert done.startswith(b"a OK"), done


def test_failed_logins_are_refused_per_account(node: NodeProcess) -> None:
    victim = "carol@other.test"
    for n in range(FAILURES_PER_ACCOUNT):
        # One failure from each of several addresses: no address reaches its own limit.
        with RawImap(node.ports["imaps"], source=f"127.0.0.{10 + n}") as raw:
            done, _ = timed_login(raw, victim, "wrong")
            assert done.startswith(b"a NO [AUTHENTICATIONFAILED]"), done
    with RawImap(node.ports["imaps"], source="127.0.0.30") as raw:
        done, _ = timed_login(raw, victim, PASSWORD)
        assert done.startswith(b"a NO [UNAVAILABLE]"), done
        # The address itself is fine: another account logs in from it.
        done, _ = timed_login(raw, "bob@example.test", PASSWORD)
        assert done.startswith(b"a OK"), done


# -- a client that does not read ---------------------------------------------------------------
def test_client_that_never_reads_does_not_grow_server_memory(node: NodeProcess) -> None:
    assert node.proc is not None
    body = b"From: a@remote.test\r\nSubject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 11_000
    count = 40  # 34 MB of mailbox
    with RawImap(node.ports["imaps"]) as raw:
        raw.login()
        raw.command("CREATE Big")
        for _ in range(count):
            raw.send(b"a APPEND Big {%d+}\r\n" % len(body) + body + b"\r\n")
            _, done = raw.until_tagged("a")
            assert done.startswith(b"a OK"), done
    time.sleep(0.5)
    before = rss_kib(node.proc.pid)
    sock = socket.create_connection(("127.0.0.1", node.ports["imaps"]))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow = client_tls().wrap_socket(sock)
    try:
        slow.sendall(b'l LOGIN alice@example.test "%s"\r\ns SELECT Big\r\n' % PASSWORD.encode())
        time.sleep(0.3)
        slow.sendall(b"f FETCH 1:* BODY.PEEK[]\r\n")
        peak = before
        for _ in range(6):
            time.sleep(0.25)
            peak = max(peak, rss_kib(node.proc.pid))
        # Everyone else is served meanwhile, promptly.
        start = time.monotonic()
        served(node)
        assert time.monotonic() - start < 2.0
        peak = max(peak, rss_kib(node.proc.pid))
    finally:
        slow.close()
    grown_mb = (peak - before) / 1024
    mailbox_mb = count * len(body) / 1e6
    # Buffering the answer would cost the mailbox several times over; a bounded session costs
    # a batch (messages.BATCH_BYTES) and the socket buffers.
    assert grown_mb < mailbox_mb * 0.6, (
        f"RSS grew {grown_mb:.0f} MB for a {mailbox_mb:.0f} MB mailbox"
    )


def test_a_literal_slower_than_the_minimum_rate_is_cut_off(node: NodeProcess) -> None:
    """Postfix's smtpd_min_data_rate for IMAP: a literal may take imap_literal_grace plus a second
    per 500 octets received; one trickled to hold the connection is told so and closed, and a
    literal that keeps up is stored."""
    with RawImap(node.ports["imaps"]) as raw:
        raw.login()
        raw.send(b"a APPEND INBOX {100000}\r\n")
        assert raw.line().startswith(b"+ "), "no continuation"
        started = time.monotonic()
        with contextlib.suppress(OSError):
            for _ in range(int(LITERAL_GRACE * 25)):  # a byte every 0.2 s: far too slow
                time.sleep(0.2)
                raw.send(b"x")
        assert raw.line().startswith(b"* BYE literal data arriving too slowly")
        assert raw.closed()
        assert time.monotonic() - started < LITERAL_GRACE * 5
    with RawImap(node.ports["imaps"]) as raw:
        raw.login()
        message = b"Subject: paced\r\n\r\n" + b"y" * 2000 + b"\r\n"
        raw.send(b"b APPEND INBOX {%d}\r\n" % len(message))
        assert raw.line().startswith(b"+ ")
        for start in range(0, len(message), 400):  # ~2,000 octets a second, past the grace
            raw.send(message[start : start + 400])
            time.sleep(0.2)
        raw.send(b"\r\n")
        _, done = raw.until_tagged("b")
        assert done.startswith(b"b OK"), done
    wait_for(lambda: "event=literal_too_slow" in node.log(), 5, "the log line")
