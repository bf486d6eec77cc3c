"""Lines from a client, bounded: the reader the POP3 and SMTP cores share.

Lines end with LF (a CR before it is taken off; RFC 5321 2.3.8 and RFC 1939 3 say CRLF, and
clients that send a bare LF are read as they always were). A line is never held longer than the
limit the caller gives for it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class LineTooLong:
    """A line over the limit was received and dropped: refuse it, go on with the next."""

    limit: int


class LineReader:
    """Octets fed in, lines out. Memory: what was fed and not yet taken out, and of a line in
    progress at most `limit` octets; a longer line is answered once (`LineTooLong`) and the
    rest of it, up to its LF, is dropped unbuffered."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._discarding = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def take(self, limit: int | None = None) -> bytes:
        """Everything buffered, or its first `limit` octets, taken out (the octets of an SMTP
        DATA section or BDAT chunk go elsewhere)."""
        buf = self._buffer
        if limit is not None and limit < len(buf):
            data = bytes(buf[:limit])
            del buf[:limit]  # from the front of a bytearray: no copy of the rest
            return data
        data = bytes(buf)
        buf.clear()
        return data

    def clear(self) -> None:
        """Forget everything buffered (after STLS: nothing sent before the handshake counts)."""
        self._buffer.clear()
        self._discarding = False

    def next_line(self, limit: int) -> bytes | LineTooLong | None:
        """The next complete line without its CRLF (or bare LF); None when more data is needed."""
        buf = self._buffer
        if self._discarding:
            end = buf.find(b"\n")
            if end < 0:
                buf.clear()
                return None
            del buf[: end + 1]
            self._discarding = False
        end = buf.find(b"\n", 0, limit)
        if end < 0:
            if len(buf) < limit:
                return None
            # Even its LF would make it longer than allowed: refuse it, drop it up to its LF.
            end = buf.find(b"\n", limit)
            if end < 0:
                buf.clear()
                self._discarding = True
            else:
                del buf[: end + 1]
            return LineTooLong(limit=limit)
        line = bytes(buf[:end])
        del buf[: end + 1]
        return line[:-1] if line.endswith(b"\r") else line
