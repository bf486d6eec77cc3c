"""The session core in memory: states, logins, the maildrop commands, UPDATE, limits, misuse."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailfort.protocol.pop3 import commands as C
from mailfort.protocol.pop3 import session as core
from mailfort.protocol.pop3.response import to_crlf, wire_size
from mailfort.protocol.pop3.session import ALLOWED, TRANSITIONS, State, Trigger
from tests.unit.pop3.helpers import (
    MESSAGES,
    PASSWORD,
    UIDVALIDITY,
    USER,
    Peer,
    maildrop,
    unstuff,
)

FUZZ = settings(
    max_examples=int(os.environ.get("MAILFORT_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")[:-1]


def plain(authz: str, user: str, password: str) -> str:
    return base64.b64encode(f"{authz}\0{user}\0{password}".encode()).decode()


# -- the tables ---------------------------------------------------------------------------------
def test_tables_cover_every_state_and_command_has_a_home() -> None:
    assert set(ALLOWED) == set(State)
    assert set().union(*ALLOWED.values()) == set(C.Verb)
    # Every state can be left by ABORT; only QUIT leads to UPDATE.
    for state in State:
        assert TRANSITIONS[(state, Trigger.ABORT)] is State.CLOSED
    assert [k for k, v in TRANSITIONS.items() if v is State.UPDATE] == [
        (State.TRANSACTION, Trigger.QUIT)
    ]


# -- AUTHORIZATION ------------------------------------------------------------------------------
def test_greeting_and_capa_before_tls() -> None:
    peer = Peer(tls=False)
    assert peer.sent.startswith(b"+OK ")
    capa = lines(peer.send(b"CAPA\r\n"))
    assert capa[0].startswith(b"+OK") and capa[-1] == b"."
    assert b"STLS" in capa and b"USER" not in capa and b"SASL PLAIN" not in capa
    assert b"IMPLEMENTATION mailfort" in capa and b"EXPIRE NEVER" in capa


def test_plaintext_login_is_refused_before_tls() -> None:
    peer = Peer(tls=False)
    assert peer.send(b"USER alice@example.test\r\n").startswith(b"-ERR [AUTH] ")
    assert peer.send(b"PASS x\r\n").startswith(b"-ERR ")
    assert peer.send(b"AUTH PLAIN " + plain("", USER, PASSWORD).encode() + b"\r\n").startswith(
        b"-ERR [AUTH] "
    )
    assert peer.logins == []


def test_plaintext_on_loopback_when_allowed() -> None:
    peer = Peer(tls=False, plaintext_without_tls=True)
    assert peer.login().endswith(b"+OK logged in; 3 messages (%d octets)\r\n" % total())
    assert peer.core.state is State.TRANSACTION


def test_stls_then_login_and_pipelined_plaintext_is_dropped() -> None:
    peer = Peer(tls=False)
    out = peer.send(b"STLS\r\nUSER injected\r\nPASS x\r\n")
    assert out == b"+OK begin TLS negotiation\r\n" and peer.handshakes == 1
    assert peer.logins == [] and peer.core.tls
    capa = lines(peer.send(b"CAPA\r\n"))
    assert b"STLS" not in capa and b"USER" in capa and b"SASL PLAIN" in capa
    assert peer.send(b"STLS\r\n").startswith(b"-ERR ")
    assert peer.login().endswith(b"octets)\r\n")


def total() -> int:
    return sum(wire_size(d) for d in MESSAGES.values())


def test_user_pass() -> None:
    peer = Peer()
    assert peer.send(f"USER {USER}\r\n".encode()) == b"+OK send PASS\r\n"
    out = peer.send(f"PASS {PASSWORD}\r\n".encode())
    assert out == b"+OK logged in; 3 messages (%d octets)\r\n" % total()
    assert peer.logins == [core.Login(user=USER, password=PASSWORD, mechanism="USER")]


def test_pass_only_right_after_user() -> None:
    peer = Peer()
    assert peer.send(b"PASS x\r\n").startswith(b"-ERR ")
    for between in (b"CAPA", b"BOGUS", b"NOOP " + b"x" * 300):
        peer.send(f"USER {USER}\r\n".encode() + between + b"\r\n")
        assert peer.send(f"PASS {PASSWORD}\r\n".encode()).startswith(b"-ERR PASS must follow")
    assert peer.logins == []


def test_wrong_password_then_right_one() -> None:
    peer = Peer()
    out = peer.send(f"USER {USER}\r\nPASS nope\r\n".encode())
    assert out.endswith(b"-ERR [AUTH] invalid user name or password\r\n")
    assert peer.core.state is State.AUTHORIZATION
    assert peer.login().endswith(b"octets)\r\n")


def test_in_use() -> None:
    peer = Peer(in_use=True)
    assert peer.login().endswith(
        b"-ERR [IN-USE] maildrop is in use by another session; try again later\r\n"
    )
    assert peer.core.state is State.AUTHORIZATION


@pytest.mark.parametrize("authz", ["", USER, USER.upper()])
def test_auth_plain_with_initial_response(authz: str) -> None:
    peer = Peer()
    out = peer.send(f"AUTH PLAIN {plain(authz, USER, PASSWORD)}\r\n".encode())
    assert out.startswith(b"+OK logged in")
    assert peer.logins[0].mechanism == "PLAIN"


def test_auth_plain_with_continuation_and_cancel() -> None:
    peer = Peer()
    assert peer.send(b"AUTH PLAIN\r\n") == b"+ \r\n"
    assert peer.send(b"*\r\n") == b"-ERR authentication cancelled\r\n"
    assert peer.send(b"AUTH PLAIN\r\n") == b"+ \r\n"
    assert peer.send(plain("", USER, PASSWORD).encode() + b"\r\n").startswith(b"+OK logged in")


@pytest.mark.parametrize(
    ("wire", "answer"),
    [
        (b"AUTH PLAIN !!!\r\n", b"-ERR invalid base64"),
        (b"AUTH PLAIN =\r\n", b"-ERR malformed"),
        (b"AUTH PLAIN " + base64.b64encode(b"a\0b") + b"\r\n", b"-ERR malformed"),
        (b"AUTH PLAIN " + plain("bob@example.test", USER, "x").encode() + b"\r\n", b"-ERR [AUTH]"),
        (b"AUTH CRAM-MD5\r\n", b"-ERR unsupported mechanism"),
    ],
)
def test_auth_plain_errors(wire: bytes, answer: bytes) -> None:
    peer = Peer()
    assert peer.send(wire).startswith(answer)
    assert peer.logins == [] and peer.core.state is State.AUTHORIZATION


def test_auth_lists_mechanisms() -> None:
    assert Peer().send(b"AUTH\r\n") == b"+OK supported mechanisms follow\r\nPLAIN\r\n.\r\n"
    assert Peer(tls=False).send(b"AUTH\r\n") == b"+OK supported mechanisms follow\r\n.\r\n"


def test_quit_in_authorization_closes_without_update() -> None:
    peer = Peer()
    assert peer.send(b"QUIT\r\nSTAT\r\n").startswith(b"+OK ")
    assert peer.closed and peer.core.state is State.CLOSED and peer.updates == []
    assert peer.core.next_event() == core.Close()


# -- TRANSACTION --------------------------------------------------------------------------------
@pytest.fixture
def peer() -> Peer:
    p = Peer()
    p.login()
    return p


def test_stat_list_uidl(peer: Peer) -> None:
    sizes = [wire_size(MESSAGES[uid]) for uid in sorted(MESSAGES)]
    assert peer.send(b"STAT\r\n") == b"+OK 3 %d\r\n" % sum(sizes)
    listing = lines(peer.send(b"LIST\r\n"))
    assert listing[1:] == [b"1 %d" % sizes[0], b"2 %d" % sizes[1], b"3 %d" % sizes[2], b"."]
    assert peer.send(b"LIST 2\r\n") == b"+OK 2 %d\r\n" % sizes[1]
    uidl = lines(peer.send(b"UIDL\r\n"))
    assert uidl[1:-1] == [b"1 %d.3" % UIDVALIDITY, b"2 %d.7" % UIDVALIDITY, b"3 %d.9" % UIDVALIDITY]
    assert uidl[-1] == b"."
    assert peer.send(b"UIDL 3\r\n") == b"+OK 3 %d.9\r\n" % UIDVALIDITY
    for bad in (b"LIST 0\r\n", b"LIST 4\r\n", b"UIDL 4\r\n", b"RETR 4\r\n", b"TOP 0 1\r\n"):
        assert peer.send(bad) == b"-ERR no such message\r\n"


def test_retr_sends_the_normalized_bytes_and_its_size(peer: Peer) -> None:
    for number, uid in enumerate(sorted(MESSAGES), 1):
        out = peer.send(b"RETR %d\r\n" % number)
        assert out.startswith(b"+OK %d octets\r\n" % wire_size(MESSAGES[uid]))
        assert unstuff(out) == to_crlf(MESSAGES[uid])
    assert b"\r\n..dot line\r\n...two dots\r\n..\r\nend\r\n.\r\n" in peer.send(b"RETR 2\r\n")


def test_top(peer: Peer) -> None:
    out = peer.send(b"TOP 2 1\r\n")
    assert out == b"+OK top of message follows\r\nSubject: two\r\n\r\n..dot line\r\n.\r\n"


def test_dele_rset_and_numbers_stay(peer: Peer) -> None:
    assert peer.send(b"DELE 1\r\n") == b"+OK message 1 deleted\r\n"
    assert peer.send(b"DELE 1\r\n") == b"-ERR message 1 is already deleted\r\n"
    assert peer.send(b"RETR 1\r\n").startswith(b"-ERR message 1 is already deleted")
    assert peer.send(b"STAT\r\n") == b"+OK 2 %d\r\n" % (total() - wire_size(MESSAGES[3]))
    assert lines(peer.send(b"LIST\r\n"))[1] == b"2 %d" % wire_size(MESSAGES[7])
    assert peer.send(b"RSET\r\n") == b"+OK maildrop has 3 messages (%d octets)\r\n" % total()
    assert peer.send(b"RETR 1\r\n").startswith(b"+OK")


def test_quit_applies_exactly_the_deleted(peer: Peer) -> None:
    peer.send(b"DELE 1\r\nDELE 3\r\n")
    assert peer.send(b"QUIT\r\n") == b"+OK mx.test signing off (1 messages left)\r\n"
    assert peer.updates == [(3, 9)] and peer.closed
    assert peer.core.state is State.CLOSED


def test_quit_with_nothing_deleted_needs_no_update(peer: Peer) -> None:
    assert peer.send(b"QUIT\r\n").startswith(b"+OK ")
    assert peer.updates == [] and peer.closed


def test_failed_update_says_so() -> None:
    session = core.Session(core.SessionConfig(hostname="h", tls=True))
    session.receive_data(f"USER {USER}\r\nPASS {PASSWORD}\r\nDELE 1\r\nQUIT\r\n".encode())
    assert isinstance(session.next_event(), core.Send)
    assert isinstance(session.next_event(), core.Login)
    session.login_succeeded(maildrop())
    assert isinstance(session.next_event(), core.Send)
    update = session.next_event()
    assert update == core.Update(uids=(3,))
    assert session.updated(False).startswith(b"-ERR [SYS/TEMP] some deleted messages not removed")
    assert session.next_event() == core.Close()


def test_a_dropped_connection_deletes_nothing(peer: Peer) -> None:
    peer.send(b"DELE 1\r\n")
    peer.core.abort()
    assert peer.core.state is State.CLOSED
    assert peer.core.next_event() == core.Close()
    assert peer.updates == []


def test_timed_out_answers_and_closes(peer: Peer) -> None:
    assert peer.core.timed_out().startswith(b"-ERR autologout")
    assert peer.core.state is State.CLOSED


def test_message_gone_after_snapshot(peer: Peer) -> None:
    del peer.messages[7]
    assert peer.send(b"RETR 2\r\n") == b"-ERR message 2 was removed by another session\r\n"
    assert peer.send(b"NOOP\r\n") == b"+OK nothing to do\r\n"


def test_pipelined_commands_are_answered_in_order(peer: Peer) -> None:
    out = peer.send(b"STAT\r\nUIDL 1\r\nRETR 1\r\nNOOP\r\n")
    assert out.startswith(b"+OK 3 ")
    assert out.endswith(b"\r\n.\r\n+OK nothing to do\r\n")


# -- wrong state, bad input, limits -------------------------------------------------------------
def test_transaction_commands_before_login_and_back() -> None:
    peer = Peer()
    assert peer.send(b"STAT\r\n") == b"-ERR STAT is not allowed in the authorization state\r\n"
    peer.login()
    assert peer.send(b"USER x\r\n") == b"-ERR USER is not allowed in the transaction state\r\n"
    assert peer.send(b"STLS\r\n").startswith(b"-ERR STLS is not allowed")


def test_too_long_line_then_carry_on(peer: Peer) -> None:
    out = peer.send(b"NOOP " + b"x" * 300 + b"\r\nNOOP\r\n")
    assert out == b"-ERR line too long (at most 255 octets with CRLF)\r\n+OK nothing to do\r\n"


def test_too_many_commands_before_login() -> None:
    peer = Peer()
    out = peer.send(b"CAPA\r\n" * 25)
    assert out.endswith(b"-ERR too many commands without logging in; closing\r\n")
    assert peer.closed and out.count(b"+OK capability") == 20


def test_too_many_errors(peer: Peer) -> None:
    out = peer.send(b"BOGUS\r\n" * 30)
    assert out.count(b"-ERR unknown command") == 19
    assert out.endswith(b"-ERR too many errors; closing\r\n") and peer.closed


def test_misuse_by_the_server_is_a_local_error() -> None:
    session = core.Session(core.SessionConfig(hostname="h", tls=True))
    with pytest.raises(core.LocalProtocolError):
        session.login_succeeded(None)  # type: ignore[arg-type]
    session.receive_data(b"USER a\r\nPASS b\r\n")
    session.next_event()
    assert isinstance(session.next_event(), core.Login)
    with pytest.raises(core.LocalProtocolError):
        session.next_event()
    with pytest.raises(core.LocalProtocolError):
        session.updated(True)


# -- every (state, command) pair ----------------------------------------------------------------
ARGS = st.sampled_from(["", " 1", " 2", " 0", " 3 1", " x", " 99", " PLAIN", " a b c", " =", "  "])
STATES = ["authorization", "user-given", "sasl", "authorization-plaintext", "transaction"]


def peer_in(state: str) -> Peer:
    peer = Peer(tls=state != "authorization-plaintext")
    if state == "user-given":
        peer.send(f"USER {USER}\r\n".encode())
    elif state == "sasl":
        peer.send(b"AUTH PLAIN\r\n")
    elif state == "transaction":
        peer.login()
        peer.send(b"DELE 2\r\n")
    return peer


@FUZZ
@given(st.sampled_from(STATES), st.sampled_from(list(C.Verb)), ARGS, st.booleans())
def test_every_state_and_command_gets_an_answer(
    state: str, verb: C.Verb, args: str, lower: bool
) -> None:
    peer = peer_in(state)
    before = len(peer.sent)
    word = verb.value.lower() if lower else verb.value
    out = peer.send(f"{word}{args}\r\n".encode())
    if peer.handshakes:  # STLS: the answer came before the handshake
        assert out.startswith(b"+OK ")
        return
    assert out, (state, verb, args)
    assert out.startswith((b"+OK", b"-ERR ", b"+ \r\n")), out
    assert out.endswith(b"\r\n")
    assert len(peer.sent) > before
    if verb is C.Verb.QUIT and state != "sasl" and out.startswith(b"+OK"):
        assert peer.closed
    # Whatever happened, the core still answers (or has closed cleanly).
    after = peer.send(b"NOOP\r\n")
    assert peer.closed or after.startswith((b"+OK", b"-ERR", b"+ "))


@FUZZ
@given(st.lists(st.binary(max_size=80), max_size=12), st.sampled_from(STATES))
def test_random_input_never_raises(chunks: list[bytes], state: str) -> None:
    peer = peer_in(state)
    for chunk in chunks:
        peer.send(chunk)
        assert peer.core.buffered <= 255 + len(chunk)
        if peer.closed:
            break
    assert peer.sent.endswith(b"\r\n")
