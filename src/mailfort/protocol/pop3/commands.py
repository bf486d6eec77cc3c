"""POP3 commands as parsed from a client line (RFC 1939 §3–7, RFC 2449 §5, RFC 2595 §4, RFC 5034).

Every command is a frozen dataclass; `verb` names it in the state table (`session.ALLOWED`).
Message numbers are 1-based as on the wire; whether they exist is the maildrop's business.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar


class Verb(enum.Enum):
    USER = "USER"
    PASS = "PASS"
    AUTH = "AUTH"
    STLS = "STLS"
    CAPA = "CAPA"
    STAT = "STAT"
    LIST = "LIST"
    RETR = "RETR"
    DELE = "DELE"
    NOOP = "NOOP"
    RSET = "RSET"
    TOP = "TOP"
    UIDL = "UIDL"
    QUIT = "QUIT"


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    verb: ClassVar[Verb]


@dataclass(frozen=True, slots=True, kw_only=True)
class User(Command):
    verb = Verb.USER
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Pass(Command):
    verb = Verb.PASS
    password: str  # RFC 1939 §7: the whole rest of the line; spaces belong to the password


@dataclass(frozen=True, slots=True, kw_only=True)
class Auth(Command):
    verb = Verb.AUTH
    mechanism: str | None  # None: "AUTH" alone lists the mechanisms (RFC 5034 §4 allows it)
    initial: str | None = None  # base64 initial response, "=" for an empty one (RFC 5034 §4)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stls(Command):
    verb = Verb.STLS


@dataclass(frozen=True, slots=True, kw_only=True)
class Capa(Command):
    verb = Verb.CAPA


@dataclass(frozen=True, slots=True, kw_only=True)
class Stat(Command):
    verb = Verb.STAT


@dataclass(frozen=True, slots=True, kw_only=True)
class List(Command):
    verb = Verb.LIST
    number: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Retr(Command):
    verb = Verb.RETR
    number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Dele(Command):
    verb = Verb.DELE
    number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Noop(Command):
    verb = Verb.NOOP


@dataclass(frozen=True, slots=True, kw_only=True)
class Rset(Command):
    verb = Verb.RSET


@dataclass(frozen=True, slots=True, kw_only=True)
class Top(Command):
    verb = Verb.TOP
    number: int
    lines: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Uidl(Command):
    verb = Verb.UIDL
    number: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Quit(Command):
    verb = Verb.QUIT
