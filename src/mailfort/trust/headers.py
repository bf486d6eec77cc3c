"""The header block of an incoming message, read tolerantly, with each field's place in it.

Mail from the internet is not always plain RFC 5322: the checks read what they can (a line that
is not a field is skipped, not a reason to stop) and never look past `MAX_HEADER_BLOCK` octets.
Offsets let a field be cut out of the message without parsing it again (RFC 8601 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mailfort.mail.originator import MAX_HEADER_BLOCK

MAX_FIELDS: Final = 2000  # fields read from one header block; the rest are not looked at


@dataclass(frozen=True, slots=True)
class Field:
    name: str  # lower case
    value: str  # unfolded (CRLF removed), undecoded octets kept as surrogates
    start: int  # offset of the field's first octet in the message
    end: int  # offset just past its last CRLF


def header_end(message: bytes) -> int:
    """Offset of the empty line that ends the header block (or of the block's bound)."""
    if message.startswith(b"\r\n"):
        return 0
    end = message.find(b"\r\n\r\n", 0, MAX_HEADER_BLOCK + 4)
    if end >= 0:
        return end + 2
    return min(len(message), MAX_HEADER_BLOCK)


def fields(message: bytes) -> list[Field]:
    end = header_end(message)
    found: list[Field] = []
    at = 0
    current: tuple[str, int] | None = None
    while at < end and len(found) < MAX_FIELDS:
        line_end = message.find(b"\r\n", at, end)
        stop = end if line_end < 0 else line_end + 2
        line = message[at : stop if line_end < 0 else line_end]
        if line[:1] in (b" ", b"\t"):
            at = stop
            continue  # a continuation: part of the field before it
        if current is not None:
            found.append(_field(message, current, at))
            current = None
        colon = line.find(b":")
        name = line[:colon].strip() if colon > 0 else b""
        if name and all(33 <= c <= 126 for c in name):
            current = (name.decode("ascii").lower(), at)
        at = stop
    if current is not None and len(found) < MAX_FIELDS:
        found.append(_field(message, current, at))
    return found


def _field(message: bytes, current: tuple[str, int], end: int) -> Field:
    name, start = current
    raw = message[start:end]
    value = raw[raw.find(b":") + 1 :].replace(b"\r\n", b"")
    return Field(name, value.decode("utf-8", "surrogateescape").strip(), start, end)
