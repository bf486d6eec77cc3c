"""The DATA section of an SMTP transaction, sans-IO: the bytes after `354` in, one message out.

Feed a `DataReceiver` whatever arrives, in pieces of any size; it finds the end, undoes the
dot-stuffing and enforces the limits, and says how much of each piece was its own (bytes after the
end belong to the next pipelined command).

- Only CRLF "." CRLF ends the data (RFC 5321 4.1.1.4). A bare LF or CR next to a dot is data, never
  an end: that is what keeps SMTP smuggling out. The data begins as if after a CRLF, so a first
  line "." is an empty message.
- A line that begins with "." loses that dot (4.5.2). Lines end with CRLF only; a bare LF or CR is
  part of its line.
- Limits, checked line by line in order, the first line that breaks one deciding:
  a line longer than `max_line` octets with its CRLF, as sent (so its transparency dot counts)
  is LINE_TOO_LONG; the octets so far, as sent and without the end marker, more than `max_size`
  (when set) is TOO_BIG; a line that does both is too long. After either, the rest of the data is
  read and thrown away: the refusal is answered after the end, when the client listens again.

The message comes out without its transparency dots, in `ReceivedData.content`; or, once it has
grown past `spool_threshold` with a `spool` given (a factory the server passes in: this module
opens no files), in the `DataSink` that factory returned, written as the octets arrive
(`ReceivedData.spooled`).

Memory: the message within its size limit (with a spool: up to `spool_threshold`), one line,
and four octets of a possibly started end marker; once refused, only the four octets.

`Body` holds what DATA and BDAT (`chunks.py`) share: the limits, keeping and spooling the
message; only DATA removes transparency dots.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Final, Protocol

from mailfort.protocol.smtp import replies as R

END: Final = b"\r\n.\r\n"
CRLF: Final = b"\r\n"
# RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF; one more for a
# transparency dot (4.5.2), as the server always allowed.
TEXT_LINE_LIMIT: Final = 1001
_PREFIXES: Final = tuple(END[:k] for k in range(len(END) - 1, 0, -1))  # longest first
SPOOL_THRESHOLD: Final = 64 * 1024


class DataSink(Protocol):
    """Where a message too large to keep in memory goes (the server's spool file)."""

    def write(self, data: bytes | bytearray) -> None:
        """Take the next octets of the message; copy them, do not keep `data`."""


class Outcome(Enum):
    COMPLETE = "complete"
    LINE_TOO_LONG = "line_too_long"
    TOO_BIG = "too_big"


_REFUSALS: Final = {Outcome.LINE_TOO_LONG: R.LINE_TOO_LONG, Outcome.TOO_BIG: R.DATA_TOO_BIG}


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedData:
    outcome: Outcome
    # the message with the transparency dots removed; b"" unless COMPLETE and kept in memory
    content: bytes
    size: int  # octets received as sent, without the end marker
    spooled: DataSink | None = None  # holds the message instead, when it was spooled

    @property
    def refusal(self) -> str | None:
        """The reply that refuses this data (the client was at fault), or None."""
        return _REFUSALS.get(self.outcome)


class Body:
    """A message as its octets are judged: the line and size limits, the transparency dots
    (DATA's: `UNSTUFF`), the spool. Its readers (`DataReceiver` here, `ChunkReceiver` for BDAT)
    find where the message's octets are and hand them to `_judge`, never splitting a CRLF
    between two calls, the first call's octets preceded by a virtual CRLF."""

    UNSTUFF: ClassVar[bool]

    def __init__(
        self,
        *,
        max_size: int | None,
        max_line: int = TEXT_LINE_LIMIT,
        spool: Callable[[], DataSink] | None = None,
        spool_threshold: int = SPOOL_THRESHOLD,
    ) -> None:
        self._max_size = max_size or 0  # 0: no limit
        self._max_line = max_line
        self._spool = spool
        self._spool_threshold = spool_threshold
        # Octets fed and not judged yet, the reader's to keep (DATA: a possible start of the end
        # marker; BDAT: a CR whose LF may come next). It starts as the virtual CRLF.
        self._tail = CRLF
        # The message so far (without its transparency dots), after the virtual CRLF; unless it
        # went to the sink.
        self._parts: list[bytes] = []
        self._kept = 0  # octets in _parts
        self._sink: DataSink | None = None
        self._line = 0  # octets of the current, unfinished line among the judged bytes
        self._complete = -len(CRLF)  # octets of finished lines (the virtual CRLF is not data)
        self._judged = -len(CRLF)
        self._outcome = Outcome.COMPLETE
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    @property
    def refusal(self) -> str | None:
        """The reply that refuses the message (the client broke a limit) once it is, or None."""
        return _REFUSALS.get(self._outcome)

    def result(self) -> ReceivedData:
        if not self._done:
            raise RuntimeError("the data has not ended yet")
        size = self._judged
        if self._outcome is not Outcome.COMPLETE:
            return ReceivedData(outcome=self._outcome, content=b"", size=size)
        if self._sink is not None:
            sink = self._sink
            return ReceivedData(outcome=Outcome.COMPLETE, content=b"", size=size, spooled=sink)
        content = b"".join(self._parts)[len(CRLF) :]
        return ReceivedData(outcome=Outcome.COMPLETE, content=content, size=size)

    def _keep(self, chunk: bytes) -> None:
        """Add judged octets to the message, without their transparency dots (DATA's).

        Every line start follows a CRLF (the first one the virtual CRLF), so the replacement
        finds exactly the lines that begin with a dot; two of them cannot overlap. Nor can one
        span two chunks: a judged chunk never ends in CR or CRLF (those stay in the tail, as a
        possible start of the end marker), and the next chunk starts with that tail; only the
        last chunk ends in CRLF, the one that ends the last line."""
        content = chunk.replace(b"\r\n.", CRLF) if self.UNSTUFF else chunk
        if self._sink is not None:
            self._sink.write(content)
            return
        self._parts.append(content)
        self._kept += len(content)
        if self._spool is not None and self._kept - len(CRLF) > self._spool_threshold:
            self._sink = self._spool()
            self._sink.write(b"".join(self._parts)[len(CRLF) :])
            self._parts, self._kept = [], 0

    def _judge(self, stream: bytes, stop: int) -> None:
        """Account for stream[:stop], which holds no part of a possible end marker (DATA) and
        does not end in a CR whose LF is yet to come (both)."""
        if stop <= 0:
            return
        self._judged += stop
        if self._outcome is not Outcome.COMPLETE:
            return
        chunk = stream[:stop]
        first = chunk.find(CRLF)
        if first < 0:
            self._line += stop
        else:
            last = chunk.rfind(CRLF)
            completed = self._complete + self._line + last + len(CRLF)
            if (
                self._line + first + len(CRLF) > self._max_line
                or not self._lines_fit(chunk, first + len(CRLF), last)
                or (self._max_size and completed > self._max_size)
            ):
                offence = self._first_offence(chunk.split(CRLF))
                if offence is not None:
                    self._refuse(offence)
                    return
            self._complete = completed
            self._line = stop - last - len(CRLF)
        if self._line + len(CRLF) > self._max_line:
            # This line cannot end in time, and no earlier line broke a limit.
            self._refuse(Outcome.LINE_TOO_LONG)
            return
        self._keep(chunk)

    def _lines_fit(self, chunk: bytes, start: int, end: int) -> bool:
        """True when every line from `start` (a line start) to the CRLF at `end` fits max_line.

        A line too long holds max_line - 1 octets or more before its CRLF, so it holds a whole
        window of `step + 1` octets starting at start + k * step without a CRLF (step being half
        that length). A CRLF in every such window proves all lines short, with one search per
        `step` octets instead of one per line; a window without one sends the caller the slow
        way, line by line."""
        step = max((self._max_line - 1) // 2, 1)
        return all(chunk.find(CRLF, at, at + step + 1) >= 0 for at in range(start, end, step))

    def _first_offence(self, lines: list[bytes]) -> Outcome | None:
        """Which limit the first offending finished line in `lines` breaks, if one does."""
        size = self._complete
        for index, line in enumerate(lines[:-1]):
            length = len(line) + len(CRLF) + (self._line if index == 0 else 0)
            if length > self._max_line:
                return Outcome.LINE_TOO_LONG
            size += length
            if self._max_size and size > self._max_size:
                return Outcome.TOO_BIG
        return None

    def _refuse(self, outcome: Outcome) -> None:
        self._outcome = outcome
        self._parts, self._kept = [], 0
        self._sink = None  # the server disposes of what it holds


class DataReceiver(Body):
    """One DATA section. `feed` until `done`, then `result()`. Its tail is the longest end of the
    stream so far that could begin the end marker."""

    UNSTUFF = True

    @property
    def pending(self) -> int:
        """Octets at the end of what was fed that may begin the end marker (0 to 4)."""
        return len(self._tail)

    @property
    def needed(self) -> int:
        """The fewest octets that must still arrive: a reader may take this many without ever
        taking bytes past the end."""
        return len(END) - len(self._tail)

    def feed(self, data: bytes) -> int:
        """Take `data`; returns how many of its octets belong to this DATA section."""
        if self._done or not data:
            return 0
        tail = self._tail
        stream = tail + data if tail else data
        end = stream.find(END)
        if end >= 0:
            self._judge(stream, end + len(CRLF))  # that CRLF ends the last line
            self._tail = b""
            self._done = True
            return end + len(END) - len(tail)
        keep = next((len(p) for p in _PREFIXES if stream.endswith(p)), 0)
        self._judge(stream, len(stream) - keep)
        self._tail = stream[len(stream) - keep :]
        return len(data)
