"""BDAT (RFC 3030 2, CHUNKING): a message sent in chunks of counted octets, sans-IO.

`BDAT <size> [LAST]` announces `size` octets that follow its line at once. They are the
message's, raw: no transparency dots and no end marker, and nothing in them is ever read as a
command (where they end is a count, not a pattern, so there is nothing to smuggle past). A
`ChunkReceiver` takes one transaction's chunks in turn: `chunk(size, last=...)` opens one, `feed`
takes at most its `remaining` octets and says how many it took, `done` once the LAST chunk's
octets are in; then `result()`, the same `ReceivedData` as DATA's.

Line ends are judged as DATA judges them (data.py): only CRLF ends a line, a bare CR or LF is an
octet of its line and is kept as it came, never rewritten, and a CRLF split across two chunks is
one line end (the message is the chunks joined). The limits are DATA's:
- a line of more than `max_line` octets with its CRLF is LINE_TOO_LONG (TEXT_LINE_LIMIT, the
  number DATA counts its lines against as sent);
- chunks announcing more than `max_size` octets in all are TOO_BIG as soon as the chunk that
  passes it is announced, before its octets arrive.
Refused, the rest of the message is counted and dropped, as with DATA. So a stored BDAT message
has the shape a stored DATA message has (CRLF line ends, bare CR/LF inside lines as sent, lines
and size within the limits), with one exception: its last line may lack a CRLF (RFC 5322 3.5
allows it; DATA's always has one, the end marker's), and is stored so, byte for byte.

Memory: as DATA's (data.py), plus one CR of a line end that may continue in the next octets.
"""

from __future__ import annotations

from mailfort.protocol.smtp.data import Body, Outcome


class ChunkReceiver(Body):
    """The BDAT chunks of one transaction. `chunk`, then `feed` until `remaining` is 0; after
    the LAST chunk, `done` and `result()`."""

    UNSTUFF = False
    # Per instance once set (numbers: the class's value stands until then). The tail (Body's)
    # holds the virtual CRLF, then at most a CR whose LF may be the next octet: the two are one
    # line end, wherever the chunks were cut.
    _remaining = 0  # octets of the current chunk still to come
    _last = False  # the current chunk is the LAST
    _announced = 0  # octets of all chunks announced so far
    chunk_size = 0  # the current (or last) chunk's size, as announced
    chunks = 0  # chunks announced

    @property
    def remaining(self) -> int:
        """Octets of the current chunk still to come."""
        return self._remaining

    def chunk(self, size: int, *, last: bool) -> None:
        """A BDAT command: the next `size` octets are the message's."""
        if self._done or self._remaining:
            raise RuntimeError("a chunk is still open, or the message is over")
        self.chunks += 1
        self.chunk_size = size
        self._remaining = size
        self._last = last
        self._announced += size
        over = self._max_size and self._announced > self._max_size
        if over and self._outcome is Outcome.COMPLETE:
            self._refuse(Outcome.TOO_BIG)
        if not size:
            self._end_chunk()

    def feed(self, data: bytes) -> int:
        """Take the current chunk's octets from the front of `data`; how many it took."""
        want = self._remaining
        if not want or not data:
            return 0
        taken = min(want, len(data))
        self._remaining = want - taken
        if self._outcome is not Outcome.COMPLETE:
            self._judged += taken  # refused: only counted
        else:
            piece = data if taken == len(data) else data[:taken]
            tail = self._tail
            stream = tail + piece if tail else piece
            end = self._last and not self._remaining
            keep = 1 if not end and stream.endswith(b"\r") else 0
            self._judge(stream, len(stream) - keep)
            self._tail = stream[len(stream) - keep :]
        if not self._remaining:
            self._end_chunk()
        return taken

    def _end_chunk(self) -> None:
        if not self._last:
            return
        tail, self._tail = self._tail, b""
        self._judge(tail, len(tail))  # a CR at the very end is an octet of the last line
        self._done = True
