"""IMAP login against a real node with imaplib (and raw sockets where imaplib would tidy up):
STARTTLS and implicit TLS, LOGIN, AUTHENTICATE PLAIN with and without SASL-IR, capabilities,
and that nothing is accepted in the clear (RFC 9051 6.2, RFC 3501 6.2.3, RFC 4959).
"""

from __future__ import annotations

import base64
import imaplib
import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from tests.conftest import PASSWORD, RawImap, client_tls, imaps, start_node
from tests.nodeproc import NodeProcess

ALICE = "alice@example.test"
# Failed logins answer quickly here (the default delay is a second and grows per failure).
FAST_FAILURES = """[limits]
auth_failure_delay = 0.05
auth_failures_per_ip = 50
auth_failures_per_network = 50
auth_failures_per_account = 50
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = start_node(tmp_path_factory, extra_config=FAST_FAILURES)
    yield proc
    proc.stop()
    assert "Traceback" not in proc.log()


def plain(user: str, password: str, authz: str = "") -> bytes:
    return base64.b64encode(f"{authz}\0{user}\0{password}".encode())


def caps(client: imaplib.IMAP4) -> set[str]:
    typ, data = client.capability()
    assert typ == "OK"
    return set(data[-1].decode().upper().split())


def test_capabilities_before_tls_after_tls_and_after_login(node: NodeProcess) -> None:
    client = imaplib.IMAP4("127.0.0.1", node.ports["imap"], timeout=30)
    try:
        before = caps(client)
        assert {"IMAP4REV1", "IMAP4REV2", "STARTTLS", "LOGINDISABLED"} <= before
        assert "AUTH=PLAIN" not in before
        client.starttls(client_tls())
        after_tls = caps(client)
        assert "AUTH=PLAIN" in after_tls
        assert not {"STARTTLS", "LOGINDISABLED"} & after_tls
        typ, data = client.login(ALICE, PASSWORD)
        assert typ == "OK"
        # RFC 9051 6.2.3: the server may send the new capabilities in the tagged OK.
        assert data[0].startswith(b"[CAPABILITY ")
        logged_in = caps(client)
        for cap in (
            "UIDPLUS", "MOVE", "IDLE", "CONDSTORE", "ESEARCH", "LIST-EXTENDED", "LIST-STATUS",
            "SPECIAL-USE", "NAMESPACE", "UNSELECT", "QUOTA", "STATUS=SIZE", "MULTIAPPEND",
            "BINARY", "ENABLE", "ID", "LITERAL+", "SASL-IR",
        ):  # fmt: skip
            assert cap in logged_in, cap
        assert "AUTH=PLAIN" not in logged_in
    finally:
        client.logout()


def test_login_over_implicit_tls(node: NodeProcess) -> None:
    client = imaps(node, None)
    assert "AUTH=PLAIN" in client.capabilities
    assert "STARTTLS" not in client.capabilities
    typ, _ = client.login(ALICE, PASSWORD)
    assert typ == "OK"
    assert client.select("INBOX")[0] == "OK"
    assert client.logout()[0] == "BYE"


def test_wrong_password_is_authenticationfailed(node: NodeProcess) -> None:
    with RawImap(node.ports["imaps"]) as raw:
        _, done = raw.command(f'LOGIN "{ALICE}" "wrong"')
        assert done.startswith(b"a NO [AUTHENTICATIONFAILED]"), done
        _, done = raw.command(f'LOGIN "nobody@example.test" "{PASSWORD}"')
        assert done.startswith(b"a NO [AUTHENTICATIONFAILED]"), done
        # The session is still usable: the right password now works.
        _, done = raw.command(f'LOGIN "{ALICE}" "{PASSWORD}"')
        assert done.startswith(b"a OK"), done
    client = imaps(node, None)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login(ALICE, "wrong")
    client.logout()


def test_login_before_starttls_refused(node: NodeProcess) -> None:
    with RawImap(node.ports["imap"], tls=False) as raw:
        assert b"LOGINDISABLED" in raw.greeting
        _, done = raw.command(f'LOGIN "{ALICE}" "{PASSWORD}"')
        assert done.startswith(b"a NO [PRIVACYREQUIRED]"), done
        _, done = raw.command(b"AUTHENTICATE PLAIN " + plain(ALICE, PASSWORD))
        assert done.startswith(b"a NO [PRIVACYREQUIRED]"), done
        # Still not logged in: a selected-state command is refused.
        _, done = raw.command("SELECT INBOX")
        assert done.startswith(b"a BAD"), done


def test_commands_sent_before_the_tls_handshake_are_dropped(node: NodeProcess) -> None:
    """RFC 3501 6.2.1 / CVE-2011-0411: plaintext pipelined after STARTTLS is never executed."""
    with RawImap(node.ports["imap"], tls=False) as raw:
        raw.send(b"s STARTTLS\r\ninjected CAPABILITY\r\n")
        _, done = raw.until_tagged("s")
        assert done.startswith(b"s OK"), done
        raw.sock = client_tls().wrap_socket(raw.sock)
        raw.buffer = b""
        untagged, done = raw.command("NOOP", tag="n")
        assert done.startswith(b"n OK"), done
        assert not any(b"injected" in r for r in untagged)
        assert b"injected" not in raw.buffer


def test_plaintext_racing_the_starttls_answer_never_runs_inside_tls(node: NodeProcess) -> None:
    """The injection of CVE-2011-0411 again, with the plaintext in a packet of its own that
    reaches the server while it answers STARTTLS: it may break the handshake, never run."""
    injected = 0
    for attempt in range(40):
        sock = socket.create_connection(("127.0.0.1", node.ports["imap"]), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with sock:
            reader = sock.makefile("rb")
            reader.readline()
            sock.sendall(b"s STARTTLS\r\n")
            time.sleep(0.0001 * (attempt % 8))
            sock.sendall(b"x CAPABILITY\r\n")
            assert reader.readline().startswith(b"s OK")
            try:
                tls = client_tls().wrap_socket(sock)
                tls.sendall(b"n NOOP\r\n")
                answer = b""
                while b"n OK" not in answer:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
            except (ssl.SSLError, OSError):
                continue  # the plaintext went into the handshake: refused, as it should be
            injected += b"x OK" in answer
    assert injected == 0


def test_starttls_handshake_right_after_the_answer(node: NodeProcess) -> None:
    """A client starts its handshake the moment it reads OK: those octets belong to TLS."""
    for _ in range(25):
        client = imaplib.IMAP4("127.0.0.1", node.ports["imap"], timeout=5)
        client.starttls(client_tls())
        assert client.noop()[0] == "OK"
        client.logout()


def test_authenticate_plain_with_sasl_ir(node: NodeProcess) -> None:
    with RawImap(node.ports["imaps"]) as raw:
        assert b"SASL-IR" in raw.greeting
        _, done = raw.command(b"AUTHENTICATE PLAIN " + plain(ALICE, PASSWORD))
        assert done.startswith(b"a OK"), done
        _, done = raw.command("SELECT INBOX")
        assert done.startswith(b"a OK [READ-WRITE]"), done


def test_authenticate_plain_without_initial_response(node: NodeProcess) -> None:
    client = imaps(node, None)
    typ, _ = client.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{PASSWORD}".encode())
    assert typ == "OK"
    assert client.select("INBOX", readonly=True)[0] == "OK"
    client.logout()
    with RawImap(node.ports["imaps"]) as raw:
        raw.send("a AUTHENTICATE PLAIN\r\n")
        assert raw.response().startswith(b"+")
        raw.send(plain(ALICE, "wrong") + b"\r\n")
        _, done = raw.until_tagged("a")
        assert done.startswith(b"a NO [AUTHENTICATIONFAILED]"), done
        # Cancelled with "*" (RFC 9051 6.2.2): BAD, and the session goes on.
        raw.send("b AUTHENTICATE PLAIN\r\n")
        assert raw.response().startswith(b"+")
        raw.send("*\r\n")
        _, done = raw.until_tagged("b")
        assert done.startswith(b"b BAD"), done
        # With an authorization identity that is someone else: refused.
        _, done = raw.command(
            b"AUTHENTICATE PLAIN " + plain(ALICE, PASSWORD, authz="bob@example.test")
        )
        assert done.startswith(b"a NO"), done
        _, done = raw.command(b"AUTHENTICATE PLAIN " + plain(ALICE, PASSWORD, authz=ALICE))
        assert done.startswith(b"a OK"), done


def test_unsupported_mechanism_and_command_in_wrong_state(node: NodeProcess) -> None:
    with RawImap(node.ports["imaps"]) as raw:
        _, done = raw.command("AUTHENTICATE CRAM-MD5")
        assert done.startswith(b"a NO"), done
        _, done = raw.command("FETCH 1 FLAGS")
        assert done.startswith(b"a BAD"), done
        raw.login()
        _, done = raw.command(f'LOGIN "{ALICE}" "{PASSWORD}"')
        assert done.startswith(b"a BAD"), done
        untagged, done = raw.command("LOGOUT")
        assert untagged[0].startswith(b"* BYE")
        assert done.startswith(b"a OK")
