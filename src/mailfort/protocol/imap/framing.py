"""Framing of the IMAP client stream: octets in, parsed commands and framing events out.

`CommandReader.feed(data)` returns the events the new octets complete (several when the client
pipelines, none while a command is incomplete):

    Parsed(command)           a complete, valid command (a `commands.Command`)
    Continue(tag, size)       a synchronizing literal `{n}` was accepted: send `+ Ready for
                              literal` (RFC 9051 7.5); its octets follow
    LiteralTooBig(tag, ...)   a synchronizing literal over the limit: answer
                              `tag NO [TOOBIG] ...` and send no continuation; the client
                              abandons the command (RFC 9051 7.5)
    ParseError(tag, text, close, code)
                              a malformed command: answer `tag BAD [code] text` (`* BAD` when
                              tag is None); when `close`, the stream cannot be trusted any
                              more: send the answer and close the connection
    RawLine(data)             the line asked for by `expect_line()` (AUTHENTICATE, IDLE's DONE)

Mode switches. The reader stops after `Parsed` of AUTHENTICATE, IDLE or STARTTLS and after
every `RawLine`: octets that came in the same chunk stay buffered, because they may belong to
another mode (a SASL response, IDLE's DONE, or plaintext sent before a TLS handshake). So a list
from `feed()` ends at such an event. The server then, if it needs to, calls `expect_line()`:
the next line comes out as `RawLine` (for AUTHENTICATE continuations and IDLE's DONE); or
`resume()` / `reset()`. The next `feed()`, `expect_line()` or `resume()` carries on with what
is buffered, and `expect_line()` and `resume()` return the events it produces (empty unless the
client sent ahead without waiting). After STARTTLS the server must `reset()` the reader (or
make a new one): octets sent before the handshake are never executed after it
(the STARTTLS command injection flaw, CVE-2011-0411).

Memory. Literal sizes are checked when announced, before their octets are read. Between calls
the reader holds at most `max_held + max_line` octets (see `buffered`): of the command in
progress, its lines and the literals it keeps, ≤ `max_held`, and its current line < `max_line`;
or, after a stop, the rest of the last chunk (no command is in progress then), ≤ `max_held`. A
line longer than `max_line` is refused and the rest of it discarded up to its LF, unbuffered.
Without a spool, `max_held` is `max_command` and every literal is kept. With one (`spool`, a
factory the server passes in: this module opens no files), a message literal of APPEND (RFC
3502 append-data, see `parser.append_data`) goes to the `LiteralSink` the factory returns, as
its octets arrive, when it is over `spool_threshold` or keeping it would leave less than
`max_line` of `max_held` for the lines of the command still to come; the parsed
`AppendMessage` then carries that sink instead of bytes. Every other literal must fit
`max_held`, so `max_held` (a few times `max_line`, not a message) bounds a session's memory
whatever it sends. `max_command` bounds a command's octets, spooled ones included. A sink whose
command is abandoned (refused, malformed, `reset()`, `close()`) is discarded here; one in a
`Parsed` command is the server's to dispose of. The limits are plain attributes: the server may
lower `max_literal` before login (LOGIN and AUTHENTICATE need little) or to what an account's
quota allows.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from mailfort.protocol.imap.commands import Authenticate, Command, Idle, LiteralSink, StartTLS
from mailfort.protocol.imap.parser import (
    ProtocolError,
    append_data,
    check_prefix,
    parse_command,
    tag_of,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Parsed:
    command: Command


@dataclass(frozen=True, slots=True, kw_only=True)
class Continue:
    """Send a command continuation request now: the client waits for it (RFC 9051 7.5)."""

    tag: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LiteralTooBig:
    """Answer `tag NO [TOOBIG]` (RFC 9051 7.1) and do not send a continuation."""

    tag: str
    size: int
    limit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ParseError:
    """Answer `tag BAD [code] text`, or `* BAD ...` when tag is None; close if `close`."""

    tag: str | None
    text: str
    close: bool = False
    code: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RawLine:
    data: bytes  # without CRLF


Event = Parsed | Continue | LiteralTooBig | ParseError | RawLine

# Commands after which the next octets may not be commands (see the module docstring).
_PAUSING: Final = (Authenticate, Idle, StartTLS)
MAX_LITERALS: Final = 1000  # per command: bounds object overhead for `{0}` floods
SPOOL_THRESHOLD: Final = 64 * 1024  # APPEND literals larger than this go to the spool

# The server's spool: a new sink for a literal of the given size.
Spool = Callable[[int], LiteralSink]


class _State(enum.Enum):
    LINE = "line"  # reading a command line, or the rest of one after a literal
    LITERAL = "literal"  # reading the octets of an accepted literal
    SKIP = "skip"  # discarding an over-long line up to its LF
    RAW = "raw"  # expect_line(): the next line is returned as it is
    CLOSED = "closed"  # after a fatal error: everything is dropped


class CommandReader:
    """Sans-IO reader of one IMAP connection's client stream."""

    def __init__(
        self,
        max_line: int = 64 * 1024,
        max_literal: int = 64 * 1024 * 1024,
        max_command: int | None = None,
        *,
        max_literals: int = MAX_LITERALS,
        spool: Spool | None = None,
        spool_threshold: int = SPOOL_THRESHOLD,
        max_held: int | None = None,
    ) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_command = max_literal + max_line if max_command is None else max_command
        self.max_literals = max_literals
        self.spool = spool
        self.spool_threshold = spool_threshold
        if max_held is None:
            max_held = self.max_command if spool is None else max_line + spool_threshold
        self.max_held = max_held
        self._buf = bytearray()
        self._scanned = 0  # octets of _buf already searched for LF
        self._state = _State.LINE
        self._stopped = False  # after a pausing event, the rest of a chunk waits in _buf
        self._new_command()

    def _abandon(self) -> None:
        """Drop the command in progress, discarding the sinks of its spooled literals."""
        sinks = [x for x in self._literals if not isinstance(x, bytes)]
        if self._sink is not None:
            sinks.append(self._sink)
        self._new_command()
        for sink in sinks:
            sink.discard()

    def _new_command(self) -> None:
        self._segments: list[bytes] = []
        self._literals: list[bytes | LiteralSink] = []
        self._literal = bytearray()
        self._sink: LiteralSink | None = None  # where the literal being read goes, if spooled
        self._literal_left = 0
        self._size = 0  # octets of the command so far, literals included
        self._held = 0  # ... of them kept in memory: lines and literals not spooled
        self._literal_count = 0
        self._tag: str | None = None
        self._first = b""  # the command's first line
        # A command found bad while its non-synchronizing literals still arrive: they are
        # read and dropped, and the error is reported when the command ends.
        self._doomed: ProtocolError | None = None

    # -- the server's calls --------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Event]:
        """The events that `data`, after what is buffered, completes."""
        if self._state is _State.CLOSED:
            return []
        self._buf += data
        return self._run()

    def expect_line(self) -> list[Event]:
        """Return the next line as `RawLine` (a SASL response, IDLE's DONE), not as a command.

        Call it between commands (right after the AUTHENTICATE/IDLE event or a RawLine).
        Returns the events already-buffered octets produce: add them to those of `feed()`.
        """
        if self._state is _State.CLOSED:
            return []
        if self._state not in (_State.LINE, _State.RAW) or self._size:
            raise RuntimeError("expect_line() while a command is being read")  # our misuse
        self._state = _State.RAW
        return self._run()

    def resume(self) -> list[Event]:
        """Read commands again (cancels `expect_line()`); returns the buffered octets' events."""
        if self._state is _State.RAW:
            self._state = _State.LINE
        return self._run()

    def reset(self) -> None:
        """Drop everything buffered and read commands afresh (after the STARTTLS handshake)."""
        if self._state is _State.CLOSED:
            return
        self._buf.clear()
        self._scanned = 0
        self._state = _State.LINE
        self._stopped = False
        self._abandon()

    def close(self) -> None:
        """The connection is gone: drop everything, discard the sinks of the command in progress."""
        self._buf.clear()
        self._abandon()
        self._state = _State.CLOSED

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    @property
    def literal_left(self) -> int:
        """Octets still to come of the literal being read; 0 when none is (a server bounds how
        fast they must come: a client that trickles a literal holds its connection)."""
        return self._literal_left if self._state is _State.LITERAL else 0

    @property
    def buffered(self) -> int:
        """Octets the reader holds now: what the memory bound is about."""
        return (
            len(self._buf)
            + sum(map(len, self._segments))
            + sum(len(x) for x in self._literals if isinstance(x, bytes))
            + len(self._literal)
        )

    # -- the machine ---------------------------------------------------------------------------
    def _run(self) -> list[Event]:
        events: list[Event] = []
        self._stopped = False
        while not self._stopped and self._state is not _State.CLOSED and self._step(events):
            pass
        # No command is in progress after a stop, so this keeps within the memory bound.
        if self._stopped and len(self._buf) > self.max_held:
            self._fatal(events, None, "Too much input sent without waiting for a response")
        return events

    def _step(self, events: list[Event]) -> bool:
        """Consume what the buffer allows for one step; False when more octets are needed."""
        if self._state is _State.LITERAL:
            return self._read_literal(events)
        newline = self._buf.find(b"\n", self._scanned)
        if newline < 0:
            if self._state is _State.SKIP:
                self._buf.clear()  # not buffered: the line was already refused
                self._scanned = 0
                return False
            if len(self._buf) >= self.max_line:
                self._line_too_long(events, None)
                return True
            self._scanned = len(self._buf)
            return False
        line = bytes(self._buf[:newline])
        del self._buf[: newline + 1]
        self._scanned = 0
        if self._state is _State.SKIP:
            self._state = _State.LINE
            return True
        if newline + 1 > self.max_line:
            self._line_too_long(events, line)
            return True
        if line.endswith(b"\r"):
            line = line[:-1]
        # A bare LF ends a line too: some clients send one, and it cannot be anything else.
        if self._state is _State.RAW:
            self._state = _State.LINE
            self._stopped = True
            events.append(RawLine(data=line))
            return True
        self._command_line(line, events)
        return True

    def _read_literal(self, events: list[Event]) -> bool:
        if not self._buf:
            return False
        take = min(self._literal_left, len(self._buf))
        if self._sink is not None:
            self._sink.write(self._buf if take == len(self._buf) else self._buf[:take])
        elif self._doomed is None:
            self._literal += self._buf[:take]
        del self._buf[:take]
        self._literal_left -= take
        if self._literal_left == 0:
            self._end_literal()
        return True

    def _end_literal(self) -> None:
        if self._sink is not None:
            self._literals.append(self._sink)
            self._sink = None
        elif self._doomed is None:
            self._literals.append(bytes(self._literal))
        self._literal = bytearray()
        self._state = _State.LINE

    def _command_line(self, line: bytes, events: list[Event]) -> None:
        first = self._size == 0
        if first:
            if not line:
                events.append(ParseError(tag=None, text="Empty command line"))
                return
            self._tag = tag_of(line)
            self._first = line
        self._size += len(line) + 2
        self._held += len(line) + 2
        if self._size > self.max_command or self._held > self.max_held:
            self._fatal(events, self._tag, "Command too long", code="TOOBIG")
            return
        marker = _literal_marker(line)
        if marker is None:
            self._keep_segment(line)
            self._complete(events)
            return
        size, synchronizing = marker
        if first:
            try:
                check_prefix(line)
            except ProtocolError as error:
                self._doomed = error
        if synchronizing and self._doomed is not None:
            # RFC 9051 7.5: a BAD instead of the continuation stops the client sending more.
            events.append(_error_event(self._doomed))
            self._abandon()
            return
        spoolable = (
            self.spool is not None
            and self._doomed is None
            and append_data(self._first, self._literal_count)
        )
        limit = min(self.max_literal, self.max_command - self._size)
        if not spoolable:
            limit = min(limit, self.max_held - self._held)
        if size > limit or self._literal_count >= self.max_literals:
            if synchronizing and self._tag is not None:
                events.append(LiteralTooBig(tag=self._tag, size=size, limit=max(limit, 0)))
                self._abandon()
            else:
                # The client sends a non-synchronizing literal's octets without waiting
                # (RFC 7888 4): they cannot be told apart from commands, so stop reading.
                self._fatal(events, self._tag, "Literal too big", code="TOOBIG")
            return
        if synchronizing:
            events.append(Continue(tag=self._tag or "", size=size))
        self._keep_segment(line)
        self._literal_count += 1
        self._size += size
        self._literal_left = size
        self._state = _State.LITERAL
        # Kept literals leave max_line of max_held for the lines still to come (MULTIAPPEND).
        room = self.max_held - self.max_line
        if spoolable and (size > self.spool_threshold or self._held + size > room):
            assert self.spool is not None
            self._sink = self.spool(size)
        elif self._doomed is None:
            self._held += size
        if size == 0:
            self._end_literal()

    def _keep_segment(self, line: bytes) -> None:
        if self._doomed is None:
            self._segments.append(line)

    def _complete(self, events: list[Event]) -> None:
        segments, literals, doomed = self._segments, self._literals, self._doomed
        self._new_command()
        if doomed is not None:
            events.append(_error_event(doomed))
            return
        try:
            command = parse_command(segments, literals)
        except ProtocolError as error:
            for sink in literals:
                if not isinstance(sink, bytes):
                    sink.discard()
            events.append(_error_event(error))
            return
        events.append(Parsed(command=command))
        if isinstance(command, _PAUSING):
            self._stopped = True

    def _line_too_long(self, events: list[Event], line: bytes | None) -> None:
        """Refuse a line over max_line: `line` when its LF was seen, else the buffer's start.

        The stream is not trusted any more (the line may have announced a literal), but if the
        server reads on anyway, the rest of the line is skipped without being buffered.
        """
        if self._state is _State.RAW:
            tag = None
        elif self._size:
            tag = self._tag
        else:  # the same prefix whether or not the LF was seen: chunking changes nothing
            tag = tag_of(line[:256] if line is not None else bytes(self._buf[:256]))
        if line is None:
            self._buf.clear()  # holds only the start of this line: no LF was found
            self._scanned = 0
            self._state = _State.SKIP
        else:
            self._state = _State.LINE
        self._abandon()
        events.append(ParseError(tag=tag, text="Line too long", close=True, code="TOOBIG"))

    def _fatal(
        self, events: list[Event], tag: str | None, text: str, code: str | None = None
    ) -> None:
        events.append(ParseError(tag=tag, text=text, close=True, code=code))
        self._buf.clear()
        self._abandon()
        self._state = _State.CLOSED


def _error_event(error: ProtocolError) -> ParseError:
    return ParseError(tag=error.tag, text=error.text, code=error.code)


def _literal_marker(line: bytes) -> tuple[int, bool] | None:
    """(size, synchronizing) when the line ends in `{n}`, `{n+}` (RFC 7888) or `~{n}` (RFC 3516).

    Only the end of a line can announce a literal: that is where the client stops to wait.
    A size too long to be a number still counts as a literal (one too big to accept), so that
    its octets are never read as commands.
    """
    if not line.endswith(b"}"):
        return None
    start = line.rfind(b"{")
    if start < 0:
        return None
    digits = line[start + 1 : -1]
    synchronizing = not digits.endswith(b"+")
    if not synchronizing:
        digits = digits[:-1]
    if not digits or not digits.isdigit():
        return None
    size = int(digits) if len(digits) <= 20 else 1 << 70
    return size, synchronizing
