"""POP3 against a real node with Python's poplib (and raw sockets where the bytes matter).

RFC 1939 with CAPA (RFC 2449), STLS (RFC 2595), AUTH PLAIN (RFC 5034); the maildrop is the
INBOX, RETR returns the stored bytes, UIDL matches IMAP's UIDVALIDITY/UID, deletions happen at
QUIT only, one session per maildrop.
"""

from __future__ import annotations

import base64
import poplib
import time
from collections.abc import Iterator

import pytest

from mailfort.protocol.pop3.response import to_crlf
from tests.conftest import PASSWORD
from tests.integration.pop3_support import (
    TRACE,
    RawPop3,
    append,
    deliver,
    imap_unique_ids,
    pop3s,
    retr,
    sizes,
    start_pop3_node,
    stls,
    uidl,
)
from tests.nodeproc import NodeProcess

USERS = [f"pop{i}@example.test" for i in range(12)]

DOTS = (
    b"From: ann@remote.test\r\nSubject: dots\r\n\r\n"
    b".leading dot\r\n..two dots\r\n.\r\nmid.dle\r\n. space\r\n...\r\nend\r\n"
)


def simple(subject: str) -> bytes:
    return f"From: ann@remote.test\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n".encode()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = start_pop3_node(
        tmp_path_factory, USERS, extra_config="\n[limits]\nauth_failure_delay = 0.05\n"
    )
    yield proc
    proc.stop()


_fresh_users = iter(USERS)


@pytest.fixture
def user() -> str:
    """A user of its own for each test (they share the node)."""
    return next(_fresh_users)


def filled(node: NodeProcess, user: str, *messages: bytes) -> list[bytes]:
    for message in messages:
        deliver(node, user, message)
    stored = node.inbox(user)
    assert len(stored) == len(messages)
    return stored


def test_stls_session_with_poplib(node: NodeProcess, user: str) -> None:
    stored = filled(node, user, simple("one"), DOTS, simple("three"))
    client = poplib.POP3("127.0.0.1", node.ports["pop3"], timeout=30)
    try:
        assert client.getwelcome().startswith(b"+OK ")
        caps = client.capa()
        assert "STLS" in caps and "USER" not in caps and "SASL" not in caps
        with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
            client.user(user)  # no plaintext password before TLS
    finally:
        client.quit()

    client = stls(node, None)
    try:
        caps = client.capa()
        assert "STLS" not in caps
        assert caps["SASL"] == ["PLAIN"] and "USER" in caps and "UIDL" in caps and "TOP" in caps
        assert caps["IMPLEMENTATION"] == ["mailfort"] and "RESP-CODES" in caps
        client.user(user)
        client.pass_(PASSWORD)
        assert client.stat() == (3, sum(len(m) for m in stored))
        assert sizes(client) == [len(m) for m in stored]
        for number, data in enumerate(stored, 1):
            assert retr(client, number) == (data, len(data))  # byte for byte
        head = stored[1].partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
        _, lines, _ = client.top(2, 0)
        assert b"".join(line + b"\r\n" for line in lines) == head
        _, lines, _ = client.top(2, 2)
        assert lines[-2:] == [b".leading dot", b"..two dots"]  # unstuffed by poplib
        assert client.noop().startswith(b"+OK")
    finally:
        client.quit()
    assert node.inbox(user) == stored  # RETR does not delete, nor mark anything


def test_dot_stuffing_on_the_wire(node: NodeProcess, user: str) -> None:
    (stored,) = filled(node, user, DOTS)
    with RawPop3(node.ports["pop3s"]) as raw:
        raw.login(user)
        assert raw.command(b"RETR 1") == b"+OK %d octets" % len(stored)
        wire = raw.multiline()
        assert b"\r\n..leading dot\r\n...two dots\r\n..\r\nmid.dle\r\n.. space\r\n....\r\n" in wire
        assert (
            b"\r\n".join(
                line[1:] if line.startswith(b".") else line for line in wire.split(b"\r\n")
            )
            == stored
        )
        assert raw.command(b"QUIT").startswith(b"+OK")


def test_pop3s_with_auth_plain(node: NodeProcess, user: str) -> None:
    stored = filled(node, user, simple("a"), simple("b"))
    client = pop3s(node, None)
    try:
        assert "STLS" not in client.capa()
        token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
        assert client._shortcmd(f"AUTH PLAIN {token}").startswith(b"+OK logged in")
        assert [retr(client, n)[0] for n in (1, 2)] == stored
    finally:
        client.quit()


def test_auth_plain_with_a_continuation(node: NodeProcess, user: str) -> None:
    with RawPop3(node.ports["pop3s"]) as raw:
        assert raw.command(b"AUTH PLAIN") == b"+ "
        token = base64.b64encode(f"{user}\0{user}\0{PASSWORD}".encode())
        assert raw.command(token).startswith(b"+OK logged in")


def test_wrong_password_and_unknown_user(node: NodeProcess, user: str) -> None:
    for who in (user, "nobody@example.test"):
        client = pop3s(node, None)
        try:
            client.user(who)
            with pytest.raises(poplib.error_proto) as info:
                client.pass_("wrong")
            assert info.value.args[0] == b"-ERR [AUTH] invalid user name or password"
            # The session carries on: the right password still works.
            if who == user:
                client.user(user)
                assert client.pass_(PASSWORD).startswith(b"+OK")
        finally:
            client.quit()


def test_dele_and_quit_removes_exactly_those(node: NodeProcess, user: str) -> None:
    stored = filled(node, user, simple("keep1"), simple("gone"), simple("keep2"))
    ids = imap_unique_ids(node, user)
    client = pop3s(node, user)
    assert uidl(client) == ids
    assert client.dele(2).startswith(b"+OK")
    with pytest.raises(poplib.error_proto, match="already deleted"):
        client.retr(2)
    assert client.stat() == (2, len(stored[0]) + len(stored[2]))
    assert node.inbox(user) == stored  # nothing happens before QUIT
    assert client.quit().startswith(b"+OK")
    assert node.inbox(user) == [stored[0], stored[2]]
    assert imap_unique_ids(node, user) == [ids[0], ids[2]]

    client = pop3s(node, user)  # numbers start again from 1; unique ids stay
    try:
        assert uidl(client) == [ids[0], ids[2]]
        assert retr(client, 2)[0] == stored[2]
    finally:
        client.quit()


def test_rset_undoes_marks(node: NodeProcess, user: str) -> None:
    stored = filled(node, user, simple("x"), simple("y"))
    client = pop3s(node, user)
    client.dele(1)
    client.dele(2)
    assert client.rset().startswith(b"+OK maildrop has 2 messages")
    client.quit()
    assert node.inbox(user) == stored


def login_when_free(node: NodeProcess, user: str, deadline: float = 10.0) -> poplib.POP3_SSL:
    """Log in, retrying while the maildrop is still locked by a session the node is closing."""
    end = time.monotonic() + deadline
    while True:
        client = pop3s(node, None)
        client.user(user)
        try:
            client.pass_(PASSWORD)
            return client
        except poplib.error_proto as exc:
            client.close()
            if not exc.args[0].startswith(b"-ERR [IN-USE]") or time.monotonic() > end:
                raise
            time.sleep(0.05)


def test_dropped_connection_deletes_nothing_and_frees_the_maildrop(
    node: NodeProcess, user: str
) -> None:
    stored = filled(node, user, simple("a"), simple("b"))
    client = pop3s(node, user)
    client.dele(1)
    client.dele(2)
    client.close()  # no QUIT: RFC 1939 §6, no UPDATE state
    client = login_when_free(node, user)
    try:
        assert client.stat()[0] == 2
    finally:
        client.quit()
    assert node.inbox(user) == stored


def test_second_session_is_refused_in_use(node: NodeProcess, user: str) -> None:
    filled(node, user, simple("a"))
    first = stls(node, user)
    second = pop3s(node, None)
    try:
        second.user(user)
        with pytest.raises(poplib.error_proto) as info:
            second.pass_(PASSWORD)
        assert info.value.args[0].startswith(b"-ERR [IN-USE] ")
        assert first.stat()[0] == 1  # the first session is untouched
    finally:
        second.quit()
        first.quit()
    client = login_when_free(node, user)
    client.quit()


def test_bare_lf_message_goes_out_with_crlf_at_its_listed_size(
    node: NodeProcess, user: str
) -> None:
    data = b"Subject: bare\n\nline one\n.dot line\nlast line without end"
    append(node, user, data)
    (stored,) = node.inbox(user)
    assert stored == data
    client = pop3s(node, user)
    try:
        (size,) = sizes(client)
        sent, octets = retr(client, 1)
        assert sent == to_crlf(data) == data.replace(b"\n", b"\r\n") + b"\r\n"
        assert size == octets == len(sent) == client.stat()[1]
        _, lines, _ = client.top(1, 1)
        assert lines == [b"Subject: bare", b"", b"line one"]
    finally:
        client.quit()


def test_uidl_is_stable_and_matches_imap(node: NodeProcess, user: str) -> None:
    filled(node, user, simple("a"), simple("b"), simple("c"))
    ids = imap_unique_ids(node, user)
    first = pop3s(node, user)
    listed = uidl(first)
    assert first.uidl(2).split()[2].decode() == listed[1]
    first.quit()
    deliver(node, user, simple("d"))
    second = stls(node, user)
    try:
        again = uidl(second)
    finally:
        second.quit()
    assert listed == ids
    assert again[:3] == listed and len(again) == 4
    assert again == imap_unique_ids(node, user)


def test_bad_input_gets_err_and_never_a_traceback(node: NodeProcess, user: str) -> None:
    filled(node, user, simple("a"))
    with RawPop3(node.ports["pop3s"]) as raw:
        answers = [
            raw.command(b"STAT"),  # not before login
            raw.command(b"HELLO"),
            raw.command(b"\x00\xff\xfe garbage \x80"),
            raw.command(b"USER " + b"x" * 400),  # over 255 octets
            raw.command(b"RETR"),
            raw.command(b"APOP alice 0123456789abcdef0123456789abcdef"),
        ]
        assert all(a.startswith(b"-ERR ") for a in answers), answers
        assert b"too long" in answers[3]
        raw.login(user)
        answers = [
            raw.command(b"RETR 0"),
            raw.command(b"RETR 2"),
            raw.command(b"DELE x"),
            raw.command(b"TOP 1"),
            raw.command(b"LIST 99999999999999999999"),
            raw.command(b"USER again"),
        ]
        assert all(a.startswith(b"-ERR ") for a in answers), answers
        assert raw.command(b"NOOP").startswith(b"+OK")
        assert raw.command(b"QUIT").startswith(b"+OK")
        for line in answers:
            assert not TRACE.search(line)
    assert "crashed" not in node.log()
