"""Writing IMAP responses (RFC 9051 7): strings, lists, status lines, FETCH items, dates, sets.

Every function returns wire octets (or, for `format_seqset`, text) and never raises on data
from the store: a value that cannot travel as an atom or a quoted string becomes a literal.
Text written into status lines is stripped of CR, LF and other controls, so nothing a client
or a message supplied can end a response line early.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Sequence
from typing import Final

from mailfort.protocol.imap.commands import FetchAtt, FetchKind, Section

CRLF: Final = b"\r\n"
MAX_QUOTED: Final = 1000  # longer strings go as literals: some clients limit their line length

_ATOM: Final = re.compile(rb'[^\x00-\x20(){%*"\\\]\x7f-\xff]+')  # ATOM-CHAR (RFC 9051 9)
_ASTRING: Final = re.compile(rb'[^\x00-\x20(){%*"\\\x7f-\xff]+')  # ASTRING-CHAR: ATOM-CHAR / "]"
_QUOTABLE_7BIT: Final = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*")  # TEXT-CHAR
_QUOTABLE_8BIT: Final = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\xff]*")  # + utf8-quoted
_CONTROLS: Final = re.compile(r"[\x00-\x1f\x7f]+")
_MONTHS: Final = "JanFebMarAprMayJunJulAugSepOctNovDec"
STATUSES: Final = frozenset({"OK", "NO", "BAD", "PREAUTH", "BYE"})


def _octets(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        pass
    try:  # text decoded with surrogateescape: give back its octets
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # any other lone surrogate cannot be sent at all: "?"
        return value.encode("utf-8", "replace")


def _clean(text: str) -> str:
    return _CONTROLS.sub(" ", text)


# -- strings (RFC 9051 4.3) ----------------------------------------------------------------------
def literal(data: bytes, *, binary: bool = False) -> bytes:
    """`{n}CRLF` and the octets; `~{n}` (literal8, RFC 3516 4.2) only in BINARY responses."""
    return b"%s{%d}\r\n%s" % (b"~" if binary else b"", len(data), data)


def _quotable(data: bytes, utf8: bool) -> bool:
    if len(data) > MAX_QUOTED:
        return False
    if _QUOTABLE_7BIT.fullmatch(data):
        return True
    if not utf8 or not _QUOTABLE_8BIT.fullmatch(data):
        return False
    try:  # with UTF8=ACCEPT / IMAP4rev2, quoted strings may hold UTF-8 (RFC 9051 9: utf8-quoted)
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def quoted(value: str | bytes, *, utf8: bool = False) -> bytes:
    """An IMAP string: quoted when it can be, else a literal.

    A literal is needed for CR, LF, NUL, long values, and 8-bit octets unless `utf8` (the
    client enabled UTF8=ACCEPT or IMAP4rev2) and they are valid UTF-8.
    """
    data = _octets(value)
    if _quotable(data, utf8):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data)


def astring(value: str | bytes, *, utf8: bool = False) -> bytes:
    """An atom when the value is one (and not NIL, which would read as nothing), else a string."""
    data = _octets(value)
    if _ASTRING.fullmatch(data) and data.upper() != b"NIL":
        return data
    return quoted(data, utf8=utf8)


def nstring(value: str | bytes | None, *, utf8: bool = False) -> bytes:
    return b"NIL" if value is None else quoted(value, utf8=utf8)


def paren_list(items: Iterable[bytes]) -> bytes:
    return b"(" + b" ".join(items) + b")"


def format_flags(flags: Iterable[str]) -> bytes:
    """`(\\Seen $Forwarded)` in a stable order (sorted), for FLAGS and PERMANENTFLAGS."""
    return paren_list(f.encode("utf-8") for f in sorted(flags))


# -- status and continuation lines (RFC 9051 7.1, 7.5) --------------------------------------------
def tagged(tag: str, status: str, text: str, code: str | None = None) -> bytes:
    """`tag OK [code] text` CRLF; `text` is made safe for one line."""
    return _status_line(tag, status, text, code)


def untagged(text: str | bytes) -> bytes:
    """`* text` CRLF. Text (str) is made safe for one line; bytes are sent as they are (they may
    carry literals) and must be built by these helpers."""
    if isinstance(text, bytes):
        return b"* " + text + CRLF
    return b"* " + _octets(_clean(text)) + CRLF


def untagged_status(status: str, text: str, code: str | None = None) -> bytes:
    """`* OK [code] text`, `* BYE ...`, `* NO ...` (RFC 9051 7.1)."""
    return _status_line("*", status, text, code)


def _status_line(tag: str, status: str, text: str, code: str | None) -> bytes:
    if status not in STATUSES:
        raise ValueError(f"not a status: {status!r}")  # our bug, not the client's
    text = _clean(text).strip() or "Completed"  # resp-text needs 1*TEXT-CHAR
    if code is not None:
        text = "[" + _clean(code).replace("]", " ") + "] " + text
    return _octets(f"{tag} {status} {text}") + CRLF


def continuation(text: str | bytes = "") -> bytes:
    """`+ text` CRLF; bytes are base64 challenge data for AUTHENTICATE (RFC 9051 6.2.2)."""
    if isinstance(text, bytes):
        return b"+ " + text + CRLF
    return b"+ " + _octets(_clean(text)) + CRLF


# -- FETCH (RFC 9051 7.5.2) ----------------------------------------------------------------------
def fetch_response(seq: int, items: Sequence[tuple[bytes, bytes]]) -> bytes:
    """`* seq FETCH (label value label value)` CRLF.

    One join of the pieces: a value may be a whole message, and joining `label + b" " + value`
    first would copy it once more (a 1 MB body took 50 times as long that way).
    """
    parts = [b"* %d FETCH (" % seq]
    for label, value in items:
        parts += (label, b" ", value, b" ")
    if items:
        parts[-1] = b")\r\n"
    else:
        parts.append(b")\r\n")
    return b"".join(parts)


def _section_label(section: Section | None) -> bytes:
    if section is None:
        return b"[]"
    spec = ".".join(str(n) for n in section.part)
    if section.text:
        spec = f"{spec}.{section.text}" if spec else section.text
    label = spec.encode("ascii")
    if section.text and section.text.startswith("HEADER.FIELDS"):
        label += b" " + paren_list(astring(name) for name in section.fields)
    return b"[" + label + b"]"


def fetch_label(att: FetchAtt) -> bytes:
    """The name a FETCH response gives an attribute: `BODY[1.2.HEADER.FIELDS (SUBJECT)]<0>`.

    BODY.PEEK and BINARY.PEEK answer as BODY and BINARY; a partial shows only its origin
    (RFC 9051 7.5.2: `BODY[<section>]<<origin octet>>`).
    """
    kind = att.kind
    if kind is FetchKind.BODY_SECTION:
        label = b"BODY" + _section_label(att.section)
    elif kind is FetchKind.BINARY:
        label = b"BINARY" + _section_label(att.section)
    elif kind is FetchKind.BINARY_SIZE:
        return b"BINARY.SIZE" + _section_label(att.section)
    else:
        return str(kind.value).encode("ascii")
    if att.partial is not None:
        label += b"<%d>" % att.partial[0]
    return label


# -- dates and sets ------------------------------------------------------------------------------
def format_internaldate(moment: datetime.datetime) -> bytes:
    """`25-Nov-2026 23:51:43 +0000`, without the quotes (RFC 9051 9: date-time).

    The day is space-padded (date-day-fixed). A naive datetime is taken as UTC; the zone is
    the datetime's own offset, in whole minutes.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    offset = moment.utcoffset() or datetime.timedelta()
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return (
        f"{moment.day:2d}-{_MONTHS[moment.month * 3 - 3 : moment.month * 3]}-{moment.year:04d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} "
        f"{sign}{hours:02d}{minutes:02d}"
    ).encode("ascii")


def format_seqset(numbers: Iterable[int]) -> str:
    """`1:3,5,7:9` for a set of numbers (any order, repeats allowed); "" when empty.

    For COPYUID/APPENDUID (RFC 4315 3), ESEARCH ALL (RFC 4731 3.1) and MODIFIED (RFC 7162).
    """
    runs: list[str] = []
    ordered = sorted(set(numbers))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        runs.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(runs)


# -- whole untagged responses that are easy to get subtly wrong -----------------------------------
def esearch(
    tag: str,
    *,
    uid: bool,
    minimum: int | None = None,
    maximum: int | None = None,
    all_numbers: Sequence[int] | None = None,
    count: int | None = None,
    modseq: int | None = None,
) -> bytes:
    """`* ESEARCH (TAG "a1") UID MIN 1 MAX 9 ALL 1:3,9 COUNT 4` (RFC 4731 3.1).

    MIN, MAX and ALL are left out when nothing matched, as the RFC requires; pass only the
    items the client asked for. MODSEQ per RFC 7162 3.1.5.
    """
    parts = [b'ESEARCH (TAG "' + tag.encode("ascii") + b'")']
    if uid:
        parts.append(b"UID")
    if minimum is not None:
        parts.append(b"MIN %d" % minimum)
    if maximum is not None:
        parts.append(b"MAX %d" % maximum)
    if all_numbers:
        parts.append(b"ALL " + format_seqset(all_numbers).encode("ascii"))
    if count is not None:
        parts.append(b"COUNT %d" % count)
    if modseq is not None:
        parts.append(b"MODSEQ %d" % modseq)
    return untagged(b" ".join(parts))


def search_response(numbers: Iterable[int], *, modseq: int | None = None) -> bytes:
    """`* SEARCH 2 3 5` and, with CONDSTORE, ` (MODSEQ n)` (RFC 7162 3.1.5; not when empty)."""
    listed = " ".join(str(n) for n in numbers)
    text = f"SEARCH {listed}" if listed else "SEARCH"
    if listed and modseq is not None:
        text += f" (MODSEQ {modseq})"
    return untagged(text)


def list_response(
    attributes: Iterable[str],
    delimiter: str | None,
    name: str,
    *,
    utf8: bool = False,
    lsub: bool = False,
    extended: Iterable[bytes] = (),
) -> bytes:
    """`* LIST (\\HasNoChildren) "/" "Sent Items"` (RFC 9051 7.3.1); `name` as on the wire
    (already modified UTF-7 unless UTF-8 was enabled). `extended` items, e.g.
    `b'("CHILDINFO" ("SUBSCRIBED"))'`, follow the name (RFC 5258 3.5)."""
    delim = b"NIL" if delimiter is None else quoted(delimiter)
    line = b"%s %s %s %s" % (
        b"LSUB" if lsub else b"LIST",
        paren_list(a.encode("ascii") for a in attributes),
        delim,
        astring(name, utf8=utf8),
    )
    for item in extended:
        line += b" " + item
    return untagged(line)


def status_response(name: str, items: Iterable[tuple[str, int]], *, utf8: bool = False) -> bytes:
    """`* STATUS "Sent Items" (MESSAGES 3 UNSEEN 1)` (RFC 9051 7.3.2)."""
    listed = paren_list(b"%s %d" % (item.encode("ascii"), value) for item, value in items)
    return untagged(b"STATUS " + astring(name, utf8=utf8) + b" " + listed)


def flags_response(flags: Iterable[str]) -> bytes:
    """`* FLAGS (\\Answered ... $Forwarded)` in the order given (RFC 9051 7.3.5)."""
    return b"* FLAGS " + paren_list(f.encode("utf-8") for f in flags) + CRLF


def exists(count: int) -> bytes:
    return b"* %d EXISTS\r\n" % count  # RFC 9051 7.4.1


def recent(count: int) -> bytes:
    return b"* %d RECENT\r\n" % count  # RFC 3501 7.3.2 (IMAP4rev1 only)


def expunge(seq: int) -> bytes:
    return b"* %d EXPUNGE\r\n" % seq  # RFC 9051 7.5.1


def capability_response(capabilities: str) -> bytes:
    return untagged("CAPABILITY " + capabilities)  # RFC 9051 7.2.2


def enabled_response(capabilities: Iterable[str]) -> bytes:
    return untagged("ENABLED " + " ".join(capabilities))  # RFC 5161 3.2


def namespace_response(delimiter: str) -> bytes:
    """One personal namespace with no prefix; no other users' or shared (RFC 2342 5)."""
    return untagged(b'NAMESPACE (("" ' + quoted(delimiter) + b")) NIL NIL")


def id_response(fields: Sequence[tuple[str, str]]) -> bytes:
    """`* ID ("name" "mailfort" ...)` (RFC 2971 3.2); NIL when there is nothing to say."""
    if not fields:
        return untagged(b"ID NIL")
    return untagged(b"ID " + paren_list(quoted(v) for pair in fields for v in pair))


def quota_response(root: str, resources: Iterable[tuple[str, int, int]]) -> bytes:
    """`* QUOTA "" (STORAGE 12 1024)` (RFC 9208 5.1): (resource, usage, limit) in its units."""
    listed = paren_list(
        b"%s %d %d" % (r.encode("ascii"), used, limit) for r, used, limit in resources
    )
    return untagged(b"QUOTA " + astring(root) + b" " + listed)


def quotaroot_response(name: str, roots: Iterable[str], *, utf8: bool = False) -> bytes:
    """`* QUOTAROOT INBOX ""` (RFC 9208 5.2); `name` as on the wire, as for LIST."""
    line = b"QUOTAROOT " + astring(name, utf8=utf8)
    for root in roots:
        line += b" " + astring(root)
    return untagged(line)
