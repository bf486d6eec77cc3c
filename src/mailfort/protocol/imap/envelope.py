"""The IMAP ENVELOPE of a message (RFC 9051 7.5.2, RFC 3501 7.4.2), and the string rule it shares
with BODYSTRUCTURE.

    envelope = "(" env-date SP env-subject SP env-from SP env-sender SP env-reply-to SP env-to
               SP env-cc SP env-bcc SP env-in-reply-to SP env-message-id ")"

Values are the raw header text, unfolded: encoded-words stay encoded (RFC 3501 7.4.2: the
client decodes them), 8-bit text is passed on as it is (in a literal). Only the first occurrence
of each field counts. Addresses are parsed leniently from RFC 5322 3.4 address lists.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from mailfort.mail.mime import HeaderField, Part, parse_header, skip_comment

# RFC 9051 9: QUOTED-CHAR is a TEXT-CHAR (CHAR except CR and LF; CHAR is %x01-7F).
_QUOTABLE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*")
MAX_QUOTED = 1024  # longer values go as literals, which every client reads without a line limit


def nstring(value: bytes | None) -> bytes:
    """`nstring = string / NIL`; `string = quoted / literal` (RFC 9051 9).

    A quoted string when the value is short 7-bit text without CR/LF/NUL, else a synchronizing
    literal `{n}\\r\\n...`. NUL is not CHAR8, so it cannot travel in a literal either: it is
    dropped. (protocol/imap/response.py owns the general quoting; this is the same rule, kept
    here so that these writers stand alone.)"""
    if value is None:
        return b"NIL"
    if len(value) <= MAX_QUOTED and _QUOTABLE.fullmatch(value):
        return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    value = value.replace(b"\x00", b"")
    return b"{%d}\r\n%b" % (len(value), value)


# -- address lists (RFC 5322 3.4) -----------------------------------------------------------------
_TOKENS = re.compile(
    rb"""(?P<ws>[ \t\r\n]+)
      | (?P<quoted>"(?P<content>(?:[^"\\]|\\.)*)"?)
      | (?P<comment>\()
      | (?P<literal>\[(?:[^\]\\]|\\.)*\]?)
      | (?P<special>[<>@,;:.])
      | (?P<atom>[^ \t\r\n"()\[\]<>@,;:.]+)
      | (?P<other>.)""",
    re.X | re.S,
)
_QUOTED_PAIR = re.compile(rb"\\(.)", re.S)


class _Token(NamedTuple):
    kind: str  # "quoted", "comment", "literal", "special", "atom"
    value: bytes  # quoted strings and comments without their delimiters and quoting
    space_before: bool  # white space or a comment precedes it


Address = tuple[bytes | None, bytes | None, bytes | None, bytes | None]  # name adl mailbox host
_GROUP_END: Address = (None, None, None, None)


def _tokenize(value: bytes) -> list[_Token]:
    out: list[_Token] = []
    pos, n = 0, len(value)
    space = False
    while pos < n:
        if value[pos] == 0x28:
            end = skip_comment(value, pos)
            inner = value[pos + 1 : end - 1 if value[end - 1 : end] == b")" else end]
            out.append(_Token("comment", _QUOTED_PAIR.sub(rb"\1", inner).strip(), True))
            space = True
            pos = end
            continue
        m = _TOKENS.match(value, pos)
        if m is None:  # unreachable: `other` matches any byte
            break
        pos = m.end()
        kind = m.lastgroup or "other"
        if kind == "ws":
            space = True
            continue
        text = m.group()
        if kind == "quoted":
            text = _QUOTED_PAIR.sub(rb"\1", m.group("content"))
        elif kind == "other":
            kind = "atom"  # a stray ")" or "\\": keep it as text
        out.append(_Token(kind, text, space))
        space = False
    return out


# The everyday shapes `a@b`, `Name <a@b>`, `"Name, Q." <a@b>`, in a comma-separated list, take
# one regex step each; anything else (groups, comments, routes, 8-bit, odd spacing) goes
# through the general parser, which gives the same answer for these shapes (a test checks).
_ATEXT = rb"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"  # RFC 5322 atext, plus "." (obs-phrase)
# Blanks are taken possessively (`*+`): with a plain `[ \t]*` before an optional phrase and
# another after it, a run of n blanks could be split n ways, and was, at every failure
# (quadratic: 20,000 blanks in a To field took a second).
_SIMPLE_ADDRESS = re.compile(
    (
        rb"[ \t]*+(?:"
        rb'(?:"(?P<quoted>(?:[^"\\\r\n]|\\[^\r\n])*)"|(?P<phrase>{atext}(?:[ \t]+{atext})*))?'
        rb"[ \t]*+<(?P<local1>{atext})@(?P<domain1>{atext})>"
        rb"|(?P<local2>{atext})@(?P<domain2>{atext})"
        rb")[ \t]*+(?:,|\Z)"
    ).replace(b"{atext}", _ATEXT)
)
_WSP_RUN = re.compile(rb"[ \t]+")


def parse_addresses(value: bytes) -> list[Address]:
    """Address structures of an address list, with group start/end markers (RFC 9051 7.5.2)."""
    out: list[Address] = []
    pos, n = 0, len(value)
    while pos < n:
        m = _SIMPLE_ADDRESS.match(value, pos)
        if m is None or m.end() == pos:
            return _parse_general(value)
        if m.group("local2") is not None:
            out.append((None, None, m.group("local2"), m.group("domain2")))
        else:
            quoted, phrase = m.group("quoted"), m.group("phrase")
            if quoted is not None:
                name: bytes | None = _QUOTED_PAIR.sub(rb"\1", quoted)
            else:
                name = _WSP_RUN.sub(b" ", phrase) if phrase else None
            out.append((name or None, None, m.group("local1"), m.group("domain1")))
        pos = m.end()
    return out


def _parse_general(value: bytes) -> list[Address]:
    out: list[Address] = []
    current: list[_Token] = []
    in_group = in_angle = False
    for t in _tokenize(value):
        if t.kind == "special":
            if t.value == b"<":
                in_angle = True
            elif t.value == b">":
                in_angle = False
            elif not in_angle and t.value == b",":
                out += _mailbox(current)
                current = []
                continue
            elif not in_angle and t.value == b":" and not in_group:
                # group start: the mailbox field holds the group name, the host is NIL
                out.append((None, None, _phrase(current), None))
                in_group, current = True, []
                continue
            elif not in_angle and t.value == b";":
                out += _mailbox(current)
                current = []
                if in_group:
                    out.append(_GROUP_END)
                    in_group = False
                continue
        current.append(t)
    out += _mailbox(current)
    if in_group:
        out.append(_GROUP_END)  # a group without its ";": closed for the client anyway
    return out


def _mailbox(tokens: list[_Token]) -> list[Address]:
    words = [t for t in tokens if t.kind != "comment"]
    if not words:
        return []
    name: bytes | None = None
    adl: bytes | None = None
    opening = next(
        (i for i, t in enumerate(words) if t.kind == "special" and t.value == b"<"), None
    )
    if opening is not None:  # name-addr: [display-name] "<" [route ":"] addr-spec ">"
        closing = next(
            (
                i
                for i, t in enumerate(words)
                if i > opening and t.kind == "special" and t.value == b">"
            ),
            len(words),
        )
        name = _phrase(words[:opening]) or None
        inner = words[opening + 1 : closing]
        if inner and inner[0].value == b"@" and inner[0].kind == "special":
            colon = next(
                (i for i, t in enumerate(inner) if t.kind == "special" and t.value == b":"), None
            )
            if colon is not None:  # obs-route (RFC 5322 4.4): the at-domain-list
                adl = b"".join(t.value for t in inner[:colon])
                inner = inner[colon + 1 :]
        mailbox, host = _addr_spec(inner)
    else:
        mailbox, host = _addr_spec(words)
    if name is None:
        # `addr (Real Name)`: the comment is the only name there is (Dovecot does the same).
        comments = [t.value for t in tokens if t.kind == "comment" and t.value]
        name = comments[-1] if comments else None
    return [(name, adl, mailbox, host)]


def _addr_spec(tokens: list[_Token]) -> tuple[bytes, bytes]:
    """(local-part, domain) with quoting removed. Never NIL: a NIL host would make the client
    read the address as a group marker, so a missing domain is an empty string."""
    at = max(
        (i for i, t in enumerate(tokens) if t.kind == "special" and t.value == b"@"), default=-1
    )
    if at < 0:
        return b"".join(t.value for t in tokens), b""
    return (b"".join(t.value for t in tokens[:at]), b"".join(t.value for t in tokens[at + 1 :]))


def _phrase(tokens: list[_Token]) -> bytes:
    """A display name or group name: words with quoting removed, single spaces between words
    that were apart (RFC 5322 3.2.5 phrase; obs-phrase allows ".")."""
    out = bytearray()
    for t in tokens:
        if t.kind == "comment":
            continue
        if t.space_before and out:
            out += b" "
        out += t.value
    return bytes(out)


def _address_list(value: bytes | None) -> bytes | None:
    """`"(" 1*address ")"`, or None when there is no address (NIL then)."""
    if value is None:
        return None
    addresses = parse_addresses(value)
    if not addresses:
        return None
    return (
        b"("
        + b"".join(b"(%b %b %b %b)" % tuple(nstring(v) for v in address) for address in addresses)
        + b")"
    )


def envelope(source: Part | bytes) -> bytes:
    """ENVELOPE for a parsed message (or an encapsulated one), or for raw message bytes."""
    fields: tuple[HeaderField, ...] = (
        source.fields if isinstance(source, Part) else parse_header(source)
    )
    first: dict[str, bytes] = {}
    for f in fields:
        first.setdefault(f.name, f.value)
    from_ = _address_list(first.get("from"))
    # RFC 9051 7.5.2: absent or empty Sender and Reply-To default to From, by the server.
    sender = _address_list(first.get("sender")) or from_
    reply_to = _address_list(first.get("reply-to")) or from_
    items = (
        nstring(first.get("date")),
        nstring(first.get("subject")),
        from_ or b"NIL",
        sender or b"NIL",
        reply_to or b"NIL",
        _address_list(first.get("to")) or b"NIL",
        _address_list(first.get("cc")) or b"NIL",
        _address_list(first.get("bcc")) or b"NIL",
        nstring(first.get("in-reply-to")),
        nstring(first.get("message-id")),
    )
    return b"(" + b" ".join(items) + b")"
