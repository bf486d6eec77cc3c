"""POP3 client lines: a bounded line reader, and the grammar that turns a line into a command.

`LineReader` is `protocol/lines.LineReader` with POP3's command line limit. The server feeds one
read (≤ 64 KiB) only when the session has no complete line left, so a connection holds at most
one read plus one line.

`parse_command(line)` returns a `commands.Command` or raises `ParseError`, whose text is the
`-ERR` answer. RFC 1939 §3: a keyword of 3–4 letters (any case), arguments separated by spaces;
RFC 2449 §4: a command line is at most 255 octets including CRLF.
"""

from __future__ import annotations

from typing import Final

from mailfort.protocol import lines
from mailfort.protocol.lines import LineTooLong as LineTooLong  # re-exported
from mailfort.protocol.pop3 import commands as C

MAX_COMMAND_LINE: Final = 255  # RFC 2449 §4, CRLF included
# RFC 5034 §4: a SASL response is not a command and may be longer; PLAIN needs little.
MAX_SASL_LINE: Final = 4096
_MAX_DIGITS: Final = 10


class ParseError(Exception):
    """The client sent something that is not a valid command: answer `-ERR <text>`."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class LineReader(lines.LineReader):
    def next_line(self, limit: int = MAX_COMMAND_LINE) -> bytes | LineTooLong | None:
        return super().next_line(limit)


def _text(data: bytes) -> str:
    if b"\0" in data:
        raise ParseError("NUL is not allowed in a command")
    return data.decode("utf-8", "surrogateescape")


def _number(text: str, what: str = "message number") -> int:
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_DIGITS:
        raise ParseError(f"invalid {what} {text[:20]!r}")
    return int(text)


def _no_args(cls: type[C.Command], args: list[str]) -> C.Command:
    if args:
        raise ParseError(f"{cls.verb.value} takes no arguments")
    return cls()


def _optional_number(args: list[str], verb: C.Verb) -> int | None:
    if len(args) > 1:
        raise ParseError(f"{verb.value} takes at most one argument")
    return _number(args[0]) if args else None


def _one_number(args: list[str], verb: C.Verb) -> int:
    if len(args) != 1:
        raise ParseError(f"{verb.value} needs a message number")
    return _number(args[0])


def parse_command(line: bytes) -> C.Command:
    text = _text(line)
    keyword, _, rest = text.partition(" ")
    try:
        # ASCII first: str.upper() maps some non-ASCII letters to ASCII ones ("ſ" → "S").
        verb = C.Verb(keyword.upper()) if keyword.isascii() else None
    except ValueError:
        verb = None
    if verb is None:
        raise ParseError(f"unknown command {keyword[:8]!r}")
    # USER and PASS take the rest of the line as it is (RFC 1939 §7: spaces may be part of it).
    if verb is C.Verb.USER:
        if not rest.strip():
            raise ParseError("USER needs a user name")
        return C.User(name=rest.strip())
    if verb is C.Verb.PASS:
        if not rest:
            raise ParseError("PASS needs a password")
        return C.Pass(password=rest)
    args = rest.split()
    if verb is C.Verb.AUTH:
        if len(args) > 2:
            raise ParseError("AUTH takes a mechanism and an optional initial response")
        return C.Auth(
            mechanism=args[0].upper() if args else None,
            initial=args[1] if len(args) == 2 else None,
        )
    if verb is C.Verb.LIST:
        return C.List(number=_optional_number(args, verb))
    if verb is C.Verb.UIDL:
        return C.Uidl(number=_optional_number(args, verb))
    if verb is C.Verb.RETR:
        return C.Retr(number=_one_number(args, verb))
    if verb is C.Verb.DELE:
        return C.Dele(number=_one_number(args, verb))
    if verb is C.Verb.TOP:
        if len(args) != 2:
            raise ParseError("TOP needs a message number and a number of lines")
        return C.Top(number=_number(args[0]), lines=_number(args[1], "number of lines"))
    simple: dict[C.Verb, type[C.Command]] = {
        C.Verb.STLS: C.Stls,
        C.Verb.CAPA: C.Capa,
        C.Verb.STAT: C.Stat,
        C.Verb.NOOP: C.Noop,
        C.Verb.RSET: C.Rset,
        C.Verb.QUIT: C.Quit,
    }
    return _no_args(simple[verb], args)
