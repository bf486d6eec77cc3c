"""Bounds on an HTTP request head: its size in all, and the size of its request line.

A head may take at most `MAX_HEAD` bytes (request line, header fields and the blank line), past
which the answer is `431 Request Header Fields Too Large` (RFC 6585 §5); a request target may
take at most `MAX_TARGET` bytes, past which it is `414 URI Too Long` (RFC 9110 §15.5.15). These
are about what nginx and Apache allow by default (8 KB a line).

h11 alone does not bound a head that arrives in one read: its `max_incomplete_event_size` counts
only what it buffers while the head is incomplete, so a 60 KB header sent at once was parsed and
served. Two checks therefore run:

* `HeadMeter`, on the raw bytes before h11 sees them (`server._BoundedH11`): it refuses as soon
  as the bound is passed, whatever the chunking, so nothing past it is buffered or parsed;
* `refusal(scope)`, on each parsed request (`guard.Guard`): it also covers a head that reached
  h11 without passing the meter (pipelined behind an earlier request).

Both are plain code on bytes, with no I/O, so they are fuzzed (tests/unit/status/test_http_head.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

MAX_HEAD: Final = 16 * 1024
MAX_TARGET: Final = 8 * 1024
# The request line: method, target and version ("PROPPATCH " + target + " HTTP/1.1\r\n").
MAX_REQUEST_LINE: Final = MAX_TARGET + 32

URI_TOO_LONG: Final = 414
HEAD_TOO_LARGE: Final = 431

_ENDS: Final = (b"\n\r\n", b"\n\n")  # the blank line that ends a head (h11 takes a bare LF too)


class HeadMeter:
    """Counts one request head as its bytes arrive; `feed` says when it grew too large.

    Memory: two bytes carried between chunks, whatever is fed.
    """

    def __init__(self, *, max_head: int = MAX_HEAD, max_line: int = MAX_REQUEST_LINE) -> None:
        self.max_head = max_head
        self.max_line = max_line
        self.reset()

    def reset(self) -> None:
        """A new head starts with the next byte fed."""
        self.seen = 0  # bytes of this head fed so far
        self.complete = False  # its blank line arrived (within bounds)
        self._line_ended = False
        self._tail = b""

    def feed(self, data: bytes) -> int:
        """Take the next bytes of the connection; returns 0 while the head is within bounds
        (or complete: later bytes are a body, not counted), else the status to refuse it
        with (`URI_TOO_LONG`, `HEAD_TOO_LARGE`)."""
        if self.complete or not data:
            return 0
        start = self.seen  # offset of data[0] in the head
        if not self._line_ended:
            newline = data.find(b"\n")
            if newline < 0:
                if start + len(data) > self.max_line:
                    return URI_TOO_LONG
            elif start + newline + 1 > self.max_line:
                return URI_TOO_LONG
            else:
                self._line_ended = True
        window = self._tail + data
        ends = [(found, end) for end in _ENDS if (found := window.find(end)) >= 0]
        if ends:
            found, end = min(ends)
            if start - len(self._tail) + found + len(end) > self.max_head:
                return HEAD_TOO_LARGE
            self.complete = True
            self.seen = start - len(self._tail) + found + len(end)
            return 0
        self.seen = start + len(data)
        if self.seen > self.max_head:
            return HEAD_TOO_LARGE
        self._tail = window[-2:]
        return 0


def refusal(
    method: str, target: bytes, headers: Iterable[tuple[bytes, bytes]], http_version: str = "1.1"
) -> int:
    """0 for a parsed request whose head is within bounds, else the status to refuse it with.
    The size is the head as sent, up to white space h11 dropped around field values."""
    if len(target) > MAX_TARGET:
        return URI_TOO_LONG
    size = len(method) + len(target) + len(http_version) + 9  # "M T HTTP/v\r\n"
    for name, value in headers:
        size += len(name) + len(value) + 4  # "name: value\r\n"
        if size + 2 > MAX_HEAD:
            return HEAD_TOO_LARGE
    return 0
