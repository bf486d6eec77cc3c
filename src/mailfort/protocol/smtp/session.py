"""The SMTP server session core: bytes in, events out; results in, bytes out. No I/O, no clock.

    core = ServerSession(config)
    write(core.greeting())
    core.receive_data(data)
    while True:
        event = core.next_event()
        write(core.take_output())   # the replies so far: pipelined ones leave together
        NeedData()          read more and `receive_data` it
        Mail(...)           the policy decides: `mail_accepted(envelope)` or `refuse(reply)`
        Rcpt(...)           `rcpt_accepted(recipient)` or `refuse(reply)`
        Message(...)        the data (DATA's, or the chunks up to BDAT LAST) has arrived: store
                            it, then `data_answer(reply)`
        AuthStart(...)      may this client try now? `auth_proceed()` or `refuse(reply)`
        Login(...)          check the credentials: `login_succeeded(user)` or `refuse(reply)`
        StartTls()          write the output (it ends with 220), do the handshake, `tls_started()`
        Close()             write the output, close the connection

`state` says where the session is (`State`: before HELO, ready, in a transaction after MAIL or
RCPT, receiving DATA, reading a BDAT chunk, in an AUTH exchange, waiting for the server, closed);
which commands are known is `_HANDLERS`, and each handler answers a command out of sequence with
its 503.

BDAT (RFC 3030 2, CHUNKING, offered on every port): the octets a BDAT announces are read and
counted whatever its answer, so they are never taken for commands. A refused BDAT (out of
sequence, before a login, bad LAST word) has its octets read and dropped, then its error; any
failed BDAT, a limit broken included, ends the transaction, so the chunks a pipelining client
sent behind it are dropped with a 503 until MAIL begins a new one. A BDAT whose size is not a
number of at most `MAX_CHUNK_DIGITS` digits (or whose line is too long to read) leaves no way to
find where its octets end: it is answered 501 and the session closes with 421, since reading on
would run whatever the client meant as data. DATA in a transaction with chunks is 503.

Until the pending event is answered `next_event` raises `LocalProtocolError`: our bug, never the
client's. The client's errors get their reply from the core and the session goes on, except that
a session closes after `max_unknown` unrecognized commands or past a command's call budget.

What the core keeps for a connection: its output until taken, one read's worth of input the
server fed it (the server stops reading past `READ_LIMIT` buffered), of a line at most
`MAX_LINE` octets (a longer one is answered and dropped up to its LF, unbuffered), and in DATA
what `DataReceiver` keeps, in a BDAT transaction what `ChunkReceiver` keeps (the octets of a
chunk go to it as they arrive, a chunk is never buffered whole).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, Generic, TypeVar

from mailfort.protocol.lines import LineReader, LineTooLong
from mailfort.protocol.smtp import replies as R
from mailfort.protocol.smtp.chunks import ChunkReceiver
from mailfort.protocol.smtp.data import (
    SPOOL_THRESHOLD,
    TEXT_LINE_LIMIT,
    DataReceiver,
    DataSink,
    ReceivedData,
)
from mailfort.protocol.smtp.envelope import Envelope, MailParams, Recipient, Route
from mailfort.protocol.smtp.extensions import COMMAND_LINE, Offer, ehlo_reply
from mailfort.protocol.smtp.paths import parse_params, parse_path, strip_keyword

# Octets of a line kept while waiting for its LF. Every line the session takes is shorter (a
# command of COMMAND_LINE plus the extensions' room, an AUTH answer of AUTH_LINE_LIMIT); a
# longer one is refused as soon as this much of it has arrived, and the rest is dropped.
MAX_LINE: Final = 4096
# RFC 4954 4: an AUTH answer is a line of base64; 1000 octets of it (plus CRLF) is plenty for
# PLAIN and LOGIN. Counted with its LF, as it always was.
AUTH_LINE_LIMIT: Final = 1002
# Unrecognized commands a session may send; the last one ends it.
MAX_UNKNOWN: Final = 5
# Commands a well-behaved client sends a few times per session; a flood of them is abuse.
CALL_LIMITS: Final[Mapping[str, int]] = {
    "*": 1000,
    "NOOP": 50,
    "HELP": 20,
    "VRFY": 20,
    "EXPN": 20,
    "AUTH": 10,
    "EHLO": 20,
    "HELO": 20,
    "STARTTLS": 2,
    # RFC 3030: a message may come in several chunks, but each costs a command line and a
    # reply like any command, so chunks share the budget of any command: a client of tiny
    # chunks costs no more than one of NOOPs pipelined by the thousand (about 6 us each).
    "BDAT": 1000,
}
# RFC 3030 2: chunk-size is 1*DIGIT. 18 digits count past any message and still fit 64 bits;
# a longer count is no count (see the module docstring).
MAX_CHUNK_DIGITS: Final = 18
MECHANISMS: Final = ("LOGIN", "PLAIN")  # RFC 4954; offered under TLS only
_LOGIN_USER: Final = b"334 " + base64.b64encode(b"Username:") + b"\r\n"
_LOGIN_PASSWORD: Final = b"334 " + base64.b64encode(b"Password:") + b"\r\n"
_EMPTY_CHALLENGE: Final = b"334 \r\n"


class State(Enum):
    """Where a session is (RFC 5321 3.3: a transaction is MAIL, one or more RCPT, DATA)."""

    GREETED = "before HELO/EHLO"
    READY = "no transaction"
    MAIL = "sender accepted, no recipient yet"
    RCPT = "recipients accepted"
    DATA = "receiving the message"
    CHUNK = "reading the octets of a BDAT chunk"  # RFC 3030 2
    AUTH = "in an AUTH exchange"  # RFC 4954 4: the next line is the client's answer
    WAITING = "an event is unanswered"
    CLOSED = "closed"


class LocalProtocolError(Exception):
    """The server used the core wrongly (answered the wrong event, or none). Our bug."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    hostname: str
    max_size: int  # RFC 1870 SIZE, and the limit of DATA and of BDAT's chunks; 0: none
    tls: bool = False  # TLS from the first byte (implicit TLS, RFC 8314)
    starttls: bool = False  # RFC 3207: the server can start TLS on this port
    auth: bool = False  # RFC 4954: AUTH may be used here (under TLS); else it is refused
    auth_required: bool = False  # MAIL, RCPT, DATA, VRFY and HELP need a login first
    ident: str = "mailfort ESMTP"
    call_limits: Mapping[str, int] = field(default_factory=lambda: CALL_LIMITS)
    max_unknown: int = MAX_UNKNOWN
    # Rewrites a 4xx reply before it is sent (submission names a current incident in it).
    temporary_reply: Callable[[str], str] | None = None


# -- events -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class NeedData:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Mail:
    address: str  # as parsed: "<>" for the null reverse-path
    params: MailParams


@dataclass(frozen=True, slots=True, kw_only=True)
class Rcpt(Generic[Route]):
    address: str
    envelope: Envelope[Route]


@dataclass(frozen=True, slots=True, kw_only=True)
class Message(Generic[Route]):
    envelope: Envelope[Route]
    data: ReceivedData  # complete: refused data never comes out as an event


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthStart:
    mechanism: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Login:
    mechanism: str
    authzid: str  # RFC 4616 2: "" unless the client asks to act as someone else
    login: str
    password: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTls:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Close:
    pass


Event = NeedData | Mail | Rcpt[Any] | Message[Any] | AuthStart | Login | StartTls | Close
Pending = Mail | Rcpt[Any] | Message[Any] | AuthStart | Login | StartTls
P = TypeVar("P", bound=Pending)
NEED_DATA: Final = NeedData()
CLOSE: Final = Close()


class Sasl(Enum):
    """Which answer of an AUTH exchange the next line is."""

    PLAIN = "plain"  # the whole PLAIN message
    LOGIN_USER = "login user"
    LOGIN_PASSWORD = "login password"


# HELP's usage lines (RFC 5321 4.1.1.8); MAIL and RCPT add their parameters after EHLO.
_USAGE: Final = {
    "AUTH": "AUTH <mechanism>",
    "BDAT": "BDAT chunk-size [LAST]",
    "DATA": "DATA",
    "EHLO": "EHLO hostname",
    "HELO": "HELO hostname",
    "HELP": "HELP [command]",
    "MAIL": "MAIL FROM: <address>",
    "NOOP": "NOOP [ignored]",
    "QUIT": "QUIT",
    "RCPT": "RCPT TO: <address>",
    "RSET": "RSET",
    "STARTTLS": "STARTTLS",
    "VRFY": "VRFY <address>",
}
_PARAMS_USAGE: Final = " [SP <mail-parameters>]"


class ServerSession(Generic[Route]):
    def __init__(
        self,
        config: SessionConfig,
        *,
        spool: Callable[[], DataSink] | None = None,
        spool_threshold: int = SPOOL_THRESHOLD,
    ) -> None:
        self.config = config
        self.tls = config.tls
        self.helo: str | None = None  # the name the client gave in HELO/EHLO
        self.esmtp = False  # it said EHLO
        self.user: str | None = None  # logged in as
        self.envelope: Envelope[Route] | None = None
        self.commands = 0  # recognized commands so far: the server's idle timer restarts on them
        self.closed = False
        self._spool = spool
        self._spool_threshold = spool_threshold
        self._reader = LineReader()
        self._out = bytearray()
        self._pending: Pending | None = None
        self._receiver: DataReceiver | None = None
        self._chunks: ChunkReceiver | None = None  # the BDAT chunks of this transaction
        self._in_chunk = False  # between a BDAT line and the last of its octets
        self._dropping: str | None = None  # a refused chunk's answer, while its octets go
        self._drop = 0  # octets of the refused chunk still to come
        self._sasl: Sasl | None = None
        self._sasl_login = b""  # LOGIN's user name, while its password is asked for
        self._auth_args: list[str] = []  # AUTH's mechanism and initial response, if any
        self._queued: Pending | None = None  # an event that is next, before any input
        self._mail_limit = COMMAND_LINE
        self._calls: dict[str, int] = {}
        self._unknown = 0

    # -- input and output ---------------------------------------------------------------------
    def greeting(self) -> bytes:
        return f"220 {self.config.hostname} {self.config.ident}\r\n".encode()

    @property
    def buffered(self) -> int:
        """Octets received and not yet taken (the server stops reading past its bound)."""
        return self._reader.buffered

    @property
    def state(self) -> State:
        if self.closed:
            return State.CLOSED
        if self._pending is not None or self._queued is not None:
            return State.WAITING
        if self._receiver is not None:
            return State.DATA
        if self._in_chunk:
            return State.CHUNK
        if self._sasl is not None:
            return State.AUTH
        if self.envelope is not None:
            return State.RCPT if self.envelope.recipients else State.MAIL
        return State.READY if self.helo else State.GREETED

    @property
    def in_transaction(self) -> bool:
        return self.envelope is not None

    def receive_data(self, data: bytes) -> None:
        if self.closed:
            return
        if not self._reader.buffered:
            # DATA and BDAT octets go straight to their receiver; only what follows is kept.
            receiver = self._receiver
            if receiver is not None:
                taken = receiver.feed(data)
            elif self._in_chunk:
                taken = self._feed_chunk(data)
            else:
                taken = 0
            if taken < len(data):
                self._reader.feed(data[taken:] if taken else data)
            return
        self._reader.feed(data)

    def take_output(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    @property
    def pending(self) -> Pending | None:
        """The event the server has yet to answer."""
        return self._pending

    @property
    def pending_output(self) -> int:
        return len(self._out)

    @property
    def receiving_data(self) -> bool:
        """Between DATA's 354 and the end of the data; or from a transaction's first BDAT to its
        end, and while a refused chunk's octets are read (the server's data rate covers all)."""
        return self._receiver is not None or self._in_chunk or self._chunks is not None

    def next_event(self) -> Event:
        if self._pending is not None:
            raise LocalProtocolError(f"{type(self._pending).__name__} is still unanswered")
        if self._queued is not None:
            queued, self._queued = self._queued, None
            return self._wait(queued)
        while not self.closed:
            receiver = self._receiver
            if receiver is not None:
                if self._reader.buffered:
                    data = self._reader.take()
                    taken = receiver.feed(data)
                    if taken < len(data):
                        self._reader.feed(data[taken:])
                if not receiver.done:
                    return NEED_DATA
                event = self._data_done(receiver)
            elif self._in_chunk:
                left = self._chunk_left
                if left and self._reader.buffered:
                    self._feed_chunk(self._reader.take(left))
                    left = self._chunk_left
                if left:
                    return NEED_DATA
                event = self._chunk_done()
            else:
                sasl = self._sasl is not None
                line = self._reader.next_line(AUTH_LINE_LIMIT if sasl else MAX_LINE)
                if line is None:
                    return NEED_DATA
                if isinstance(line, LineTooLong):
                    self._sasl = None
                    self._reply(R.AUTH_LINE_TOO_LONG if sasl else R.COMMAND_TOO_LONG)
                    continue
                event = self._sasl_answer(line) if sasl else self._command(line)
            if event is not None:
                return event
        return CLOSE

    # -- answers from the server --------------------------------------------------------------
    def refuse(self, reply: str) -> None:
        """Answer the pending event with a refusal (or an error): nothing it asked for happens;
        a refused message still ends its transaction (RFC 5321 4.1.1.4)."""
        pending = self._take(Mail | Rcpt | Message | AuthStart | Login)
        if isinstance(pending, Message):
            self.envelope = None
        self._reply(R.for_wire(reply))

    def mail_accepted(self, envelope: Envelope[Route]) -> None:
        self._take(Mail)
        self.envelope = envelope
        self._reply(R.SENDER_OK)

    def rcpt_accepted(self, recipient: Recipient[Route]) -> None:
        pending = self._take(Rcpt)
        pending.envelope.recipients.append(recipient)
        self._reply(R.RECIPIENT_OK)

    def data_answer(self, reply: str) -> None:
        """The end of the transaction, stored (a 250) or not."""
        self._take(Message)
        self.envelope = None
        self._reply(R.for_wire(reply))

    def auth_proceed(self) -> None:
        """The exchange may go on: a challenge is written, or the initial response read."""
        pending = self._take(AuthStart)
        event = self._auth_exchange(pending)
        if event is not None:
            self._pending = None
            self._queued = event

    def login_succeeded(self, user: str) -> None:
        self._take(Login)
        self.user = user
        self._reply(R.AUTH_OK)

    def tls_started(self) -> None:
        """The handshake is done. RFC 3207 4.2: the session starts over, knowing nothing the
        client said before. What was sent in the clear behind STARTTLS was dropped when it was
        answered; what the reader holds now came over TLS (a client's EHLO can arrive before the
        server calls this) and is kept, or client and server would wait for each other."""
        self._take(StartTls)
        self.tls = True
        self.helo = None
        self.esmtp = False
        self.user = None
        self._reset()

    def close(self) -> None:
        """The connection is over, however: no more events but Close."""
        self.closed = True
        self._pending = None
        self._receiver = None
        self._chunks = None
        self._in_chunk = False
        self._dropping = None
        self._sasl = None

    # -- plumbing -----------------------------------------------------------------------------
    def _take(self, kind: Any) -> Any:
        pending = self._pending
        if not isinstance(pending, kind):
            raise LocalProtocolError(f"no {kind} is pending (pending: {pending!r})")
        self._pending = None
        return pending

    def _wait(self, event: P) -> P:
        self._pending = event
        return event

    def _reply(self, text: str) -> None:
        rewrite = self.config.temporary_reply
        if rewrite is not None and text[:1] == "4" and text[3:4] != "-":
            text = rewrite(text)
        out = self._out
        out += text.encode("utf-8", "replace")
        out += b"\r\n"

    def _close_with(self, text: str) -> Close:
        self._reply(text)
        self.close()
        return CLOSE

    def _reset(self) -> None:
        self.envelope = None
        self._chunks = None

    def _help_list(self) -> str:
        names = sorted(v for v in _USAGE if v != "STARTTLS" or self.config.starttls)
        return "Supported commands: " + " ".join(names)

    # -- commands -----------------------------------------------------------------------------
    def _command(self, raw: bytes) -> Event | None:
        line = raw.rstrip(b"\r\n")  # as the server always read them: extra CRs go too
        if not line:
            self._reply(R.BAD_SYNTAX)
            return None
        verb_bytes, _, arg_bytes = line.partition(b" ")
        try:
            verb = verb_bytes.upper().decode("ascii")
        except UnicodeDecodeError:
            self._reply(R.BAD_SYNTAX)
            return None
        # RFC 6531 3.3: with SMTPUTF8 the arguments may be UTF-8; bytes that are not stay
        # as they came (surrogates) and never match an address.
        arg = arg_bytes.strip().decode("utf-8", "surrogateescape") if arg_bytes else None
        limit = self._mail_limit if self.esmtp and verb == "MAIL" else COMMAND_LINE
        if len(line) > limit:
            self._reply(R.COMMAND_TOO_LONG)
            # A BDAT's octets follow its line: unread, they would be taken for commands.
            return self._close_with(R.BDAT_LOST) if verb == "BDAT" else None
        limits = self.config.call_limits
        calls = self._calls.get(verb, 0) + 1
        if calls > limits.get(verb, limits.get("*", 20)):
            return self._close_with(R.too_many(verb))
        self._calls[verb] = calls
        handler = _HANDLERS.get(verb)
        if handler is None:
            self._unknown += 1
            if self._unknown >= self.config.max_unknown:
                return self._close_with(R.TOO_MANY_UNKNOWN)
            self._reply(R.unknown_command(verb))
            return None
        self.commands += 1
        return handler(self, arg)

    def _need_helo(self, helo: str = "HELO") -> bool:
        if self.helo:
            return False
        self._reply(R.NEED_HELO if helo == "HELO" else R.NEED_EHLO)
        return True

    def _need_auth(self) -> bool:
        if self.config.auth_required and self.user is None:
            self._reply(R.AUTH_REQUIRED)
            return True
        return False

    def _usage(self, verb: str) -> str:
        usage = _USAGE[verb]
        if self.esmtp and verb in ("MAIL", "RCPT"):
            usage += _PARAMS_USAGE
        return usage

    def _helo(self, arg: str | None) -> None:
        if not arg:
            self._reply(R.syntax(_USAGE["HELO"]))
            return
        self._reset()
        self.esmtp = False
        self.helo = arg
        self._reply(f"250 {self.config.hostname}")

    def _ehlo(self, arg: str | None) -> None:
        if not arg:
            self._reply(R.syntax(_USAGE["EHLO"]))
            return
        self._reset()
        self.esmtp = True
        self.helo = arg
        config = self.config
        offer = Offer(
            max_size=config.max_size,
            starttls=config.starttls and not self.tls,
            auth=MECHANISMS if config.auth and self.tls else (),
        )
        # Not rewritten: the EHLO answer carries no enhanced code (RFC 2034 3).
        reply, self._mail_limit = ehlo_reply(config.hostname, offer)
        self._out += reply

    def _path(self, verb: str, keyword: str, arg: str | None) -> tuple[str, str] | None:
        """MAIL's or RCPT's address and the rest of its argument; None once refused."""
        arg = strip_keyword(keyword, arg) if arg is not None else None
        address, rest = parse_path(arg) if arg is not None else ("", "")
        if address is None or rest is None:
            self._reply(R.MALFORMED_ADDRESS)
            return None
        if not address or (rest and not self.esmtp):  # RFC 1869: parameters only after EHLO
            self._reply(R.syntax(self._usage(verb)))
            return None
        return address, rest

    def _mail(self, arg: str | None) -> Event | None:
        if self._need_helo() or self._need_auth():
            return None
        path = self._path("MAIL", "FROM:", arg)
        if path is None:
            return None
        if self.envelope is not None:
            self._reply(R.NESTED_MAIL)
            return None
        address, rest = path
        usage = R.syntax(self._usage("MAIL"))
        words = rest.upper().split()
        params = parse_params(words)
        if params is None:
            self._reply(usage)
            return None
        body = params.pop("BODY", "7BIT")
        if body not in ("7BIT", "8BITMIME"):
            self._reply(R.BODY_VALUES)
            return None
        smtputf8 = params.pop("SMTPUTF8", False)
        if not isinstance(smtputf8, bool):
            self._reply(R.SMTPUTF8_NO_VALUE)
            return None
        size = params.pop("SIZE", None)
        if size is True:
            self._reply(usage)
            return None
        declared = int(size) if isinstance(size, str) else 0
        if self.config.max_size and declared > self.config.max_size:
            self._reply(R.SIZE_OVER_LIMIT)
            return None
        if params:
            self._reply(R.MAIL_PARAMS_UNKNOWN)
            return None
        mail_params = MailParams(
            size=declared, body=str(body), smtputf8=smtputf8, words=tuple(words)
        )
        return self._wait(Mail(address=address, params=mail_params))

    def _rcpt(self, arg: str | None) -> Event | None:
        if self._need_helo() or self._need_auth():
            return None
        envelope = self.envelope
        if envelope is None:
            self._reply(R.NEED_MAIL)
            return None
        path = self._path("RCPT", "TO:", arg)
        if path is None:
            return None
        address, rest = path
        params = parse_params(rest.upper().split())
        if params is None:
            self._reply(R.syntax(self._usage("RCPT")))
            return None
        if params:
            self._reply(R.RCPT_PARAMS_UNKNOWN)
            return None
        return self._wait(Rcpt(address=address, envelope=envelope))

    def _data(self, arg: str | None) -> None:
        if self._need_helo() or self._need_auth():
            return
        if self._chunks is not None:
            self._reply(R.DATA_AFTER_BDAT)  # RFC 3030 2: not both in one transaction
            return
        if self.envelope is None or not self.envelope.recipients:
            self._reply(R.NEED_RCPT)
            return
        if arg:
            self._reply(R.DATA_SYNTAX)
            return
        self._reply(R.START_DATA)
        self._receiver = DataReceiver(
            max_size=self.config.max_size,
            max_line=TEXT_LINE_LIMIT,
            spool=self._spool,
            spool_threshold=self._spool_threshold,
        )

    def _data_done(self, receiver: DataReceiver) -> Event | None:
        self._receiver = None
        data = receiver.result()
        refusal = data.refusal
        envelope = self.envelope
        if refusal is not None or envelope is None:
            self._reset()
            self._reply(refusal or R.BAD_SEQUENCE)
            return None
        return self._wait(Message(envelope=envelope, data=data))

    # -- BDAT (RFC 3030) ----------------------------------------------------------------------
    def _bdat(self, arg: str | None) -> Event | None:
        words = arg.split() if arg else []
        count = words[0] if words else ""
        if not (count.isascii() and count.isdigit()) or len(count) > MAX_CHUNK_DIGITS:
            self._reply(R.syntax(_USAGE["BDAT"]))
            return self._close_with(R.BDAT_LOST)
        size = int(count)
        last = len(words) == 2 and words[1].upper() == "LAST"
        self._in_chunk = True
        refusal = self._bdat_refusal(words, last)
        if refusal is not None:
            # RFC 3030 2: a refused chunk's octets are still read (and dropped) before its answer.
            self._dropping, self._drop = refusal, size
            return None
        chunks = self._chunks
        if chunks is None:
            chunks = self._chunks = ChunkReceiver(
                max_size=self.config.max_size,
                max_line=TEXT_LINE_LIMIT,
                spool=self._spool,
                spool_threshold=self._spool_threshold,
            )
        chunks.chunk(size, last=last)
        return None

    def _bdat_refusal(self, words: list[str], last: bool) -> str | None:
        """Why this BDAT cannot add to the transaction (DATA's checks, in DATA's order)."""
        if not self.helo:
            return R.NEED_HELO
        if self.config.auth_required and self.user is None:
            return R.AUTH_REQUIRED
        if self.envelope is None or not self.envelope.recipients:
            return R.NEED_RCPT
        if len(words) > 2 or (len(words) == 2 and not last):
            return R.syntax(_USAGE["BDAT"])
        return None

    @property
    def _chunk_left(self) -> int:
        if self._dropping is not None:
            return self._drop
        chunks = self._chunks
        return chunks.remaining if chunks is not None else 0

    def _feed_chunk(self, data: bytes) -> int:
        if self._dropping is not None:
            taken = min(self._drop, len(data))
            self._drop -= taken
            return taken
        chunks = self._chunks
        return chunks.feed(data) if chunks is not None else 0

    def _chunk_done(self) -> Event | None:
        """The chunk's octets are in: its answer, or with BDAT LAST the message."""
        self._in_chunk = False
        refusal, self._dropping = self._dropping, None
        chunks = self._chunks
        if refusal is None and chunks is not None:
            refusal = chunks.refusal
        if refusal is not None or chunks is None:
            # RFC 3030 2: the transaction failed; chunks behind this one are dropped (503).
            self._reset()
            self._reply(refusal or R.BAD_SEQUENCE)
            return None
        if not chunks.done:
            self._reply(R.chunk_received(chunks.chunk_size))
            return None
        self._chunks = None
        envelope = self.envelope
        if envelope is None:  # _reset drops the chunks with the envelope
            raise LocalProtocolError("chunks without a transaction")
        return self._wait(Message(envelope=envelope, data=chunks.result()))

    def _rset(self, arg: str | None) -> None:
        if arg:
            self._reply(R.syntax(_USAGE["RSET"]))
            return
        self._reset()
        self._reply(R.OK)

    def _noop(self, arg: str | None) -> None:
        self._reply(R.OK)

    def _quit(self, arg: str | None) -> Event | None:
        if arg:
            self._reply(R.syntax(_USAGE["QUIT"]))
            return None
        return self._close_with(R.BYE)

    def _vrfy(self, arg: str | None) -> None:
        if self._need_auth():
            return
        if not arg:
            self._reply(R.syntax(_USAGE["VRFY"]))
            return
        address, _ = parse_path(arg)
        # RFC 5321 3.5.3: 252 when the server will not say whether a mailbox exists.
        self._reply(R.CANNOT_VRFY if address is not None else R.could_not_vrfy(arg))

    def _expn(self, arg: str | None) -> None:
        self._reply(R.EXPN_NOT_IMPLEMENTED)

    def _help(self, arg: str | None) -> None:
        if self._need_auth():
            return
        if arg:
            verb = arg.upper()
            if verb in _USAGE and (verb != "STARTTLS" or self.config.starttls):
                self._reply(f"250 Syntax: {self._usage(verb)}")
                return
            self._reply(R.for_wire(f"501 {self._help_list()}"))
            return
        self._reply(f"250 {self._help_list()}")

    def _starttls(self, arg: str | None) -> Event | None:
        if self.tls:
            # RFC 3207 4: no TLS inside TLS.
            self._reply(R.TLS_ALREADY_ACTIVE)
            return None
        if arg:
            self._reply(R.syntax(_USAGE["STARTTLS"]))
            return None
        if not self.config.starttls:
            self._reply(R.TLS_NOT_AVAILABLE)
            return None
        self._reply(R.READY_FOR_TLS)
        # RFC 3207 5 (and CVE-2011-0411): commands pipelined after STARTTLS came in the clear
        # and must not run as if they came over TLS.
        self._reader.clear()
        self._reset()
        return self._wait(StartTls())

    # -- AUTH (RFC 4954) ----------------------------------------------------------------------
    def _auth(self, arg: str | None) -> Event | None:
        if self._need_helo("EHLO"):
            return None
        if not self.esmtp:
            self._reply(R.AUTH_NOT_ESMTP)
        elif not self.tls:
            self._reply(R.AUTH_NEEDS_TLS)
        elif self.user is not None:
            self._reply(R.ALREADY_AUTHENTICATED)
        elif not arg:
            self._reply(R.AUTH_NO_MECHANISM)
        else:
            args = arg.split()
            if len(args) > 2:
                self._reply(R.AUTH_TOO_MANY_VALUES)
            elif args[0] not in MECHANISMS:
                self._reply(R.AUTH_UNKNOWN_TYPE)
            elif not self.config.auth:
                self._reply(R.AUTH_NOT_HERE)
            else:
                self._auth_args = args
                return self._wait(AuthStart(mechanism=args[0]))
        return None

    def _auth_exchange(self, start: AuthStart) -> Login | None:
        args = self._auth_args
        if len(args) == 1:
            if start.mechanism == "PLAIN":
                self._out += _EMPTY_CHALLENGE
                self._sasl = Sasl.PLAIN
            else:
                self._out += _LOGIN_USER
                self._sasl = Sasl.LOGIN_USER
            return None
        if args[1] == "=":
            initial = b""  # RFC 4954 4: "=" is an empty initial response
        else:
            try:
                initial = base64.b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                self._reply(R.AUTH_SYNTAX)
                return None
        if start.mechanism == "PLAIN":
            return self._plain(initial)
        self._sasl_login = initial
        self._out += _LOGIN_PASSWORD
        self._sasl = Sasl.LOGIN_PASSWORD
        return None

    def _sasl_answer(self, line: bytes) -> Event | None:
        step, self._sasl = self._sasl, None
        blob = line.strip()
        if blob == b"*":  # RFC 4954 4: the client cancels
            self._reply(R.AUTH_CANCELLED)
            return None
        try:
            answer = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError):
            self._reply(R.AUTH_NOT_BASE64)
            return None
        if step is Sasl.PLAIN:
            return self._plain(answer)
        if step is Sasl.LOGIN_USER:
            self._sasl_login = answer
            self._out += _LOGIN_PASSWORD
            self._sasl = Sasl.LOGIN_PASSWORD
            return None
        login, self._sasl_login = self._sasl_login, b""
        return self._wait(
            Login(mechanism="LOGIN", authzid="", login=_text(login), password=_text(answer))
        )

    def _plain(self, message: bytes) -> Login | None:
        # RFC 4616 2: [authzid] NUL authcid NUL passwd
        parts = message.split(b"\0")
        if len(parts) != 3:
            self._reply(R.AUTH_SYNTAX)
            return None
        authzid, login, password = (_text(p) for p in parts)
        return self._wait(Login(mechanism="PLAIN", authzid=authzid, login=login, password=password))


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


Handler = Callable[[ServerSession[Any], "str | None"], "Event | None"]
# The commands the session knows (RFC 5321 4.1.1, RFC 3207, RFC 4954, RFC 3030); any other is
# unknown.
_HANDLERS: Final[dict[str, Handler]] = {
    "AUTH": ServerSession._auth,
    "BDAT": ServerSession._bdat,
    "DATA": ServerSession._data,
    "EHLO": ServerSession._ehlo,
    "EXPN": ServerSession._expn,
    "HELO": ServerSession._helo,
    "HELP": ServerSession._help,
    "MAIL": ServerSession._mail,
    "NOOP": ServerSession._noop,
    "QUIT": ServerSession._quit,
    "RCPT": ServerSession._rcpt,
    "RSET": ServerSession._rset,
    "STARTTLS": ServerSession._starttls,
    "VRFY": ServerSession._vrfy,
}
