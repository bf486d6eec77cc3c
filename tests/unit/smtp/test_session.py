"""The SMTP session core in memory: bytes in, events and replies out (no sockets, no loop)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailfort.protocol.smtp import replies as R
from mailfort.protocol.smtp import session as core
from mailfort.protocol.smtp.data import TEXT_LINE_LIMIT
from mailfort.protocol.smtp.envelope import Envelope, MailParams
from tests.unit.smtp.helpers import (
    MAX_SIZE,
    PASSWORD,
    USER,
    Peer,
    mx_config,
    replies,
    same_however_cut,
    submission_config,
)
from tests.unit.test_smtp_data import cut, reference

TRANSACTION = b"MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"


def ready(config: core.SessionConfig | None = None) -> Peer:
    peer = Peer(config or mx_config())
    assert peer.codes(b"EHLO client.test\r\n") == [250]
    return peer


def ehlo_lines(peer: Peer) -> list[str]:
    wire = peer.send(b"EHLO client.test\r\n")
    return [line[4:] for line in wire.decode().split("\r\n") if line]


# -- greeting and EHLO --------------------------------------------------------------------------


def test_greeting() -> None:
    assert bytes(Peer().sent) == b"220 mx.test mailfort ESMTP\r\n"


def test_ehlo_on_the_mx_port() -> None:
    peer = Peer()
    expected = ["mx.test", f"SIZE {MAX_SIZE}", "8BITMIME", "SMTPUTF8", "STARTTLS"]
    assert ehlo_lines(peer) == [
        *expected,
        "PIPELINING",
        "CHUNKING",
        "ENHANCEDSTATUSCODES",
        "HELP",
    ]
    peer.send(b"STARTTLS\r\n")
    # No STARTTLS once on TLS, and no AUTH on the MX port at all.
    assert "STARTTLS" not in ehlo_lines(peer)
    assert not any(line.startswith("AUTH") for line in ehlo_lines(peer))


def test_ehlo_on_submission_offers_auth_only_under_tls() -> None:
    peer = Peer(submission_config())
    assert not any(line.startswith("AUTH") for line in ehlo_lines(peer))
    peer.send(b"STARTTLS\r\n")
    lines = ehlo_lines(peer)
    assert "AUTH LOGIN PLAIN" in lines and "STARTTLS" not in lines
    implicit = Peer(submission_config(tls=True, starttls=False))
    lines = ehlo_lines(implicit)
    assert lines[4:7] == ["AUTH LOGIN PLAIN", "PIPELINING", "CHUNKING"]


def test_mail_line_limit_grows_once_per_ehlo() -> None:
    """RFC 1870 and RFC 6531 add room to MAIL's 512 octets: 26 + 10, once, whatever the EHLOs."""
    peer = ready()
    for _ in range(5):
        peer.send(b"EHLO client.test\r\n")
    fits = b"MAIL FROM:<" + b"a" * (548 - 24) + b"@remote.test>"
    assert len(fits) == 548
    assert peer.codes(fits + b"\r\n") == [250]
    peer.send(b"RSET\r\n")
    assert replies(peer.send(fits + b"x\r\n")) == [(500, "5.5.2 Command line too long")]
    helo = Peer()
    helo.send(b"HELO client.test\r\n")
    assert helo.codes(fits + b"\r\n") == [500]  # no extensions after HELO: 512


# -- the transaction ----------------------------------------------------------------------------


def test_states_of_a_transaction() -> None:
    peer = Peer(submission_config(tls=True, starttls=False))
    S = core.State
    steps = [
        (b"", S.GREETED),
        (b"EHLO client.test\r\n", S.READY),
        (b"AUTH PLAIN\r\n", S.AUTH),
        (plain("", USER, PASSWORD) + b"\r\n", S.READY),
        (b"MAIL FROM:<alice@example.test>\r\n", S.MAIL),
        (b"RCPT TO:<bob@example.test>\r\n", S.RCPT),
        (b"DATA\r\n", S.DATA),
        (b"hi\r\n.\r\n", S.READY),
        (b"QUIT\r\n", S.CLOSED),
    ]
    for wire, state in steps:
        peer.send(wire)
        assert peer.core.state is state, wire
    peer = Peer()
    peer.send(b"EHLO client.test\r\n")
    peer.core.receive_data(b"MAIL FROM:<s@remote.test>\r\n")
    assert isinstance(peer.core.next_event(), core.Mail)
    assert peer.core.state is S.WAITING


def test_one_message() -> None:
    peer = ready()
    assert peer.codes(TRANSACTION) == [250, 250, 354]
    assert replies(peer.send(b"Subject: hi\r\n\r\n..dot\r\n.\r\n")) == [
        (250, "2.0.0 OK queued as Q1")
    ]
    envelope, content = peer.messages[0]
    assert envelope.sender == "s@remote.test"
    assert [r.address for r in envelope.recipients] == ["alice@example.test"]
    assert envelope.recipients[0].route == "inbox of alice@example.test"
    assert content == b"Subject: hi\r\n\r\n.dot\r\n"
    assert not peer.core.in_transaction


def test_pipelined_replies_leave_together_in_order() -> None:
    """RFC 2920 3.1: one reply per command, in order, bad ones included; all of them are output
    before the core asks for more input, so the server writes them at once."""
    peer = Peer()
    wire = peer.send(
        b"EHLO client.test\r\nRCPT TO:<alice@example.test>\r\nMAIL FROM:<s@remote.test>\r\n"
        b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
    )
    assert [code for code, _ in replies(wire)] == [250, 503, 250, 550, 250, 354]
    needs = [e for e in peer.events if isinstance(e, core.NeedData)]
    assert len(needs) == 1  # one batch of output for the whole group


def test_transactions_back_to_back_after_the_final_dot() -> None:
    peer = ready()
    peer.send(TRANSACTION)
    wire = b"one\r\n.\r\n" + TRANSACTION + b"two\r\n.\r\nNOOP\r\nQUIT\r\n"
    assert peer.codes(wire) == [250, 250, 250, 354, 250, 250, 221]
    assert [content for _, content in peer.messages] == [b"one\r\n", b"two\r\n"]
    assert peer.closed


@settings(max_examples=300, deadline=None)
@given(points=st.lists(st.integers(0, 10_000), max_size=10))
def test_the_data_never_takes_the_next_command_however_cut(points: list[int]) -> None:
    body = b"a\r\n..b\r\n.\rc\n.\n\r\n"
    wire = body + b".\r\n" + b"MAIL FROM:<s@remote.test>\r\nQUIT\r\n"
    peer = ready()
    peer.send(TRANSACTION)
    out = b"".join(peer.send(piece) for piece in cut(wire, points))
    assert [code for code, _ in replies(out)] == [250, 250, 221]
    expected = reference(wire, MAX_SIZE, TEXT_LINE_LIMIT)
    assert expected is not None
    assert peer.messages[0][1] == expected[0].content


@pytest.mark.parametrize(
    "fake_end", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r", b"\r.\r\n"]
)
def test_smuggling_is_data(fake_end: bytes) -> None:
    """RFC 5321 4.1.1.4: only CRLF "." CRLF ends the data; a bare CR or LF next to a dot is
    data, and what follows it is the message, never a second transaction."""
    peer = ready()
    peer.send(TRANSACTION)
    smuggled = b"MAIL FROM:<x@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nevil\r\n"
    assert peer.codes(b"hi" + fake_end + smuggled + b".\r\nQUIT\r\n") == [250, 221]
    assert len(peer.messages) == 1
    envelope, content = peer.messages[0]
    assert [r.address for r in envelope.recipients] == ["alice@example.test"]
    assert smuggled in content


def test_sequence_errors() -> None:
    peer = Peer()
    assert replies(peer.send(b"MAIL FROM:<s@remote.test>\r\n")) == [
        (503, "5.5.1 Error: send HELO first")
    ]
    peer.send(b"EHLO client.test\r\n")
    assert peer.codes(b"RCPT TO:<alice@example.test>\r\nDATA\r\n") == [503, 503]
    assert peer.codes(b"MAIL FROM:<s@remote.test>\r\nMAIL FROM:<s@remote.test>\r\n") == [250, 503]
    assert peer.codes(b"DATA\r\nRSET\r\nRCPT TO:<alice@example.test>\r\n") == [503, 250, 503]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"MAIL FROM:<s@remote.test> SIZE=10001", (552, "5.3.4")),
        (b"MAIL FROM:<s@remote.test> SIZE=10000", (250, "2.1.0")),
        (b"MAIL FROM:<s@remote.test> SIZE", (501, "5.5.4")),
        (b"MAIL FROM:<s@remote.test> SIZE=\xc2\xb2", (501, "5.5.4")),
        (b"MAIL FROM:<s@remote.test> BODY=8BITMIME SMTPUTF8", (250, "2.1.0")),
        (b"MAIL FROM:<s@remote.test> BODY=BINARYMIME", (501, "5.5.4")),
        (b"MAIL FROM:<s@remote.test> SMTPUTF8=yes", (501, "5.5.4")),
        (b"MAIL FROM:<s@remote.test> AUTH=<>", (555, "5.5.4")),
        (b"MAIL FROM:<s@remote.test> XFOO=1", (555, "5.5.4")),
        (b"MAIL FROM:<s@remote.test> X-FOO=1", (501, "5.5.4")),  # as it always was
        (b"MAIL FROM:<>", (250, "2.1.0")),
        (b"MAIL FROM:", (501, "5.5.4")),
        (b"MAIL TO:<s@remote.test>", (501, "5.5.4")),
        (b"MAIL FROM:<@", (553, "5.1.3")),
    ],
)
def test_mail_parameters(line: bytes, expected: tuple[int, str]) -> None:
    peer = ready()
    code, text = replies(peer.send(line + b"\r\n"))[0]
    assert (code, text[:5]) == expected, text


def test_mail_params_reach_the_policy() -> None:
    peer = ready()
    peer.send(b"MAIL FROM:<s@remote.test> size=1234 body=8bitmime smtputf8\r\n")
    mail = next(e for e in peer.events if isinstance(e, core.Mail))
    assert mail.params == MailParams(
        size=1234, body="8BITMIME", smtputf8=True, words=("SIZE=1234", "BODY=8BITMIME", "SMTPUTF8")
    )


def test_rcpt_parameters_are_refused() -> None:
    peer = ready()
    peer.send(b"MAIL FROM:<s@remote.test>\r\n")
    assert peer.codes(b"RCPT TO:<alice@example.test> NOTIFY=NEVER\r\n") == [555]


def test_data_too_big_is_answered_after_its_end_and_forgets_the_transaction() -> None:
    peer = ready()
    peer.send(TRANSACTION)
    assert peer.send(b"x" * 998 + b"\r\n") == b""  # no reply in mid-DATA
    assert peer.send((b"y" * 998 + b"\r\n") * 10) == b""
    assert replies(peer.send(b".\r\n")) == [(552, "5.3.4 Error: Too much mail data")]
    assert peer.codes(b"DATA\r\n") == [503]
    assert peer.messages == []


# -- bad input ----------------------------------------------------------------------------------


def test_huge_line_is_answered_once_and_never_buffered() -> None:
    peer = ready()
    out = b""
    for _ in range(100):  # 1.6 MB without a line end
        out += peer.send(b"z" * 16_384)
        assert peer.core.buffered <= core.MAX_LINE
    out += peer.send(b"\r\nNOOP\r\n")
    assert replies(out) == [(500, "5.5.2 Command line too long"), (250, "2.0.0 OK")]


def test_unknown_commands_end_the_session() -> None:
    peer = ready()
    codes = peer.codes(b"".join(b"XYZZY%d \x00\xff\r\n" % i for i in range(10)))
    assert codes == [500, 500, 500, 500, 502]
    assert peer.closed


def test_control_characters_never_go_back_on_the_wire() -> None:
    peer = ready()
    wire = peer.send(b"\x00MAIL\x07 FROM:<x@y>\r\n")
    assert replies(wire) == [(500, '5.5.2 Error: command "?MAIL?" not recognized')]


def test_call_limit_closes_the_session() -> None:
    peer = ready()
    codes = peer.codes(b"NOOP\r\n" * 51)
    assert codes == [250] * 50 + [421]
    assert replies(bytes(peer.sent))[-1] == (421, "4.7.0 NOOP sent too many times")
    assert peer.closed


@settings(max_examples=1000, deadline=None)
@given(
    lines=st.lists(
        st.one_of(
            st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
            st.sampled_from(
                [
                    b"EHLO x",
                    b"HELO y",
                    b"MAIL FROM:<a@b>",
                    b"RCPT TO:<alice@example.test>",
                    b"RSET",
                    b"NOOP",
                    b"VRFY <a@b>",
                    b"HELP MAIL",
                    b"EXPN x",
                    b"MAIL FROM:<>",
                    b'mail from:<"q r"@b> SIZE=1',
                    b"RCPT TO:<Postmaster>",
                    b"AUTH PLAIN",
                ]
            ),
        ),
        max_size=30,
    )
)
def test_any_command_line_gets_exactly_one_reply(lines: list[bytes]) -> None:
    """The command parser never fails and never falls behind: each line (short of DATA, QUIT,
    STARTTLS and AUTH, which change what follows) is answered with one reply, in order."""
    lines = [
        line
        for line in lines
        if line.split(b" ")[0].upper().rstrip(b"\r") not in (b"DATA", b"QUIT", b"STARTTLS", b"AUTH")
    ][: core.MAX_UNKNOWN - 1]
    peer = Peer(mx_config(call_limits={"*": 1000}))
    out = peer.send(b"".join(line + b"\r\n" for line in lines))
    if peer.closed:  # the unknown-command budget
        return
    assert len(replies(out)) == len(lines)


# -- STARTTLS -----------------------------------------------------------------------------------


def test_starttls_forgets_what_came_before_it() -> None:
    """RFC 3207 4.2 and 5: commands pipelined behind STARTTLS came in the clear and are dropped;
    the session starts over (no HELO, no transaction)."""
    peer = ready()
    peer.send(b"MAIL FROM:<s@remote.test>\r\n")
    out = peer.send(b"STARTTLS\r\nRCPT TO:<alice@example.test>\r\n")
    assert replies(out) == [(220, "2.0.0 Ready to start TLS")]
    assert peer.handshakes == 1 and peer.core.tls
    assert peer.core.helo is None and not peer.core.in_transaction
    assert replies(peer.send(b"STARTTLS\r\n")) == [(503, "5.5.1 TLS already active")]
    assert peer.codes(b"MAIL FROM:<s@remote.test>\r\n") == [503]


def test_a_command_that_came_over_tls_before_the_handshake_was_reported_is_read() -> None:
    """asyncio hands the client's first octets over TLS to the protocol as soon as the
    handshake ends, which can be before the server's coroutine calls tls_started(): they came
    over TLS and are answered (dropping them left a client waiting for its EHLO's reply)."""
    peer = ready()
    peer.core.receive_data(b"STARTTLS\r\n")
    assert isinstance(peer.core.next_event(), core.StartTls)
    assert replies(peer.core.take_output()) == [(220, "2.0.0 Ready to start TLS")]
    peer.core.receive_data(b"EHLO client.test\r\n")  # decrypted before the handshake returned
    peer.core.tls_started()
    assert peer.codes(b"") == [250]
    assert peer.core.tls and peer.core.helo == "client.test"


def test_no_starttls_where_it_is_not_offered() -> None:
    peer = Peer(mx_config(starttls=False))
    assert replies(peer.send(b"STARTTLS\r\n")) == [(454, "4.7.0 TLS not available")]


# -- AUTH ---------------------------------------------------------------------------------------


def on_tls(config: core.SessionConfig | None = None) -> Peer:
    peer = Peer(config or submission_config(tls=True, starttls=False))
    peer.send(b"EHLO client.test\r\n")
    return peer


def plain(authz: str, user: str, password: str) -> bytes:
    return base64.b64encode(f"{authz}\0{user}\0{password}".encode())


def test_auth_plain_with_an_initial_response() -> None:
    peer = on_tls()
    assert peer.codes(b"MAIL FROM:<alice@example.test>\r\n") == [530]
    out = peer.send(b"AUTH PLAIN " + plain("", USER, PASSWORD) + b"\r\n")
    assert replies(out) == [(235, "2.7.0 Authentication successful")]
    assert peer.core.user == USER
    assert peer.codes(b"AUTH PLAIN =\r\n") == [503]  # already authenticated


def test_auth_plain_and_login_with_challenges() -> None:
    peer = on_tls()
    assert peer.send(b"AUTH PLAIN\r\n") == b"334 \r\n"
    assert peer.codes(plain("", USER, "wrong") + b"\r\n") == [535]
    assert peer.send(b"AUTH LOGIN\r\n") == b"334 VXNlcm5hbWU6\r\n"
    assert peer.send(base64.b64encode(USER.encode()) + b"\r\n") == b"334 UGFzc3dvcmQ6\r\n"
    assert peer.codes(base64.b64encode(PASSWORD.encode()) + b"\r\n") == [235]
    assert [(e.mechanism, e.login) for e in peer.logins] == [("PLAIN", USER), ("LOGIN", USER)]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b"*", (501, "5.7.0 Auth aborted")),
        (b"not base64!", (501, "5.5.2 Can't decode base64")),
        (base64.b64encode(b"no nul bytes"), (501, "5.5.2 Cannot decode authentication data")),
        (b"A" * 1001, (500, "5.5.6 Authentication exchange line is too long")),
        (b"A" * 100_000, (500, "5.5.6 Authentication exchange line is too long")),
    ],
)
def test_auth_answers_that_fail(answer: bytes, expected: tuple[int, str]) -> None:
    peer = on_tls()
    peer.send(b"AUTH PLAIN\r\n")
    assert replies(peer.send(answer + b"\r\nNOOP\r\n")) == [expected, (250, "2.0.0 OK")]
    assert peer.logins == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"AUTH", (501, "5.5.4 Not enough value")),
        (b"AUTH PLAIN a b", (501, "5.5.4 Too many values")),
        (b"AUTH CRAM-MD5", (504, "5.5.4 Unrecognized authentication type")),
        (b"AUTH plain", (504, "5.5.4 Unrecognized authentication type")),
        (b"AUTH PLAIN !!", (501, "5.5.2 Cannot decode authentication data")),
    ],
)
def test_auth_commands_that_fail(line: bytes, expected: tuple[int, str]) -> None:
    assert replies(on_tls().send(line + b"\r\n")) == [expected]


def test_auth_needs_ehlo_tls_and_a_port_that_has_it() -> None:
    peer = Peer(submission_config())
    assert peer.codes(b"AUTH PLAIN =\r\n") == [503]
    peer.send(b"HELO client.test\r\n")
    assert peer.codes(b"AUTH PLAIN =\r\n") == [500]  # not ESMTP
    peer.send(b"EHLO client.test\r\n")
    assert replies(peer.send(b"AUTH PLAIN =\r\n"))[0][0] == 538  # not on TLS
    mx = on_tls(mx_config(tls=True))
    assert replies(mx.send(b"AUTH PLAIN =\r\n")) == [(503, R.AUTH_NOT_HERE[4:])]


def test_authzid_reaches_the_policy() -> None:
    peer = on_tls()
    assert peer.codes(b"AUTH PLAIN " + plain("bob@example.test", USER, PASSWORD) + b"\r\n") == [535]
    assert peer.logins[0].authzid == "bob@example.test"


# -- the server's contract ----------------------------------------------------------------------


def test_answering_the_wrong_event_is_our_bug() -> None:
    peer = ready()
    peer.core.receive_data(b"MAIL FROM:<s@remote.test>\r\n")
    event = peer.core.next_event()
    assert isinstance(event, core.Mail)
    with pytest.raises(core.LocalProtocolError):
        peer.core.next_event()  # still unanswered
    with pytest.raises(core.LocalProtocolError):
        peer.core.data_answer("250 OK")
    peer.core.mail_accepted(Envelope(sender="s@remote.test", params=event.params))
    assert isinstance(peer.core.next_event(), core.NeedData)


def test_temporary_replies_can_carry_a_notice() -> None:
    peer = Peer(mx_config(temporary_reply=lambda text: text + " (see status)"))
    peer.send(b"EHLO client.test\r\n")
    peer.core.receive_data(b"MAIL FROM:<s@remote.test>\r\n")
    assert isinstance(peer.core.next_event(), core.Mail)
    peer.core.refuse(R.STORE_UNAVAILABLE)
    peer.run()
    assert replies(bytes(peer.sent))[-1] == (451, R.STORE_UNAVAILABLE[4:] + " (see status)")


def test_help_and_vrfy() -> None:
    peer = ready()
    assert replies(peer.send(b"HELP\r\n"))[0][1].startswith("Supported commands: AUTH BDAT DATA")
    assert replies(peer.send(b"HELP MAIL\r\n")) == [
        (250, "Syntax: MAIL FROM: <address> [SP <mail-parameters>]")
    ]
    assert replies(peer.send(b"HELP NOPE\r\n"))[0][0] == 501
    assert peer.codes(b"VRFY <alice@example.test>\r\nVRFY <@\r\nVRFY\r\nEXPN x\r\n") == [
        252,
        502,
        501,
        502,
    ]


# -- however the input is cut -------------------------------------------------------------------

STEPS = [
    b"EHLO client.test\r\n",
    b"HELO client.test\r\n",
    b"MAIL FROM:<s@remote.test> SIZE=100\r\n",
    b"RCPT TO:<alice@example.test>\r\n",
    b"RCPT TO:<nobody@example.test>\r\n",
    b"DATA\r\n",
    b"Subject: x\r\n\r\n.leading dot\r\nbare\nlf.\n\r\n.\r\n",
    b"x" * 1200 + b"\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"\r\n",
    b"\xff\xfe\r\n",
    b"VRFY <a@b>\r\n",
]  # not STARTTLS: what arrives with it is dropped on purpose (see above), the rest is not


@settings(max_examples=300, deadline=None)
@given(
    script=st.lists(st.sampled_from(STEPS), max_size=25),
    points=st.lists(st.integers(0, 100_000), max_size=12),
)
def test_the_same_answers_however_the_input_is_cut(script: list[bytes], points: list[int]) -> None:
    wire = b"".join(script)
    same_however_cut(wire, cut(wire, points), mx_config(call_limits={"*": 1000}))
