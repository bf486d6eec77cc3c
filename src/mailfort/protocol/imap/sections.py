"""FETCH body sections: BODY[section]<partial> and BINARY[section] (RFC 9051 6.4.5, RFC 3516).

Part numbering (RFC 9051 6.4.5): a message that is not multipart has only part 1, its body;
the parts of a multipart are numbered 1, 2, … in order; a message/rfc822 part's sub-parts are
those of the message it encapsulates (so for a non-multipart encapsulated message, `2.1` is its
body). HEADER, HEADER.FIELDS[.NOT] and TEXT after a part number apply to the message inside a
message/rfc822 part; MIME is the part's own MIME header.

A section that does not exist (part 9 of a two-part message, `1.HEADER` of a text part) is the
empty string, as Dovecot answers; None is kept for a section spec that makes no sense at all
(MIME without a part number), which the parser should have refused with BAD.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailfort.mail.mime import Part, decode_body, header_bounds, scan_fields

if TYPE_CHECKING:  # the IMAP AST is only a type here; `mail/` does not depend on `protocol/`
    from mailfort.protocol.imap.commands import Section


def part_at(root: Part, path: tuple[int, ...]) -> Part | None:
    """The part a section's part numbers name; `root` for (); None when there is none."""
    current = root
    numbered = _numbered_message(root)
    for n in path:
        if not 1 <= n <= len(numbered):
            return None
        current = numbered[n - 1]
        numbered = _numbered_part(current)
    return current


def _numbered_message(message: Part) -> tuple[Part, ...]:
    return message.children if message.is_multipart else (message,)


def _numbered_part(part: Part) -> tuple[Part, ...]:
    if part.is_multipart:
        return part.children
    if part.message is not None:
        return _numbered_message(part.message)
    return ()


def section(data: bytes, root: Part, sec: Section) -> bytes | None:
    """The bytes of BODY[sec] exactly as stored; b"" when it does not exist; None if invalid."""
    if not sec.part:
        if sec.text is None:
            return data[root.header_start : root.body_end]
        return _message_text(data, root, sec)
    part = part_at(root, sec.part)
    if sec.text is None:
        return b"" if part is None else data[part.body_start : part.body_end]
    if sec.text == "MIME":
        return b"" if part is None else data[part.header_start : part.header_end]
    if sec.text not in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"):
        return None
    if part is None or part.message is None:
        return b""  # RFC 9051 6.4.5: these apply only to a MESSAGE/RFC822 part
    return _message_text(data, part.message, sec)


def _message_text(data: bytes, message: Part, sec: Section) -> bytes | None:
    if sec.text == "HEADER":
        return data[message.header_start : message.header_end]
    if sec.text == "TEXT":
        return data[message.body_start : message.body_end]
    if sec.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return header_fields(data, message, sec.fields, exclude=sec.text == "HEADER.FIELDS.NOT")
    return None


def header_fields(data: bytes, message: Part, names: tuple[str, ...], *, exclude: bool) -> bytes:
    """HEADER.FIELDS (names) or HEADER.FIELDS.NOT (names): the matching fields as stored, in
    their order, folding kept, then the blank line. Matching is case-insensitive (RFC 9051
    6.4.5); the blank line is included whenever the message has one."""
    return _pick_fields(
        data, message.header_start, message.fields_end, message.header_end, names, exclude
    )


def header_block_fields(header: bytes, names: tuple[str, ...], *, exclude: bool) -> bytes:
    """HEADER.FIELDS[.NOT] of a header block on its own (a cached BODY[HEADER]), without
    parsing a MIME tree for it: the server's FETCH of list headers needs nothing more."""
    fields_end, header_end = header_bounds(header, 0, len(header))
    return _pick_fields(header, 0, fields_end, header_end, names, exclude)


def _pick_fields(
    data: bytes,
    start: int,
    fields_end: int,
    header_end: int,
    names: tuple[str, ...],
    exclude: bool,
) -> bytes:
    wanted = {name.lower() for name in names} - {""}  # "": a line that is no field
    # Scanned afresh rather than read from `Part.fields`, which is capped at MAX_FIELDS.
    fields = scan_fields(data, start, fields_end)
    picked = [data[f.start : f.end] for f in fields if (f.name in wanted) != exclude]
    return b"".join(picked) + data[fields_end:header_end]


def partial(data: bytes, origin: int, count: int) -> bytes:
    """`<origin.count>`: at most `count` octets from `origin`; empty past the end (RFC 9051
    6.4.5)."""
    if origin < 0 or count <= 0:
        return b""
    return data[origin : origin + count]


def binary(data: bytes, root: Part, sec: Section) -> bytes | None:
    """BINARY[sec] (RFC 3516 4.2, RFC 9051 6.4.5): the section with its Content-Transfer-Encoding
    undone. None when that encoding is unknown: the server answers NO [UNKNOWN-CTE]. A section
    that does not exist is b"". BINARY[] is the whole message, as stored (a message's own
    header is not encoded)."""
    if sec.text is not None:
        raise ValueError("BINARY takes part numbers only (RFC 9051 section-binary)")
    if not sec.part:
        return data[root.header_start : root.body_end]
    part = part_at(root, sec.part)
    if part is None:
        return b""
    return decode_body(data[part.body_start : part.body_end], part.encoding)
