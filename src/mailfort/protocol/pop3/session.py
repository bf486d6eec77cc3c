"""The POP3 session core: bytes in, events out; results in, bytes out. No I/O, no clock.

    core = Session(SessionConfig(hostname=..., tls=False, plaintext_without_tls=False))
    send(core.greeting())
    core.receive_data(data)
    while True:
        event = core.next_event()
        Send(data)          write it
        NeedData()          read more and `receive_data` it (only now: that bounds the input)
        Login(...)          check the password, lock the maildrop, snapshot it; then answer
                            with `login_succeeded(maildrop)` or `login_failed(reason)`
        Retrieve(...)       read the message; then write `message(data)` (an iterator of
                            pieces), `message_gone()` or `message_unavailable()`
        StartTls(reply)     write `reply`, do the TLS handshake, call `tls_started()`
        Update(uids)        delete those UIDs in one transaction; then `updated(ok)`
        Close()             the session is over: close the connection

Until the pending event is answered `next_event` raises `LocalProtocolError`: that is the
server's bug, never the client's. A client's errors are answered with `-ERR` by the core.

States (RFC 1939 §3): AUTHORIZATION → TRANSACTION after a login, → UPDATE at QUIT, → CLOSED.
Which commands each state accepts is `ALLOWED`; how states change is `TRANSITIONS`. Any other
command gets `-ERR`, never an exception; a connection that ends any other way than QUIT goes
to CLOSED without UPDATE, so nothing is deleted (RFC 1939 §6).
"""

from __future__ import annotations

import base64
import binascii
import enum
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, TypeVar

from mailfort.protocol.pop3 import commands as C
from mailfort.protocol.pop3 import replies as R
from mailfort.protocol.pop3 import response
from mailfort.protocol.pop3.maildrop import Maildrop, MessageError
from mailfort.protocol.pop3.parser import (
    MAX_COMMAND_LINE,
    MAX_SASL_LINE,
    LineReader,
    LineTooLong,
    ParseError,
    parse_command,
)
from mailfort.protocol.pop3.replies import Code


class State(enum.Enum):
    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"
    UPDATE = "update"
    CLOSED = "closed"


class Trigger(enum.Enum):
    LOGIN = "login succeeded"
    QUIT = "QUIT"
    UPDATED = "deletions applied or failed"
    ABORT = "connection ends without QUIT"


V = C.Verb
ALLOWED: Final[dict[State, frozenset[C.Verb]]] = {
    State.AUTHORIZATION: frozenset({V.USER, V.PASS, V.AUTH, V.STLS, V.CAPA, V.QUIT}),
    State.TRANSACTION: frozenset(
        {V.CAPA, V.STAT, V.LIST, V.RETR, V.DELE, V.NOOP, V.RSET, V.TOP, V.UIDL, V.QUIT}
    ),
    State.UPDATE: frozenset(),
    State.CLOSED: frozenset(),
}

TRANSITIONS: Final[dict[tuple[State, Trigger], State]] = {
    (State.AUTHORIZATION, Trigger.LOGIN): State.TRANSACTION,
    (State.AUTHORIZATION, Trigger.QUIT): State.CLOSED,
    (State.TRANSACTION, Trigger.QUIT): State.UPDATE,
    (State.UPDATE, Trigger.UPDATED): State.CLOSED,
    # RFC 1939 §6: a session that ends without QUIT never enters UPDATE.
    (State.AUTHORIZATION, Trigger.ABORT): State.CLOSED,
    (State.TRANSACTION, Trigger.ABORT): State.CLOSED,
    (State.UPDATE, Trigger.ABORT): State.CLOSED,
    (State.CLOSED, Trigger.ABORT): State.CLOSED,
}


class LocalProtocolError(Exception):
    """The server used the core wrongly (answered the wrong event, or none). Our bug."""


class LoginFailure(enum.Enum):
    """Why a login was refused, with its answer (RFC 3206 codes; RFC 2449 §8.1.1 IN-USE)."""

    CREDENTIALS = (R.BAD_CREDENTIALS, Code.AUTH)
    IN_USE = (R.IN_USE, Code.IN_USE)
    TOO_MANY_SESSIONS = (R.TOO_MANY_SESSIONS, Code.IN_USE)
    THROTTLED = (R.THROTTLED, Code.SYS_TEMP)
    UNAVAILABLE = (R.UNAVAILABLE, Code.SYS_TEMP)
    NO_MAILDROP = (R.NO_MAILDROP, Code.SYS_PERM)


# -- events -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class NeedData:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Login:
    user: str
    password: str
    mechanism: str  # "USER" (USER/PASS) or "PLAIN" (AUTH PLAIN)


@dataclass(frozen=True, slots=True, kw_only=True)
class Retrieve:
    number: int
    uid: int
    lines: int | None  # TOP's line count; None for RETR


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTls:
    reply: bytes  # send it, then begin the handshake


@dataclass(frozen=True, slots=True, kw_only=True)
class Update:
    uids: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Close:
    pass


Event = Send | NeedData | Login | Retrieve | StartTls | Update | Close
Pending = Login | Retrieve | StartTls | Update
P = TypeVar("P", Login, Retrieve, StartTls, Update)
NEED_DATA: Final = NeedData()
CLOSE: Final = Close()


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    hostname: str
    tls: bool
    # Whether USER/PASS and AUTH PLAIN are allowed before TLS (the server decides: loopback).
    plaintext_without_tls: bool = False
    max_unauth_commands: int = 20
    max_errors: int = 20
    implementation: str = "mailfort"


Handler = Callable[["Session", C.Command], "Event"]
_HANDLERS: dict[C.Verb, Handler] = {}


def _handles(verb: C.Verb) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _HANDLERS[verb] = fn
        return fn

    return register


class Session:
    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.state = State.AUTHORIZATION
        self.tls = config.tls
        self.maildrop: Maildrop | None = None
        self._reader = LineReader()
        self._queued: deque[Event] = deque()
        self._pending: Pending | None = None
        self._user: str | None = None  # after a successful USER, until the next command
        self._sasl = False  # AUTH PLAIN sent "+ ": the next line is the client's response
        self._unauth_commands = 0
        self._errors = 0

    # -- input --------------------------------------------------------------------------------
    def greeting(self) -> bytes:
        return R.ok(R.GREETING.format(hostname=self.config.hostname))

    def receive_data(self, data: bytes) -> None:
        if self.state is not State.CLOSED:
            self._reader.feed(data)

    @property
    def buffered(self) -> int:
        return self._reader.buffered

    def next_event(self) -> Event:
        if self._queued:
            return self._queued.popleft()
        if self._pending is not None:
            raise LocalProtocolError(f"{type(self._pending).__name__} is still unanswered")
        if self.state is State.CLOSED:
            return CLOSE
        line = self._reader.next_line(MAX_SASL_LINE if self._sasl else MAX_COMMAND_LINE)
        if line is None:
            return NEED_DATA
        if isinstance(line, LineTooLong):
            self._sasl = False
            self._user = None
            return self._error(R.LINE_TOO_LONG.format(limit=line.limit))
        if self._sasl:
            self._sasl = False
            return self._sasl_response(line)
        try:
            command = parse_command(line)
        except ParseError as exc:
            self._user = None  # RFC 1939 §7: PASS only right after a successful USER
            return self._error(exc.text)
        return self._command(command)

    # -- plumbing -----------------------------------------------------------------------------
    def _fire(self, trigger: Trigger) -> None:
        self.state = TRANSITIONS[(self.state, trigger)]

    def _error(self, text: str, code: Code | None = None) -> Event:
        """A client error: `-ERR`; past `max_errors`, the last answer and the end."""
        self._errors += 1
        if self._errors >= self.config.max_errors:
            return self._close_with(R.err(R.TOO_MANY_ERRORS))
        return Send(data=R.err(text, code))

    def _close_with(self, data: bytes) -> Event:
        self._fire(Trigger.ABORT)
        self._queued.append(CLOSE)
        return Send(data=data)

    def _wait(self, event: P) -> P:
        self._pending = event
        return event

    def _take(self, kind: type[P]) -> P:
        pending = self._pending
        if not isinstance(pending, kind):
            raise LocalProtocolError(f"no {kind.__name__} is pending (pending: {pending!r})")
        self._pending = None
        return pending

    def plaintext_ok(self) -> bool:
        return self.tls or self.config.plaintext_without_tls

    def capabilities(self) -> list[str]:
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.state is State.AUTHORIZATION:
            if self.plaintext_ok():
                caps += ["USER", "SASL PLAIN"]
            if not self.tls:
                caps.append("STLS")
        caps += ["EXPIRE NEVER", f"IMPLEMENTATION {self.config.implementation}"]
        return caps

    def _command(self, command: C.Command) -> Event:
        verb = command.verb
        if self.state is State.AUTHORIZATION:
            self._unauth_commands += 1
            if self._unauth_commands > self.config.max_unauth_commands:
                return self._close_with(R.err(R.TOO_MANY_UNAUTH))
            if verb is not V.PASS:
                self._user = None  # RFC 1939 §7: PASS only right after a successful USER
        if verb not in ALLOWED[self.state]:
            return self._error(R.WRONG_STATE.format(verb=verb.value, state=self.state.value))
        try:
            return _HANDLERS[verb](self, command)
        except MessageError as exc:
            return Send(data=R.err(exc.text))

    def _drop(self) -> Maildrop:
        assert self.maildrop is not None  # TRANSACTION has one, and only it runs these handlers
        return self.maildrop

    # -- results from the server --------------------------------------------------------------
    def login_succeeded(self, maildrop: Maildrop) -> bytes:
        self._take(Login)
        self.maildrop = maildrop
        self._fire(Trigger.LOGIN)
        return R.ok(R.LOGGED_IN.format(count=maildrop.count, octets=maildrop.octets))

    def login_failed(self, failure: LoginFailure) -> bytes:
        self._take(Login)
        text, code = failure.value
        return R.err(text, code)

    def message(self, data: bytes) -> Iterator[bytes]:
        """The answer to the pending Retrieve, in pieces (see `response.stuffed_chunks`)."""
        pending = self._take(Retrieve)  # now, not when the caller starts iterating
        if pending.lines is None:
            status = R.ok(R.RETR.format(octets=response.wire_size(data)))
            return itertools.chain((status,), response.stuffed_chunks(data))
        top = response.top(data, pending.lines)
        return itertools.chain((R.ok(R.TOP),), response.stuffed_chunks(top))

    def message_gone(self) -> bytes:
        """The message was expunged (by IMAP) after the snapshot was taken."""
        pending = self._take(Retrieve)
        return R.err(R.MESSAGE_GONE.format(number=pending.number))

    def message_unavailable(self) -> bytes:
        """The store could not be read just now: the client may try again."""
        self._take(Retrieve)
        return R.err(R.UNAVAILABLE, Code.SYS_TEMP)

    def tls_started(self) -> None:
        self._take(StartTls)
        self.tls = True
        # RFC 2595 §4: discard what was learnt before; nothing sent in plaintext counts after.
        self._reader.clear()
        self._user = None

    def updated(self, ok: bool) -> bytes:
        """The deletions of QUIT were committed (ok) or not; the session then closes."""
        self._take(Update)
        return self._finish_update(ok)

    def _finish_update(self, ok: bool) -> bytes:
        self._fire(Trigger.UPDATED)
        self._queued.append(CLOSE)
        if not ok:
            return R.err(R.UPDATE_FAILED, Code.SYS_TEMP)
        remaining = self.maildrop.count if self.maildrop is not None else 0
        return R.ok(R.BYE_UPDATED.format(hostname=self.config.hostname, count=remaining))

    def timed_out(self) -> bytes:
        """The server's autologout timer ran out (RFC 1939 §3): the answer; nothing deleted."""
        self.abort()
        return R.err(R.AUTOLOGOUT)

    def abort(self) -> None:
        """The connection ended without QUIT: nothing is deleted."""
        self._pending = None
        self._queued.clear()
        self._fire(Trigger.ABORT)

    # -- SASL ---------------------------------------------------------------------------------
    def _sasl_response(self, line: bytes) -> Event:
        if line.strip() == b"*":
            return Send(data=R.err(R.AUTH_CANCELLED))  # RFC 5034 §4
        return self._plain(line.strip())

    def _plain(self, encoded: bytes) -> Event:
        try:
            data = b"" if encoded == b"=" else base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return Send(data=R.err(R.AUTH_BAD_BASE64))
        parts = data.split(b"\0")
        if len(parts) != 3 or not parts[1]:
            return Send(data=R.err(R.AUTH_MALFORMED))
        authz, user, password = (p.decode("utf-8", "surrogateescape") for p in parts)
        if authz and authz.casefold() != user.casefold():
            return Send(data=R.err(R.AUTH_AUTHZID, Code.AUTH))
        return self._wait(Login(user=user, password=password, mechanism="PLAIN"))


# -- AUTHORIZATION ------------------------------------------------------------------------------
@_handles(V.USER)
def _on_user(s: Session, command: C.Command) -> Event:
    assert isinstance(command, C.User)
    if not s.plaintext_ok():
        return Send(data=R.err(R.PLAINTEXT_REFUSED, Code.AUTH))
    s._user = command.name
    return Send(data=R.ok(R.USER_OK))


@_handles(V.PASS)
def _on_pass(s: Session, command: C.Command) -> Event:
    assert isinstance(command, C.Pass)
    user, s._user = s._user, None
    if user is None:
        return Send(data=R.err(R.PASS_WITHOUT_USER))
    return s._wait(Login(user=user, password=command.password, mechanism="USER"))


@_handles(V.AUTH)
def _on_auth(s: Session, command: C.Command) -> Event:
    assert isinstance(command, C.Auth)
    if command.mechanism is None:
        mechanisms = [b"PLAIN"] if s.plaintext_ok() else []
        return Send(data=response.multiline(R.ok(R.MECHANISMS), mechanisms))
    if command.mechanism != "PLAIN":
        return Send(data=R.err(R.MECHANISM_UNSUPPORTED))
    if not s.plaintext_ok():
        return Send(data=R.err(R.PLAINTEXT_REFUSED, Code.AUTH))
    if command.initial is None:
        s._sasl = True
        return Send(data=R.CONTINUE)
    return s._plain(command.initial.encode("ascii", "replace"))


@_handles(V.STLS)
def _on_stls(s: Session, command: C.Command) -> Event:
    if s.tls:
        return Send(data=R.err(R.TLS_ACTIVE))
    # CVE-2011-0411: commands pipelined behind STLS were sent in plaintext; never run them.
    s._reader.clear()
    return s._wait(StartTls(reply=R.ok(R.TLS_BEGIN)))


@_handles(V.CAPA)
def _on_capa(s: Session, command: C.Command) -> Event:
    return Send(data=response.multiline(R.ok(R.CAPA), [c.encode() for c in s.capabilities()]))


@_handles(V.QUIT)
def _on_quit(s: Session, command: C.Command) -> Event:
    s._fire(Trigger.QUIT)
    hostname = s.config.hostname
    if s.state is State.CLOSED:  # QUIT in AUTHORIZATION
        s._queued.append(CLOSE)
        return Send(data=R.ok(R.BYE.format(hostname=hostname)))
    uids = tuple(s._drop().deleted_uids())
    if not uids:  # nothing to apply: UPDATE is over at once
        return Send(data=s._finish_update(True))
    return s._wait(Update(uids=uids))


# -- TRANSACTION --------------------------------------------------------------------------------
@_handles(V.STAT)
def _on_stat(s: Session, command: C.Command) -> Event:
    drop = s._drop()
    return Send(data=R.ok(R.STAT.format(count=drop.count, octets=drop.octets)))


@_handles(V.LIST)
def _on_list(s: Session, command: C.Command) -> Event:
    assert isinstance(command, C.List)
    drop = s._drop()
    if command.number is not None:
        entry = drop.get(command.number)
        return Send(data=R.ok(f"{command.number} {entry.size}"))
    status = R.ok(R.LIST_ALL.format(count=drop.count, octets=drop.octets))
    lines = (b"%d %d" % (n, e.size) for n, e in drop.listing())
    return Send(data=response.multiline(status, lines))


@_handles(V.UIDL)
def _on_uidl(s: Session, command: C.Command) -> Event:
    assert isinstance(command, C.Uidl)
    drop = s._drop()
    if command.number is not None:
        entry = drop.get(command.number)
        return Send(data=R.ok(f"{command.number} {entry.unique_id}"))
    lines = (b"%d %s" % (n, e.unique_id.encode()) for n, e in drop.listing())
    return Send(data=response.multiline(R.ok(R.UIDL_ALL), lines))


@_handles(V.RETR)
def _on_retr(s: Session, command: C.Command) -> Event:
    assert isinstance(command, C.Retr)
    entry = s._drop().get(command.number)
    return s._wait(Retrieve(number=command.number, uid=entry.uid, lines=None))


@_handles(V.TOP)
def _on_top(s: Session, command: C.Command) -> Event:
    assert isinstance(command, C.Top)
    entry = s._drop().get(command.number)
    return s._wait(Retrieve(number=command.number, uid=entry.uid, lines=command.lines))


@_handles(V.DELE)
def _on_dele(s: Session, command: C.Command) -> Event:
    assert isinstance(command, C.Dele)
    s._drop().delete(command.number)
    return Send(data=R.ok(R.DELETED.format(number=command.number)))


@_handles(V.NOOP)
def _on_noop(s: Session, command: C.Command) -> Event:
    return Send(data=R.ok(R.NOOP))


@_handles(V.RSET)
def _on_rset(s: Session, command: C.Command) -> Event:
    drop = s._drop()
    drop.reset()
    return Send(data=R.ok(R.RSET.format(count=drop.count, octets=drop.octets)))


assert set(_HANDLERS) == set(C.Verb), "every verb has a handler"
