"""A lightweight MIME tree over a message's stored bytes (RFC 2045, RFC 2046, RFC 2231, RFC 2047).

`parse(data)` never raises and never copies a body: every `Part` records byte offsets into
`data`, so IMAP sections are sliced out exactly as stored (DESIGN: bytes are sacred). It accepts
CRLF and bare LF line endings, 8-bit headers and bodies, and broken structure: a missing final
boundary, a multipart without a boundary parameter, garbage Content-Type values.

Offsets of one part (all into the same `data`):

    header_start ─ fields ─ fields_end ─ blank line ─ header_end == body_start ─ body ─ body_end

When a part has no blank line, its whole range is header: fields_end == header_end == body_end.
The line ending before a boundary line belongs to the boundary (RFC 2046 5.1.1), so it is in no
part's body.

Decoding is done here rather than with `email.utils`, because `email.utils` imports `socket`,
which nothing that `protocol/` imports may pull in (tests/unit/test_sans_io.py).

Bounds: nesting deeper than MAX_DEPTH and parts beyond MAX_PARTS are not split further, and at
most MAX_FIELDS header fields per part are indexed, so that hostile input costs linear time and
bounded memory. Bodies are decoded in slices of SLICE octets: one C call over a whole 25 MB part
(a regex substitution, a codec) holds the interpreter lock for up to a second, and with it the
server's event loop, even when the decoding runs on another thread.
"""

from __future__ import annotations

import binascii
import codecs
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

MAX_DEPTH = 50
MAX_PARTS = 5_000
MAX_FIELDS = 5_000
SLICE = 256 * 1024  # a multiple of 4: base64 slices decode on their own

_HEADER_END = re.compile(rb"\n\r?\n")
_DELIMITER_TAIL = re.compile(rb"[ \t\r]*(?:\n|\Z)")  # transport padding, RFC 2046 5.1.1
# RFC 2045 5.1: token := 1*<any (US-ASCII) CHAR except SPACE, CTLs, or tspecials>
_TOKEN = re.compile(rb'[^\x00-\x20\x7f-\xff()<>@,;:\\"/\[\]?=]+')
_LOOSE_VALUE = re.compile(rb"[^;\s]*")
_SIMPLE_PARAM = re.compile(
    rb'[ \t\r\n]*;[ \t\r\n]*([^\x00-\x20\x7f-\xff()<>@,;:\\"/\[\]?=]+)[ \t\r\n]*=[ \t\r\n]*'
    rb'(?:"((?:[^"\\]|\\.)*)"|([^;\s"(]+))(?=[ \t\r\n]*(?:;|\Z))',
    re.S,
)
_QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"?', re.S)
_QUOTED_PAIR = re.compile(rb"\\(.)", re.S)
_WSP = re.compile(rb"[ \t\r\n]*")
_COMMENT_TEXT = re.compile(rb"[^()\\]*")
# One field: a line and its continuation lines (RFC 5322 2.2.3).
_FIELD = re.compile(rb"[^\n]*(?:\n[ \t][^\n]*)*\n?")
# RFC 5322 3.6.8: ftext is printable ASCII but ":"; 4.5.8 allows WSP before the colon.
# Possessive: on a long line without a colon, a plain `+` gave back one byte at a time and
# tried for the colon after each (25 MB of header took 0.8 s in one call).
_FIELD_NAME = re.compile(rb"([!-9;-~]++)[ \t]*+:")
MAX_LINE = 998  # RFC 5322 2.1.1: a field name and its colon lie within the first line
_SECTION = re.compile(r"(.+?)\*([0-9]{1,4})(\*?)")  # RFC 2231 3: name*0 / name*0*
# RFC 2231 7: attribute-char, the bytes an extended value may carry without %-encoding
_ATTR_CHARS = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$&+-.^_`|~"
)
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_QP_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_JUNK = bytes(c for c in range(256) if c not in _B64_ALPHABET)
# Where a quoted-printable body is cut into slices that decode on their own: after a line end,
# else after two bytes that are no blank, "=" or CR, so that no "=XY" escape, soft line break or
# run of blanks is split; looked for within _QP_WINDOW octets, since a regex scans only some
# 30 MB/s for a class like this.
_QP_PAIR = re.compile(rb"[^ \t=\r\n]{2}")
_QP_WINDOW = 64 * 1024
# Python codecs that are no MIME charsets; punycode decoding is also quadratic (160 KB took 0.8 s).
_NOT_CHARSETS = frozenset({"punycode", "idna", "unicode-escape", "raw-unicode-escape", "undefined"})
_ANY_WSP = re.compile(rb"[ \t\r\n]+")

US_ASCII: tuple[tuple[str, bytes], ...] = (("charset", b"US-ASCII"),)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderField:
    """One header field: its bytes are `data[start:end]`, folding and line ending included."""

    name: str  # lower-case field name; "" for a line that is not a field (no colon)
    start: int
    end: int
    value: bytes  # after the colon, unfolded (RFC 5322 2.2.3), outer whitespace stripped


@dataclass(frozen=True, slots=True, kw_only=True)
class Part:
    """One MIME entity: the message itself, a body part, or an encapsulated message."""

    header_start: int
    fields_end: int  # where the blank line starts (== header_end when there is none)
    header_end: int  # just past the blank line; == body_start
    body_end: int
    fields: tuple[HeaderField, ...] = ()
    type: str = "text"  # lower-case; defaults per RFC 2045 5.2
    subtype: str = "plain"
    # Parameters as in the message (RFC 2231 continuations merged, values not decoded); see
    # `param` for decoded values. Names lower-case, values unquoted bytes.
    params: tuple[tuple[str, bytes], ...] = US_ASCII
    content_id: bytes | None = None
    description: bytes | None = None
    encoding: bytes = b"7bit"  # lower-case Content-Transfer-Encoding; RFC 2045 6.1 default
    md5: bytes | None = None
    disposition: bytes | None = None  # lower-case disposition type (RFC 2183)
    disposition_params: tuple[tuple[str, bytes], ...] = ()
    language: tuple[bytes, ...] = ()  # RFC 3282 language tags
    location: bytes | None = None  # RFC 2557 4.4.1, with folding whitespace removed
    lines: int = 0
    children: tuple[Part, ...] = ()  # multipart only; never empty for a multipart
    message: Part | None = None  # message/rfc822 only; always set for one

    @property
    def body_start(self) -> int:
        return self.header_end

    @property
    def size(self) -> int:
        """Body size in octets, as stored (transfer encoding not undone)."""
        return self.body_end - self.header_end

    @property
    def is_multipart(self) -> bool:
        return self.type == "multipart"

    @property
    def is_message(self) -> bool:
        return self.message is not None

    def header(self, name: str) -> bytes | None:
        """The unfolded value of the first field called `name` (case-insensitive), or None."""
        name = name.lower()
        for f in self.fields:
            if f.name == name:
                return f.value
        return None

    def headers(self, name: str) -> list[bytes]:
        name = name.lower()
        return [f.value for f in self.fields if f.name == name]

    def param(self, name: str) -> str | None:
        """A Content-Type parameter, decoded (RFC 2231 charset and %-escapes, or RFC 2047)."""
        return _decoded_param(self.params, name)

    def disposition_param(self, name: str) -> str | None:
        return _decoded_param(self.disposition_params, name)

    @property
    def filename(self) -> str | None:
        """RFC 2183 filename, or the older Content-Type name parameter."""
        return self.disposition_param("filename") or self.param("name")

    def walk(self) -> Iterator[Part]:
        """This part and every part below it, in order, encapsulated messages included."""
        stack: list[Part] = [self]
        while stack:
            part = stack.pop()
            yield part
            if part.message is not None:
                stack.append(part.message)
            stack.extend(reversed(part.children))


def parse(data: bytes) -> Part:
    """The MIME tree of a whole message. Never raises; linear in len(data) per nesting level."""
    return _entity(data, 0, len(data), depth=0, in_digest=False, budget=[MAX_PARTS])


def parse_header(data: bytes) -> tuple[HeaderField, ...]:
    """Only the top-level header fields (for ENVELOPE without building the MIME tree)."""
    fields_end, _ = header_bounds(data, 0, len(data))
    return scan_fields(data, 0, fields_end, limit=MAX_FIELDS)


# -- structure ------------------------------------------------------------------------------------
def _entity(
    data: bytes, start: int, end: int, *, depth: int, in_digest: bool, budget: list[int]
) -> Part:
    budget[0] -= 1
    fields_end, body_start = header_bounds(data, start, end)
    fields = scan_fields(data, start, fields_end, limit=MAX_FIELDS)
    first: dict[str, bytes] = {}
    for f in fields:
        first.setdefault(f.name, f.value)

    ctype, subtype, params = _content_type(first.get("content-type"), in_digest)
    children: tuple[Part, ...] = ()
    message: Part | None = None
    boundary = _raw_param(params, "boundary") if ctype == "multipart" else None
    if ctype == "multipart" and not boundary:
        # RFC 2046 5.1.1 makes boundary mandatory; without it nothing can be split, so the
        # part is described as RFC 2045 5.2 describes an invalid Content-Type.
        ctype, subtype, params = "text", "plain", US_ASCII
    if (ctype == "multipart" or (ctype, subtype) == ("message", "rfc822")) and (
        depth >= MAX_DEPTH or budget[0] <= 0
    ):
        ctype, subtype, params = "application", "octet-stream", ()
    if ctype == "multipart" and boundary:
        children = _split(
            data,
            body_start,
            end,
            boundary,
            depth=depth,
            in_digest=subtype == "digest",
            budget=budget,
        )
    elif (ctype, subtype) == ("message", "rfc822"):
        # RFC 2046 5.2.1: the body is a complete message with its own header.
        message = _entity(data, body_start, end, depth=depth + 1, in_digest=False, budget=budget)

    disposition, disposition_params = _disposition(first.get("content-disposition"))
    encoding = first.get("content-transfer-encoding")
    return Part(
        header_start=start,
        fields_end=fields_end,
        header_end=body_start,
        body_end=end,
        fields=fields,
        type=ctype,
        subtype=subtype,
        params=params,
        content_id=first.get("content-id"),
        description=first.get("content-description"),
        encoding=_token_value(encoding) if encoding is not None else b"7bit",
        md5=first.get("content-md5"),
        disposition=disposition,
        disposition_params=disposition_params,
        language=_languages(first.get("content-language")),
        location=_location(first.get("content-location")),
        lines=count_lines(data, body_start, end),
        children=children,
        message=message,
    )


def _split(
    data: bytes,
    start: int,
    end: int,
    boundary: bytes,
    *,
    depth: int,
    in_digest: bool,
    budget: list[int],
) -> tuple[Part, ...]:
    """Body parts between boundary lines (RFC 2046 5.1.1); preamble and epilogue dropped."""
    needle = b"--" + boundary
    ranges: list[tuple[int, int]] = []
    current: int | None = None  # where the part being collected begins
    pos = start
    while True:
        i = _find(data, needle, pos, end)
        if i < 0:
            break
        if i != start and data[i - 1] != 0x0A:  # a boundary only counts at the start of a line
            pos = i + 1
            continue
        after = i + len(needle)
        close = data.startswith(b"--", after, end)
        tail = None if close else _DELIMITER_TAIL.match(data, after, end)
        if not close and tail is None:
            pos = after  # "--boundaryX": a longer boundary (e.g. a nested part's), not ours
            continue
        if current is not None:
            ranges.append((current, _before_line_ending(data, current, i)))
        if close:
            current = None
            break
        assert tail is not None
        current = pos = tail.end()
    if current is not None:
        ranges.append((current, end))  # no close-delimiter: tolerated, the part runs to the end

    children: list[Part] = []
    for lo, hi in ranges:
        if budget[0] <= 0:
            break
        children.append(_entity(data, lo, hi, depth=depth + 1, in_digest=in_digest, budget=budget))
    if not children:
        # The grammar needs at least one body (RFC 9051 body-type-mpart = 1*body); an empty
        # text/plain stands in for none, as Dovecot does.
        children.append(Part(header_start=end, fields_end=end, header_end=end, body_end=end))
    return tuple(children)


def _find(data: bytes, needle: bytes, start: int, end: int) -> int:
    """`data.find(needle, start, end)` a SLICE at a time (see the module docstring)."""
    while start < end:
        stop = min(end, start + SLICE + len(needle) - 1)
        i = data.find(needle, start, stop)
        if i >= 0 or stop == end:
            return i
        start += SLICE
    return -1


def _before_line_ending(data: bytes, lo: int, i: int) -> int:
    if i - 2 >= lo and data[i - 2 : i] == b"\r\n":
        return i - 2
    if i - 1 >= lo and data[i - 1] == 0x0A:
        return i - 1
    return i


def header_bounds(data: bytes, start: int, end: int) -> tuple[int, int]:
    """(fields_end, header_end): the header ends with the first empty line (RFC 5322 2.1)."""
    if start >= end:
        return end, end
    if data[start] == 0x0A:
        return start, start + 1
    if data.startswith(b"\r\n", start, end):
        return start, start + 2
    m = _HEADER_END.search(data, start, end)
    if m is None:
        return end, end
    return m.start() + 1, m.end()


def scan_fields(
    data: bytes, start: int, stop: int, *, limit: int | None = None
) -> tuple[HeaderField, ...]:
    """The header fields in data[start:stop] (no blank line in it), in order."""
    out: list[HeaderField] = []
    pos = start
    while pos < stop:
        m = _FIELD.match(data, pos, stop)
        end = m.end() if m is not None else stop
        if end <= pos:  # cannot happen (the pattern eats at least one byte here); stay safe
            end = stop
        n = _FIELD_NAME.match(data, pos, min(end, pos + MAX_LINE))
        if n is not None:
            name = _field_name(n.group(1))
            value = data[n.end() : end]
        else:
            name, value = "", data[pos:end]
        out.append(HeaderField(name=name, start=pos, end=end, value=unfold(value)))
        if limit is not None and len(out) >= limit:
            break
        pos = end
    return tuple(out)


@functools.lru_cache(maxsize=512)
def _field_name(raw: bytes) -> str:
    return raw.decode("ascii").lower()


def unfold(value: bytes) -> bytes:
    """RFC 5322 2.2.3: remove every CRLF (or bare LF) before WSP; strip outer whitespace."""
    return value.replace(b"\r\n", b"").replace(b"\n", b"").strip(b" \t\r")


def count_lines(data: bytes, start: int, end: int) -> int:
    """Text lines in data[start:end]: line endings, plus a last line that has none."""
    if start >= end:
        return 0
    n = sum(data.count(b"\n", i, min(end, i + SLICE)) for i in range(start, end, SLICE))
    return n if data[end - 1] == 0x0A else n + 1


# -- header values --------------------------------------------------------------------------------
def _content_type(
    value: bytes | None, in_digest: bool
) -> tuple[str, str, tuple[tuple[str, bytes], ...]]:
    if value is None:
        # RFC 2046 5.1.5: the default inside multipart/digest is message/rfc822.
        return ("message", "rfc822", ()) if in_digest else ("text", "plain", US_ASCII)
    pos = skip_cfws(value, 0)
    m = _TOKEN.match(value, pos)
    if m is not None:
        pos = skip_cfws(value, m.end())
        if value.startswith(b"/", pos):
            s = _TOKEN.match(value, skip_cfws(value, pos + 1))
            if s is not None:
                return (
                    m.group().decode("ascii").lower(),
                    s.group().decode("ascii").lower(),
                    parse_params(value, s.end()),
                )
    # RFC 2045 5.2: a syntactically invalid Content-Type means text/plain; charset=us-ascii.
    return "text", "plain", US_ASCII


def _disposition(value: bytes | None) -> tuple[bytes | None, tuple[tuple[str, bytes], ...]]:
    if value is None:
        return None, ()
    m = _TOKEN.match(value, skip_cfws(value, 0))
    if m is None:
        return None, ()
    return m.group().lower(), parse_params(value, m.end())


def _token_value(value: bytes) -> bytes:
    m = _TOKEN.match(value, skip_cfws(value, 0))
    return m.group().lower() if m is not None else value.lower()


def _languages(value: bytes | None) -> tuple[bytes, ...]:
    if value is None:
        return ()
    tags = (skip_comments(tag).strip(b" \t") for tag in value.split(b","))
    return tuple(tag for tag in tags if tag)


def _location(value: bytes | None) -> bytes | None:
    if value is None:
        return None
    # RFC 2557 4.4.1: a folded URL is unfolded by removing all white space.
    return _ANY_WSP.sub(b"", value)


def skip_cfws(value: bytes, pos: int) -> int:
    """The index after any white space and (nested) comments at `pos` (RFC 5322 3.2.2)."""
    n = len(value)
    while True:
        ws = _WSP.match(value, pos)
        pos = ws.end() if ws is not None else pos
        if pos < n and value[pos] == 0x28:
            pos = skip_comment(value, pos)
        else:
            return pos


def skip_comment(value: bytes, pos: int) -> int:
    """value[pos] is "(": the index just past the matching ")" (or the end)."""
    depth = 0
    n = len(value)
    while pos < n:
        c = value[pos]
        if c == 0x28:
            depth += 1
            pos += 1
        elif c == 0x29:
            depth -= 1
            pos += 1
            if depth == 0:
                return pos
        elif c == 0x5C:
            pos += 2
        else:
            m = _COMMENT_TEXT.match(value, pos)
            pos = m.end() if m is not None and m.end() > pos else pos + 1
    return n


def skip_comments(value: bytes) -> bytes:
    """`value` with comments outside quoted strings removed."""
    if b"(" not in value:
        return value
    out = bytearray()
    pos, n = 0, len(value)
    while pos < n:
        c = value[pos]
        if c == 0x28:
            pos = skip_comment(value, pos)
        elif c == 0x22:
            q = _QUOTED.match(value, pos)
            end = q.end() if q is not None else n
            out += value[pos:end]
            pos = end
        else:
            out.append(c)
            pos += 1
    return bytes(out)


def parse_params(value: bytes, pos: int) -> tuple[tuple[str, bytes], ...]:
    """`; name=value` pairs from `pos` on (RFC 2045 5.1), RFC 2231 continuations merged.

    Lenient: unquoted values may hold any byte but ";" and white space, junk is skipped up to
    the next ";", an unterminated quoted string runs to the end."""
    raw: list[tuple[str, bytes]] = []
    n = len(value)
    while pos < n:
        simple = _SIMPLE_PARAM.match(value, pos)
        if simple is not None:  # the common case, without comments: one regex step
            quoted = simple.group(2)
            val = _QUOTED_PAIR.sub(rb"\1", quoted) if quoted is not None else simple.group(3)
            raw.append((simple.group(1).decode("ascii").lower(), val))
            pos = simple.end()
            continue
        pos = skip_cfws(value, pos)
        if pos >= n:
            break
        if value[pos] == 0x3B:
            pos += 1
            continue
        name = _TOKEN.match(value, pos)
        if name is not None:
            eq = skip_cfws(value, name.end())
            if eq < n and value[eq] == 0x3D:
                pos = skip_cfws(value, eq + 1)
                q = _QUOTED.match(value, pos) if pos < n and value[pos] == 0x22 else None
                if q is not None:
                    val = _QUOTED_PAIR.sub(rb"\1", q.group(1))
                    pos = q.end()
                else:
                    v = _LOOSE_VALUE.match(value, pos)
                    val = v.group() if v is not None else b""
                    pos = v.end() if v is not None else pos
                raw.append((name.group().decode("ascii").lower(), val))
                continue
        nxt = value.find(b";", pos + 1)
        if nxt < 0:
            break
        pos = nxt
    return _merge_continuations(raw)


def _merge_continuations(raw: list[tuple[str, bytes]]) -> tuple[tuple[str, bytes], ...]:
    """RFC 2231 3: name*0, name*1* … become one `name` (plain) or `name*` (extended) value.

    The merged extended value stays %-encoded with its charset'language' prefix, so it is
    ASCII and lossless; plain segments joined to an extended value are %-encoded for it."""
    if not any("*" in name for name, _ in raw):
        return tuple(raw)
    out: list[tuple[str, bytes] | str] = []  # a str marks where a merged group goes
    groups: dict[str, list[tuple[int, bool, bytes]]] = {}
    for name, val in raw:
        m = _SECTION.fullmatch(name)
        if m is None:
            out.append((name, val))
            continue
        base = m.group(1)
        if base not in groups:
            groups[base] = []
            out.append(base)
        groups[base].append((int(m.group(2)), m.group(3) == "*", val))
    merged: list[tuple[str, bytes]] = []
    for item in out:
        if not isinstance(item, str):
            merged.append(item)
            continue
        segments = sorted(groups[item], key=lambda s: s[0])
        if not any(extended for _, extended, _ in segments):
            merged.append((item, b"".join(v for _, _, v in segments)))
            continue
        prefix = b"" if segments[0][1] else b"''"  # the charset'lang' prefix is segment 0's
        value = b"".join(v if extended else _percent_encode(v) for _, extended, v in segments)
        merged.append((item + "*", prefix + value))
    return tuple(merged)


def _percent_encode(value: bytes) -> bytes:
    return b"".join(bytes((c,)) if c in _ATTR_CHARS else b"%%%02X" % c for c in value)


def _raw_param(params: tuple[tuple[str, bytes], ...], name: str) -> bytes | None:
    for key, val in params:
        if key == name:
            return val
    return None


def _decoded_param(params: tuple[tuple[str, bytes], ...], name: str) -> str | None:
    name = name.lower()
    extended = _raw_param(params, name + "*")
    if extended is not None:
        return decode_rfc2231(extended)
    plain = _raw_param(params, name)
    if plain is None:
        return None
    # RFC 2047 5 forbids encoded-words in quoted strings, but many mailers put filenames so.
    return decode_words(decode_text(plain, None))


def decode_rfc2231(value: bytes) -> str:
    """`charset'language'%-encoded` (RFC 2231 4) to text."""
    pieces = value.split(b"'", 2)
    if len(pieces) == 3:
        charset, text = pieces[0].decode("ascii", "replace"), pieces[2]
    else:
        charset, text = "", value
    try:
        octets = unquote_to_bytes(text)
    except ValueError:
        octets = text
    return decode_text(octets, charset or None)


# -- text decoding --------------------------------------------------------------------------------
def decode_text(octets: bytes, charset: str | None) -> str:
    """Bytes in `charset` to text, never raising. Unknown charsets, and US-ASCII text that is
    in fact 8-bit, are read as UTF-8 when they are valid UTF-8, else as Latin-1."""
    name = (charset or "").strip().lower()
    if name and name not in ("us-ascii", "ascii", "ansi_x3.4-1968") and len(name) <= 40:
        try:
            return _decode_charset(octets, name)
        except (LookupError, ValueError, TypeError):  # unknown, or not a text codec
            pass
    try:
        return octets.decode("utf-8")
    except UnicodeDecodeError:
        return octets.decode("latin-1")


def _decode_charset(octets: bytes, name: str) -> str:
    info = codecs.lookup(name)
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        raise LookupError(name)
    if len(octets) <= SLICE:
        return octets.decode(info.name, "replace")
    decoder = info.incrementaldecoder("replace")
    parts = [decoder.decode(octets[i : i + SLICE]) for i in range(0, len(octets), SLICE)]
    parts.append(decoder.decode(b"", True))
    return "".join(parts)


def decode_words(text: str) -> str:
    """RFC 2047 encoded-words to text. White space between adjacent encoded-words is dropped
    (RFC 2047 6.2) and adjacent words in one charset are joined before decoding, so that a
    character split across two words survives."""
    if "=?" not in text:
        return text
    out: list[str] = []
    pending = bytearray()
    pending_charset: str | None = None
    last = 0
    for m in _ENCODED_WORD.finditer(text):
        gap = text[last : m.start()]
        if pending_charset is None or gap.strip(" \t\r\n"):
            if pending_charset is not None:
                out.append(decode_text(bytes(pending), pending_charset))
                pending.clear()
                pending_charset = None
            out.append(gap)
        charset = m.group(1).split("*", 1)[0].lower()  # RFC 2231 5: charset*language
        if pending_charset is not None and charset != pending_charset:
            out.append(decode_text(bytes(pending), pending_charset))
            pending.clear()
        pending_charset = charset
        encoded = m.group(3).encode("utf-8", "replace")
        if m.group(2) in "bB":
            pending += decode_base64(encoded)
        else:
            pending += _QP_HEX.sub(
                lambda h: bytes([int(h.group(1), 16)]), encoded.replace(b"_", b" ")
            )
        last = m.end()
    if pending_charset is not None:
        out.append(decode_text(bytes(pending), pending_charset))
    out.append(text[last:])
    return "".join(out)


def decode_header_value(value: bytes) -> str:
    """A raw header value as text: 8-bit read as UTF-8 (RFC 6532) or Latin-1, RFC 2047 decoded."""
    return decode_words(decode_text(value, None))


def decode_base64(data: bytes) -> bytes:
    """Lenient base64: junk ignored, missing padding tolerated (RFC 2045 6.8 says decoders
    ignore characters outside the alphabet)."""
    clean = b"".join(
        data[i : i + SLICE].translate(None, _B64_JUNK) for i in range(0, len(data), SLICE)
    )
    extra = len(clean) % 4
    if extra == 1:
        clean = clean[:-1]
    elif extra:
        clean += b"=" * (4 - extra)
    try:
        return b"".join(
            binascii.a2b_base64(clean[i : i + SLICE]) for i in range(0, len(clean), SLICE)
        )
    except binascii.Error:
        return b""


def decode_quoted_printable(data: bytes) -> bytes:
    out: list[bytes] = []
    pos, size = 0, len(data)
    while pos < size:
        end = _qp_cut(data, pos)
        piece = data[pos:end]
        if _has_trailing_blanks(piece, last=end == size):
            piece = _strip_trailing_blanks(piece)
        out.append(binascii.a2b_qp(piece))
        pos = end
    return b"".join(out)


def _qp_cut(data: bytes, pos: int) -> int:
    size = len(data)
    if size - pos <= SLICE:
        return size
    start = pos + SLICE
    stop = min(size, start + _QP_WINDOW)
    line_end = data.find(b"\n", start, stop)
    if line_end >= 0:
        return line_end + 1
    pair = _QP_PAIR.search(data, start, stop)
    # Without either, this is no quoted-printable (RFC 2045 6.7 (5): lines of at most 76
    # characters): cut anyway, so that decoding it stays bounded, if not exact at the cut.
    return pair.end() if pair is not None else stop


def _has_trailing_blanks(piece: bytes, *, last: bool) -> bool:
    return (
        b" \n" in piece
        or b"\t\n" in piece
        or b" \r\n" in piece
        or b"\t\r\n" in piece
        or (last and piece.endswith((b" ", b"\t")))
    )


def _strip_trailing_blanks(piece: bytes) -> bytes:
    """RFC 2045 6.7 (3): trailing white space on a line is padding a decoder removes, before
    CRLF, LF or the end. Line by line in Python rather than by a regex substitution: that was
    quadratic in a run of blanks, and then slow without the backtracking."""
    lines = piece.split(b"\n")
    for i in range(len(lines) - 1):
        line = lines[i]
        lines[i] = line[:-1].rstrip(b" \t") + b"\r" if line.endswith(b"\r") else line.rstrip(b" \t")
    lines[-1] = lines[-1].rstrip(b" \t")  # blanks at the end; a piece cut early ends otherwise
    return b"\n".join(lines)


def decode_body(data: bytes, encoding: bytes) -> bytes | None:
    """A body with its Content-Transfer-Encoding undone; None for an encoding we do not know."""
    if encoding in (b"7bit", b"8bit", b"binary", b""):
        return data
    if encoding == b"base64":
        return decode_base64(data)
    if encoding == b"quoted-printable":
        return decode_quoted_printable(data)
    return None
