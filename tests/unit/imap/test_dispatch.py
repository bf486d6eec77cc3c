"""The routing table against the parser and the RFCs: every command the parser knows runs in
exactly the states its RFC defines it for, and the table routes nothing the parser cannot make."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailfort.protocol.imap import commands as C
from mailfort.protocol.imap.parser import COMMAND_NAMES
from mailfort.server.imap import dispatch
from mailfort.server.imap.cache import MetaCache
from mailfort.server.imap.session import ImapContext, Session, State
from mailfort.store.sqlite import SqliteStore
from tests.auth_support import logins
from tests.unit.imap.helpers import command_of

NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})
ANY = NOT_AUTH | AUTH

# Each command name the parser accepts, one valid line of it, and the states its RFC allows.
SAMPLES: dict[str, tuple[bytes, frozenset[State]]] = {
    # RFC 9051 6.1 (ID: RFC 2971 3.1)
    "CAPABILITY": (b"a CAPABILITY", ANY),
    "NOOP": (b"a NOOP", ANY),
    "LOGOUT": (b"a LOGOUT", ANY),
    "ID": (b"a ID NIL", ANY),
    # RFC 9051 6.2
    "STARTTLS": (b"a STARTTLS", NOT_AUTH),
    "AUTHENTICATE": (b"a AUTHENTICATE PLAIN", NOT_AUTH),
    "LOGIN": (b"a LOGIN u p", NOT_AUTH),
    # RFC 9051 6.3 (LSUB: RFC 3501 6.3.9; QUOTA: RFC 9208 4; IDLE: RFC 2177 3)
    "ENABLE": (b"a ENABLE CONDSTORE", AUTH),
    "SELECT": (b"a SELECT INBOX", AUTH),
    "EXAMINE": (b"a EXAMINE INBOX", AUTH),
    "CREATE": (b"a CREATE x", AUTH),
    "DELETE": (b"a DELETE x", AUTH),
    "RENAME": (b"a RENAME x y", AUTH),
    "SUBSCRIBE": (b"a SUBSCRIBE x", AUTH),
    "UNSUBSCRIBE": (b"a UNSUBSCRIBE x", AUTH),
    "LIST": (b'a LIST "" *', AUTH),
    "LSUB": (b'a LSUB "" *', AUTH),
    "NAMESPACE": (b"a NAMESPACE", AUTH),
    "STATUS": (b"a STATUS INBOX (MESSAGES)", AUTH),
    "APPEND": (b"a APPEND INBOX {1+}\r\nx", AUTH),
    "IDLE": (b"a IDLE", AUTH),
    "GETQUOTA": (b'a GETQUOTA ""', AUTH),
    "GETQUOTAROOT": (b"a GETQUOTAROOT INBOX", AUTH),
    "SETQUOTA": (b'a SETQUOTA "" (STORAGE 1)', AUTH),
    # RFC 9051 6.4 (CHECK: RFC 3501 6.4.1; UNSELECT: RFC 3691; MOVE: RFC 6851)
    "CHECK": (b"a CHECK", SELECTED),
    "CLOSE": (b"a CLOSE", SELECTED),
    "UNSELECT": (b"a UNSELECT", SELECTED),
    "EXPUNGE": (b"a EXPUNGE", SELECTED),
    "SEARCH": (b"a SEARCH ALL", SELECTED),
    "FETCH": (b"a FETCH 1 FLAGS", SELECTED),
    "STORE": (b"a STORE 1 +FLAGS (x)", SELECTED),
    "COPY": (b"a COPY 1 x", SELECTED),
    "MOVE": (b"a MOVE 1 x", SELECTED),
    "UID": (b"a UID FETCH 1 FLAGS", SELECTED),
}


def _parsed(line: bytes) -> C.Command:
    return command_of(line + b"\r\n")


def test_every_command_the_parser_knows_has_a_sample() -> None:
    assert set(SAMPLES) == set(COMMAND_NAMES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_parsed_command_is_routed_in_the_states_its_rfc_allows(name: str) -> None:
    line, states = SAMPLES[name]
    command = _parsed(line)
    route = dispatch.ROUTES.get(type(command))
    assert route is not None, f"{name} parses to {type(command).__name__}, which has no route"
    assert route.states == states, name
    assert State.LOGOUT not in route.states


def test_the_table_routes_only_what_the_parser_makes() -> None:
    made = {type(_parsed(line)) for line, _ in SAMPLES.values()}
    assert set(dispatch.ROUTES) == made


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_command_outside_its_states_is_answered_bad_before_it_runs(
    name: str, tmp_path: Path
) -> None:
    """Through `dispatch.run` itself, with a real session: the handler never runs (the store
    below is never opened), the tag gets BAD, and the session goes on."""
    line, states = SAMPLES[name]
    command = _parsed(line)
    for state in sorted(frozenset(State) - {State.LOGOUT} - states, key=lambda s: s.value):
        io = _Recorder()
        store = SqliteStore(tmp_path / "never-opened.sqlite3")
        session = Session(
            ImapContext(
                store=store, auth=logins(store), cache=MetaCache(), hostname="h", max_message_size=1
            ),
            io,
        )
        session.state = state
        assert asyncio.run(dispatch.run(session, command))
        assert io.sent == [
            f"a BAD {command.name} is not allowed in the {state.value} state\r\n".encode()
        ]


class _Recorder:
    client_ip = "127.0.0.1"
    tls = False
    blocked = 0.0

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closing = asyncio.Event()

    async def send(self, data: bytes) -> None:
        self.sent.append(data)

    async def read_line(self, timeout: float) -> bytes | None:
        raise AssertionError("no command here may read from the client")

    async def start_tls(self) -> None:
        raise AssertionError("no command here may start TLS")
